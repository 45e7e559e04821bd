"""The llm service over real gRPC with the real local engine: llama-server and the default model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from avatarchat.v1 import llm_pb2
from avatarchat_llm.models import QWEN_05B

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
    assert result.done.model == QWEN_05B.file_name
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


async def test_a_sessions_next_turn_reuses_its_cached_prompt(llm: Any, ask: Any) -> None:
    first = await ask(llm.stub, "cache-1", "Hi! I live in Lisbon.")
    assert first.done.prompt_tokens > 0
    second = await ask(llm.stub, "cache-1", "Which city do I live in?")
    # The system prompt and the first turn were not evaluated again.
    assert second.done.cached_prompt_tokens >= first.done.prompt_tokens
    assert second.done.cached_prompt_tokens < second.done.prompt_tokens


async def test_metrics_cover_slots_queue_latency_and_the_engine(llm: Any, ask: Any) -> None:
    await ask(llm.stub, "metrics-1", "Hello!")
    url = f"http://127.0.0.1:{llm.app.metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["avatarchat_llm_slots"] == 4
    assert values["avatarchat_llm_busy_slots"] == 0
    assert values["avatarchat_llm_queue_depth"] == 0
    assert values["avatarchat_llm_time_to_first_token_seconds_count"] >= 1
    assert values["avatarchat_llm_completion_tokens_total"] > 0
    assert values["avatarchat_llm_engine_up"] == 1
    assert values['avatarchat_llm_replies_total{outcome="done"}'] >= 1
    assert values["llamacpp:tokens_predicted_total"] > 0  # forwarded from llama-server


async def test_memory_bench_scores_a_conversation(llm: Any) -> None:
    from bench.memory import CONVERSATIONS, recalled, run

    result = await run(llm.addr, CONVERSATIONS[:1])
    assert result["conversations"] == 1 and len(result["first_delta_ms"]) == 4
    [answer] = result["answers"]
    assert answer["question"] == "What is my name?"
    assert answer["recalled"] == recalled(answer["answer"], ("alice",))
    assert not recalled("My name is Elena.", ("alice",))
