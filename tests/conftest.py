"""The whole stack, started the way ``make run`` starts it, shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarchat.devstack import Stack
from avatarchat.nats_server import free_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state: Path = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in ("stt", "llm", "avatar", "edge")}
    env = {
        "AVATARCHAT_LOG_LEVEL": "info",
        "AVATARCHAT_LLM_TEMPERATURE": "0",
        "AVATARCHAT_LLM_THREADS": "1",
    }
    with Stack(state_dir=state, ports=ports, log_prefix=False, env=env) as running:
        yield running


@pytest.fixture
def ws_url(stack: Stack) -> str:
    return stack.edge_url.replace("http", "ws", 1) + "/ws"
