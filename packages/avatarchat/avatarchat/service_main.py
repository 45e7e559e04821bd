"""``python -m avatarchat_<service>`` for the gRPC services: one ``serve_main`` for stt, llm and
avatar.

Each service's ``__main__`` names itself, its config and its app::

    sys.exit(serve_main("llm", LlmConfig.from_env, LlmApp))

and ``serve_main`` does the rest, the same way for all three:

1. Reads the config once; a bad value exits with status 2 and a message naming the variable.
2. Sets up logging (``AVATARCHAT_LOG_LEVEL``, ``AVATARCHAT_LOG_FORMAT``).
3. Builds the app with an ``AsyncExitStack`` that owns every connection it opens, starts its
   gRPC host (health NOT_SERVING) and calls ``load``; health turns SERVING once it returns.
4. On SIGTERM or SIGINT: health NOT_SERVING, ``server.stop(grace)``, then the exit stack closes
   what the app registered (the NATS connection drains last).

Exit status: 0 after a clean stop, 2 for a configuration error (also one found while loading,
such as a missing model directory), 1 when the port is taken or the app cannot start.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, Protocol, TypeVar

from avatarchat import log
from avatarchat.config import ConfigError, RuntimeConfig
from avatarchat.grpc_server import GrpcHost

_log = log.get("avatarchat.service")


class ServiceConfig(Protocol):
    @property
    def runtime(self) -> RuntimeConfig: ...


class GrpcService(Protocol):
    """What a service's app offers: a host that can serve at once, and ``load`` to get ready."""

    @property
    def host(self) -> GrpcHost: ...

    async def load(self) -> None: ...


ConfigT = TypeVar("ConfigT", bound=ServiceConfig)


def serve_main(
    name: str,
    config_from_env: Callable[[], ConfigT],
    build: Callable[[ConfigT, AsyncExitStack], GrpcService],
) -> int:
    """Runs the service ``name`` until SIGTERM or SIGINT; returns the process's exit status."""
    try:
        config = config_from_env()
    except ConfigError as exc:
        print(f"avatarchat-{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    runtime = config.runtime
    log.configure(runtime.log_level, runtime.log_format, service=name)
    try:
        run(_serve(name, config, build))
    except ConfigError as exc:  # found while loading, e.g. a model directory that is not one
        print(f"avatarchat-{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        _log.error("service.failed", service=name, error=str(exc))
        print(f"avatarchat-{name}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    name: str, config: ConfigT, build: Callable[[ConfigT, AsyncExitStack], GrpcService]
) -> None:
    async with AsyncExitStack() as stack:
        app = build(config, stack)
        await run_until_signalled(
            app.host, name=name, load=app.load, grace_s=config.runtime.shutdown_grace_s
        )


async def run_until_signalled(
    host: GrpcHost, *, name: str, load: Callable[[], Awaitable[None]], grace_s: float
) -> None:
    """Starts ``host``, loads the backend, serves until SIGTERM/SIGINT, then stops gracefully.

    The port is open (and health says NOT_SERVING) while ``load`` runs, so a slow model load is
    visible to probes and to ``grpcurl`` instead of looking like a dead process.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    _log.info("service.starting", service=name, port=host.port)
    started = time.perf_counter()
    load_task = asyncio.ensure_future(load())
    stop_task = asyncio.ensure_future(stop.wait())
    await asyncio.wait({load_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if load_task.done():
        load_task.result()  # a failed load raises here and the process exits non-zero
        await host.set_serving(True)
        _log.info(
            "service.serving",
            service=name,
            port=host.port,
            load_s=round(time.perf_counter() - started, 2),
        )
        await stop_task
    else:
        load_task.cancel()
    _log.info("service.stopping", service=name, grace_s=grace_s)
    await host.stop(grace_s)
    _log.info("service.stopped", service=name)
    # What is left (closing NATS, pools) should take well under the grace; if it does not,
    # say where it hangs before the supervisor has to kill the process.
    faulthandler.dump_traceback_later(max(1.0, grace_s), exit=False)


def run(main: Coroutine[Any, Any, None], *, leftovers_s: float = 1.0) -> None:
    """``asyncio.run(main)``, except that tasks still alive after ``main`` get ``leftovers_s``.

    ``asyncio.run`` cancels what is left and waits for it without a bound; a library task that
    swallows the cancellation (nats.py's reconnect loop, when the server died first) would keep
    the process alive past its grace, until the supervisor kills it.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=leftovers_s))
        loop.close()
