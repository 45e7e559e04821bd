"""``python -m avatarchat_edge``: serves the edge until SIGTERM or SIGINT.

Shutdown order: ``/readyz`` turns 503, the listener stops, every socket is closed with 1001
GOING_AWAY, then the NATS connection drains and the gRPC channels close.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys

from aiohttp import web

from avatarchat import log
from avatarchat.config import ConfigError

from .access_log import AccessLogger
from .app import STOPPING, create_app
from .config import EdgeConfig

_log = log.get("avatarchat.edge")


async def serve(config: EdgeConfig) -> int:
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        handle_signals=False,
        shutdown_timeout=config.runtime.shutdown_grace_s,
    )
    await runner.setup()
    ssl_context = None
    if config.tls_cert and config.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        _log.error("edge.bind_failed", host=config.host, port=config.port, error=str(exc))
        await runner.cleanup()
        return 1
    if config.localhost_only_reason:
        _log.warning(
            "edge.localhost_only",
            reason=config.localhost_only_reason,
            hint="set AVATARCHAT_EDGE_TOKENS to accept connections from other machines",
        )
    if config.public and not config.tokens:
        _log.warning(
            "edge.public",
            message="AVATARCHAT_EDGE_PUBLIC=true: anyone who can reach this port may use the "
            "llm, speech and renderer without a token",
            allowed_origins=list(config.allowed_origins),
        )
    port = runner.addresses[0][1]  # the bound one: AVATARCHAT_EDGE_PORT=0 picks a free port
    _log.info(
        "edge.serving",
        url=f"{config.scheme}://{config.host}:{port}/",
        port=port,
        llm=config.llm_addr,
        stt=config.stt_addr,
        avatar=config.avatar_addr,
        nats=config.runtime.nats_url if config.use_nats else None,
        tokens=len(config.tokens),
        allowed_origins=list(config.allowed_origins),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _log.info("edge.stopping", grace_s=config.runtime.shutdown_grace_s)
    app[STOPPING].set()
    await runner.cleanup()
    _log.info("edge.stopped")
    return 0


def main() -> None:
    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        print(f"avatarchat-edge: {exc}", file=sys.stderr)
        sys.exit(2)
    log.configure(config.runtime.log_level, config.runtime.log_format, service="edge")
    sys.exit(asyncio.run(serve(config)))


if __name__ == "__main__":
    main()
