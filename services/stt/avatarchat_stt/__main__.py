"""``python -m avatarchat_stt``: runs the speech-to-text gRPC service until SIGTERM or SIGINT."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

from avatarchat import log
from avatarchat.grpc_server import GrpcHost
from avatarchat.service_main import serve_main
from avatarchat_stt.backends import create_backend
from avatarchat_stt.config import SttConfig
from avatarchat_stt.server import SERVICE_NAME, SttServicer, register


class SttApp:
    """The configured backend and the gRPC host that serves it; ``load`` loads the models."""

    def __init__(self, config: SttConfig, stack: AsyncExitStack) -> None:
        self.backend = create_backend(config)
        stack.push_async_callback(self.backend.aclose)
        self.host = GrpcHost(
            port=config.port,
            service_names=[SERVICE_NAME],
            register=register(SttServicer(config, self.backend)),
        )
        log.get("avatarchat_stt").info(
            "stt.config",
            backend=config.backend,
            port=config.port,
            max_audio_s=config.max_audio_s,
            max_audio_bytes=config.max_audio_bytes,
            max_streams=config.max_streams,
            silence_ms=config.silence_ms,
        )

    async def load(self) -> None:
        await self.backend.load()


def main() -> int:
    return serve_main("stt", SttConfig.from_env, SttApp)


if __name__ == "__main__":
    sys.exit(main())
