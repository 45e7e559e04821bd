"""``python -m avatarchat_avatar``: runs the avatar gRPC service until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from avatarchat.service_main import serve_main
from avatarchat_avatar.app import AvatarApp
from avatarchat_avatar.config import AvatarConfig


def main() -> int:
    return serve_main("avatar", AvatarConfig.from_env, AvatarApp)


if __name__ == "__main__":
    sys.exit(main())
