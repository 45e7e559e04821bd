"""``python -m avatarchat_avatar``: runs the avatar gRPC service until SIGTERM or SIGINT."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

from avatarchat import grpc_server, log
from avatarchat.config import ConfigError
from avatarchat.grpc_server import run_until_signalled
from avatarchat_avatar.app import AvatarApp
from avatarchat_avatar.config import AvatarConfig


async def serve(config: AvatarConfig) -> None:
    async with AsyncExitStack() as stack:
        app = AvatarApp(config, stack)
        await run_until_signalled(
            app.host, name="avatar", load=app.load, grace_s=config.runtime.shutdown_grace_s
        )


def main() -> int:
    try:
        config = AvatarConfig.from_env()
    except ConfigError as exc:
        print(f"avatarchat-avatar: configuration error: {exc}", file=sys.stderr)
        return 2
    log.configure(config.runtime.log_level, config.runtime.log_format, service="avatar")
    try:
        grpc_server.run(serve(config))
    except OSError as exc:  # e.g. the port is taken
        log.get("avatarchat.avatar").error("service.failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
