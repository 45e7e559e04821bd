"""The llm service over real gRPC with the real local model (SmolLM2-135M via llama.cpp)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from avatarchat.v1 import llm_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm(start_llm: Any) -> AsyncIterator[Any]:
    async with start_llm() as running:
        yield running


async def test_reply_streams_deltas_then_done_with_token_counts(llm: Any, ask: Any) -> None:
    result = await ask(llm.stub, "stream-1", "Hello! How are you today?")
    assert len(result.deltas) > 1, "the reply must arrive in pieces"
    assert "".join(result.deltas) == result.done.text
    assert result.done.text.strip()
    assert result.done.prompt_tokens > 10  # the system prompt alone is longer
    assert result.done.completion_tokens > 0
    assert result.done.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert result.done.finish_reason in ("stop", "length")


async def test_history_holds_both_turns_in_order(llm: Any, ask: Any) -> None:
    first = await ask(llm.stub, "memory-1", "Hello! My name is Alice. Please remember my name.")
    second = await ask(llm.stub, "memory-1", "What is the capital of France?")
    history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="memory-1"))
    assert [(m.role, m.text) for m in history.messages] == [
        (llm_pb2.ROLE_USER, "Hello! My name is Alice. Please remember my name."),
        (llm_pb2.ROLE_ASSISTANT, first.done.text),
        (llm_pb2.ROLE_USER, "What is the capital of France?"),
        (llm_pb2.ROLE_ASSISTANT, second.done.text),
    ]
    # The second prompt carried the first turn: it is longer by at least that turn's words.
    fresh = await ask(llm.stub, "memory-fresh", "What is the capital of France?")
    assert second.done.prompt_tokens > fresh.done.prompt_tokens + 10
    assert "Paris" in second.done.text


async def test_recalls_a_name_said_two_turns_earlier(llm: Any, ask: Any) -> None:
    """The conversation the end-to-end test holds, at temperature 0 (greedy, reproducible)."""
    await ask(llm.stub, "recall-1", "Hello! My name is Alice. Please remember my name.")
    await ask(llm.stub, "recall-1", "What is the capital of France?")
    third = await ask(llm.stub, "recall-1", "What is my name?")
    assert re.search(r"\bAlice\b", third.done.text), third.done.text


async def test_bench_scenario_times_each_turn(llm: Any) -> None:
    from bench.llm_direct import run_direct

    turns = await run_direct(llm.addr, ["Hi!", "How are you?"], "bench-test")
    assert len(turns) == 2
    for turn in turns:
        assert 0 < turn["ttfd_ms"] <= turn["done_ms"]
        assert turn["completion_tokens"] > 0
    assert turns[1]["prompt_tokens"] > turns[0]["prompt_tokens"]  # one conversation


async def test_reset_forgets_the_session(llm: Any, ask: Any) -> None:
    await ask(llm.stub, "reset-1", "Hi there!")
    reset = await llm.stub.ResetHistory(llm_pb2.ResetHistoryRequest(session_id="reset-1"))
    assert reset.removed == 2
    history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="reset-1"))
    assert list(history.messages) == []
    unknown = await llm.stub.ResetHistory(llm_pb2.ResetHistoryRequest(session_id="never-seen"))
    assert unknown.removed == 0


@pytest.mark.parametrize(
    ("session_id", "turn_id", "text", "complaint"),
    [
        ("", "t1", "hello", "session_id is required"),
        ("bad id!", "t1", "hello", "session_id may only contain"),
        ("s" * 129, "t1", "hello", "session_id must be at most 128"),
        ("valid", "", "hello", "turn_id is required"),
        ("valid", "t/1", "hello", "turn_id may only contain"),
        ("valid", "t1", "", "text must not be blank"),
        ("valid", "t1", " \n\t ", "text must not be blank"),
        ("valid", "t1", "x" * 4001, "at most 4000"),
    ],
)
async def test_invalid_reply_requests_get_invalid_argument(
    llm: Any, session_id: str, turn_id: str, text: str, complaint: str
) -> None:
    call = llm.stub.Reply(
        llm_pb2.ReplyRequest(session_id=session_id, turn_id=turn_id, text=text), timeout=30
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert complaint in (raised.value.details() or "")


async def test_invalid_history_requests_get_invalid_argument(llm: Any, ask: Any) -> None:
    for rpc, request in (
        (llm.stub.GetHistory, llm_pb2.GetHistoryRequest(session_id="")),
        (llm.stub.GetHistory, llm_pb2.GetHistoryRequest(session_id="a b")),
        (llm.stub.ResetHistory, llm_pb2.ResetHistoryRequest(session_id="é")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rpc(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # ... and the service carries on.
    assert (await ask(llm.stub, "after-bad", "Hello!")).done.text


async def test_concurrent_requests_all_complete(llm: Any, ask: Any) -> None:
    prompts = ["Hi!", "What is the sea?", "Do you like music?", "Say something nice."]
    results = await asyncio.gather(
        *(ask(llm.stub, f"concurrent-{i}", text) for i, text in enumerate(prompts))
    )
    for result in results:
        assert "".join(result.deltas) == result.done.text
        assert result.done.text.strip()
    for i, prompt in enumerate(prompts):
        history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id=f"concurrent-{i}"))
        assert [m.text for m in history.messages] == [prompt, results[i].done.text]


async def test_cancelled_reply_stores_nothing_and_stops_generating(llm: Any, ask: Any) -> None:
    call = llm.stub.Reply(
        llm_pb2.ReplyRequest(session_id="cancel-1", turn_id="t1", text="Tell me a long story."),
        timeout=60,
    )
    with capture_logs() as logs:
        first = await call.read()
        assert first.WhichOneof("event") == "delta"
        call.cancel()
        for _ in range(200):  # the generation thread notices within a token
            if any(e["event"] == "llm.local.generation" for e in logs):
                break
            await asyncio.sleep(0.05)
    [generation] = [e for e in logs if e["event"] == "llm.local.generation"]
    assert generation["outcome"] == "cancelled"
    assert generation["completion_tokens"] < 64
    history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="cancel-1"))
    assert list(history.messages) == []
    assert (await ask(llm.stub, "after-cancel", "Hello!")).done.text


async def test_a_full_queue_is_resource_exhausted_and_waiting_calls_can_leave(
    start_llm: Any, ask: Any
) -> None:
    env = {"AVATARCHAT_LLM_MAX_QUEUE": "1", "AVATARCHAT_LLM_MAX_TOKENS": "256"}

    def start(session_id: str) -> Any:
        request = llm_pb2.ReplyRequest(
            session_id=session_id, turn_id="t1", text="Tell me a long story about a dragon."
        )
        return busy.stub.Reply(request, timeout=120)

    with capture_logs() as logs:
        async with start_llm(env) as busy:
            running = start("busy-running")
            assert (await running.read()).WhichOneof("event") == "delta"  # generating now
            waiting = start("busy-waiting")
            await asyncio.sleep(0.2)  # queued behind the running one
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await start("busy-rejected").read()
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "AVATARCHAT_LLM_MAX_QUEUE" in (raised.value.details() or "")
            assert ("retry-after", "1") in tuple(raised.value.trailing_metadata() or ())
            waiting.cancel()  # leaves the queue before its turn
            rest = []
            while (event := await running.read()) is not grpc.aio.EOF:
                rest.append(event)
            assert rest[-1].WhichOneof("event") == "done"
            assert (await ask(busy.stub, "busy-after", "Hello!")).done.text
            history = await busy.stub.GetHistory(
                llm_pb2.GetHistoryRequest(session_id="busy-waiting")
            )
            assert list(history.messages) == []
    generations = [e for e in logs if e["event"] == "llm.local.generation"]
    assert [e["outcome"] for e in generations] == ["done", "done"]  # the waiting one never ran
