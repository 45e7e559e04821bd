"""``python -m avatarchat_stt``: the speech-to-text gRPC service."""

from __future__ import annotations

import contextlib
import sys

from avatarchat import grpc_server, log
from avatarchat.config import ConfigError
from avatarchat.grpc_server import GrpcHost, run_until_signalled
from avatarchat_stt.backends import create_backend
from avatarchat_stt.config import SttConfig
from avatarchat_stt.server import SERVICE_NAME, SttServicer, register

NAME = "stt"


async def serve(config: SttConfig) -> None:
    backend = create_backend(config)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(backend.aclose)
        host = GrpcHost(
            port=config.port,
            service_names=[SERVICE_NAME],
            register=register(SttServicer(config, backend)),
        )
        await run_until_signalled(
            host, name=NAME, load=backend.load, grace_s=config.runtime.shutdown_grace_s
        )


def main() -> int:
    try:
        config = SttConfig.from_env()
    except ConfigError as exc:
        print(f"avatarchat-stt: configuration error: {exc}", file=sys.stderr)
        return 2
    log.configure(config.runtime.log_level, config.runtime.log_format, service=NAME)
    log.get("avatarchat_stt").info(
        "stt.config",
        backend=config.backend,
        port=config.port,
        max_audio_s=config.max_audio_s,
        max_audio_bytes=config.max_audio_bytes,
        max_streams=config.max_streams,
        silence_ms=config.silence_ms,
    )
    try:
        grpc_server.run(serve(config))
    except ConfigError as exc:  # e.g. a bad model directory, found when the backend loads
        print(f"avatarchat-stt: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"avatarchat-stt: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
