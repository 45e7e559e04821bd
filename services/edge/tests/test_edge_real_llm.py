"""The edge against the real llm service (its supervised llama-server), both in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from avatarchat.v1 import llm_pb2, llm_pb2_grpc
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.server import LlmApp

LLM_ENV = {
    "AVATARCHAT_LLM_PORT": "0",
    "AVATARCHAT_LLM_THREADS": "1",
    "AVATARCHAT_LLM_TEMPERATURE": "0",
    "AVATARCHAT_LLM_MAX_TOKENS": "160",
    "AVATARCHAT_LLM_SLOTS": "2",
    "AVATARCHAT_LLM_METRICS_PORT": "0",
    "AVATARCHAT_LOG_FORMAT": "console",
}


@pytest.fixture
async def real_llm() -> AsyncIterator[tuple[str, llm_pb2_grpc.LlmServiceStub]]:
    async with AsyncExitStack() as stack:
        app = LlmApp(LlmConfig.from_env(LLM_ENV), stack, host="127.0.0.1", metrics_host="127.0.0.1")
        await app.host.start()
        try:
            await app.load()
            await app.host.set_serving(True)
            addr = f"127.0.0.1:{app.host.port}"
            async with grpc.aio.insecure_channel(addr) as channel:
                yield addr, llm_pb2_grpc.LlmServiceStub(channel)
        finally:
            await app.host.stop(0)


async def history(stub: llm_pb2_grpc.LlmServiceStub, session_id: str) -> list[str]:
    response = await stub.GetHistory(llm_pb2.GetHistoryRequest(session_id=session_id), timeout=5)
    return [message.text for message in response.messages]


async def test_conversation_interrupt_and_reset(
    real_llm: tuple[str, Any], make_edge: Any, helpers: Any
) -> None:
    addr, stub = real_llm
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": addr})
    assert (await edge.get("/readyz")).status == 200
    ws, hello = await helpers.connect(edge)
    sid = hello["session_id"]

    # Two turns, streamed, remembered under the edge's session id.
    for text in ("Hello! My name is Alice.", "What is the capital of France?"):
        await ws.send_json({"type": "text", "text": text})
        frames = await helpers.until(ws, "reply.done", within=120)
        assert all(f["type"] in ("reply.delta", "reply.done") for f in frames), frames
        deltas = [f["text"] for f in frames if f["type"] == "reply.delta"]
        assert deltas and "".join(deltas) == frames[-1]["text"] and frames[-1]["text"].strip()
    stored = await history(stub, sid)
    assert len(stored) == 4
    assert stored[0] == "Hello! My name is Alice." and stored[2] == "What is the capital of France?"

    # An interrupted reply is cancelled in the llm and leaves no trace in memory.
    await ws.send_json({"type": "text", "text": "Tell me a very long story about a dragon."})
    first = (await helpers.until(ws, "reply.delta", within=120))[-1]
    await ws.send_json({"type": "interrupt"})
    interrupted = (await helpers.until(ws, "reply.interrupted", within=30))[-1]
    assert interrupted["turn_id"] == first["turn_id"]
    assert len(await history(stub, sid)) == 4

    # reset clears it all.
    await ws.send_json({"type": "reset"})
    assert await helpers.receive(ws, within=10) == {"type": "reset.done", "removed": 4}
    assert await history(stub, sid) == []
    await ws.close()


async def test_invalid_text_is_reported_by_the_llm(
    real_llm: tuple[str, Any], make_edge: Any, helpers: Any
) -> None:
    addr, _ = real_llm
    # The edge allows more than this llm does, so the llm's INVALID_ARGUMENT reaches the client.
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": addr}, max_text_chars=10_000)
    ws, _ = await helpers.connect(edge)
    await ws.send_json({"type": "text", "text": "a" * 5000})
    err = await helpers.receive(ws, within=30)
    assert err["code"] == "llm_rejected" and "4000" in err["message"] and err["turn_id"]
    await ws.send_json({"type": "text", "text": "Say hi."})
    frames = await helpers.until(ws, "reply.done", within=120)
    assert frames[-1]["text"].strip()
    await ws.close()
