"""Helpers for the llm tests: an in-process llm service on a free port and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest

from avatarchat.v1 import llm_pb2, llm_pb2_grpc
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.server import LlmApp

# Settings every test starts from: no developer environment leaks in.
BASE_ENV = {
    "AVATARCHAT_LLM_PORT": "0",
    "AVATARCHAT_LLM_THREADS": "1",  # robust to a busy machine; 2 threads suffer most
    "AVATARCHAT_LLM_TEMPERATURE": "0",
    "AVATARCHAT_LLM_MAX_TOKENS": "64",
    "AVATARCHAT_LLM_SLOTS": "4",
    "AVATARCHAT_LLM_METRICS_PORT": "0",
    "AVATARCHAT_LOG_FORMAT": "console",
}


@dataclass
class RunningLlm:
    app: LlmApp
    addr: str
    stub: llm_pb2_grpc.LlmServiceStub


@asynccontextmanager
async def running_llm(environ: Mapping[str, str] | None = None) -> AsyncIterator[RunningLlm]:
    """Starts the llm service in this process on 127.0.0.1 and a free port, loaded."""
    config = LlmConfig.from_env({**BASE_ENV, **(environ or {})})
    async with AsyncExitStack() as stack:
        app = LlmApp(config, stack, host="127.0.0.1", metrics_host="127.0.0.1")
        await app.host.start()
        try:
            await app.load()
            await app.host.set_serving(True)
            addr = f"127.0.0.1:{app.host.port}"
            async with grpc.aio.insecure_channel(addr) as channel:
                yield RunningLlm(app=app, addr=addr, stub=llm_pb2_grpc.LlmServiceStub(channel))
        finally:
            await app.host.stop(0)


@dataclass
class Reply:
    deltas: list[str]
    done: llm_pb2.ReplyDone


async def reply(
    stub: llm_pb2_grpc.LlmServiceStub, session_id: str, text: str, turn_id: str = "t1"
) -> Reply:
    """One Reply call, checking the stream's shape: deltas, then exactly one done, last."""
    call = stub.Reply(
        llm_pb2.ReplyRequest(session_id=session_id, turn_id=turn_id, text=text), timeout=120
    )
    events = [event async for event in call]
    assert events, "the stream was empty"
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1, kinds
    return Reply(deltas=[e.delta.text for e in events[:-1]], done=events[-1].done)


@pytest.fixture(scope="session")
def start_llm() -> object:
    """``async with start_llm({...env}) as llm:`` runs an in-process llm service."""
    return running_llm


@pytest.fixture(scope="session")
def ask() -> object:
    """``await ask(stub, session_id, text)``: one checked Reply call."""
    return reply
