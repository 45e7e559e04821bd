"""Slots of the real engine: a cancelled turn frees its slot at once, and past the queue
limit a request gets RESOURCE_EXHAUSTED with a retry-after (one slot, so it is easy to fill)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from avatarchat.v1 import llm_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = "Count from 1 to 500, separated by commas."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def one_slot(start_llm: Any) -> AsyncIterator[Any]:
    env = {
        "AVATARCHAT_LLM_SLOTS": "1",
        "AVATARCHAT_LLM_MAX_QUEUE": "1",
        "AVATARCHAT_LLM_MAX_TOKENS": "1024",
    }
    async with start_llm(env) as running:
        yield running


def start(llm: Any, session_id: str, text: str = LONG) -> Any:
    request = llm_pb2.ReplyRequest(session_id=session_id, turn_id="t1", text=text)
    return llm.stub.Reply(request, timeout=120)


async def engine_busy(llm: Any) -> bool:
    assert llm.app.engine is not None
    async with aiohttp.ClientSession() as http:
        engine = llm.app.engine
        async with http.get(f"{engine.url}/slots", headers=engine.auth) as response:
            slots = await response.json()
    return any(slot["is_processing"] for slot in slots)


async def test_a_cancelled_turn_frees_its_slot_at_once(one_slot: Any, ask: Any) -> None:
    call = start(one_slot, "cancel-1")
    assert (await call.read()).WhichOneof("event") == "delta"
    assert await engine_busy(one_slot)
    call.cancel()  # a barge-in
    # 1024 tokens at tens of tokens/s would keep the slot for many seconds; closing the
    # HTTP stream stops llama-server's task within a token or two.
    for _ in range(100):
        if not await engine_busy(one_slot) and one_slot.app.gate.busy == 0:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the slot was still generating 5 s after the cancel")
    after = await ask(one_slot.stub, "after-cancel", "Hello!")
    assert after.done.text.strip()
    history = await one_slot.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="cancel-1"))
    assert list(history.messages) == []  # a cancelled turn leaves no half turn behind


async def test_past_the_queue_limit_a_request_is_resource_exhausted(
    one_slot: Any, ask: Any
) -> None:
    running = start(one_slot, "busy-running")
    assert (await running.read()).WhichOneof("event") == "delta"  # holds the one slot
    waiting = start(one_slot, "busy-waiting")
    for _ in range(100):
        if one_slot.app.gate.waiting == 1:
            break
        await asyncio.sleep(0.02)
    assert one_slot.app.gate.waiting == 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start(one_slot, "busy-rejected").read()
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AVATARCHAT_LLM_MAX_QUEUE" in (raised.value.details() or "")
    assert ("retry-after", "1") in tuple(raised.value.trailing_metadata() or ())
    waiting.cancel()  # leaves the queue before its turn
    running.cancel()
    assert (await ask(one_slot.stub, "busy-after", "Hello!")).done.text
    for session in ("busy-waiting", "busy-running"):
        history = await one_slot.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id=session))
        assert list(history.messages) == []
