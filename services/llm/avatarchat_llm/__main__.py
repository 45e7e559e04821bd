"""``python -m avatarchat_llm``: runs the llm gRPC service until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from avatarchat.service_main import serve_main
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.server import LlmApp


def main() -> int:
    return serve_main("llm", LlmConfig.from_env, LlmApp)


if __name__ == "__main__":
    sys.exit(main())
