"""History stores (memory and NATS KV against a real nats-server) and the history window."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatarchat import bus
from avatarchat.nats_server import NatsServer
from avatarchat.v1 import llm_pb2
from avatarchat_llm.history import (
    HistoryStore,
    MemoryHistoryStore,
    Message,
    NatsHistoryStore,
    window_of,
)

_ids = itertools.count()


def turn(n: int) -> list[Message]:
    return [Message("user", f"question {n}"), Message("assistant", f"answer {n}")]


def unique(name: str) -> str:
    """Session ids unique across the test session (the NATS bucket is shared)."""
    return f"{name}-{next(_ids)}"


def test_window_keeps_the_newest_messages() -> None:
    messages = turn(1) + turn(2) + turn(3)
    assert window_of(messages, 4) == turn(2) + turn(3)
    assert window_of(messages, 100) == messages
    assert window_of(messages, 0) == []


def test_window_start_moves_in_steps_so_the_prompt_prefix_is_reused() -> None:
    history: list[Message] = []
    starts = []
    for n in range(1, 12):
        history += turn(n)
        window = window_of(history, 8)
        assert 0 < len(window) <= 8 and window[-1] == history[-1]
        starts.append(window[0].text)
    # 4 turns fit; after that the start jumps two turns at a time instead of one per turn.
    assert starts == ["question 1"] * 4 + ["question 3"] * 2 + ["question 5"] * 2 + [
        "question 7"
    ] * 2 + ["question 9"]


def test_window_never_starts_with_an_assistant_message() -> None:
    messages = turn(1) + turn(2)
    assert window_of(messages, 3) == turn(2)
    assert window_of([Message("assistant", "hi")], 5) == []


@pytest.fixture(params=["memory", "nats"])
async def store(request: pytest.FixtureRequest, nats_server: NatsServer) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryHistoryStore(max_messages=6)
        return
    nc = await bus.connect(nats_server.url, name="llm-history-test")
    try:
        kv = await bus.ensure_history_kv(nc.jetstream(), bus.Retention())
        yield NatsHistoryStore(kv, max_messages=6)
    finally:
        await nc.drain()


async def test_store_appends_loads_and_resets(store: HistoryStore) -> None:
    session = unique("store")
    assert await store.load(session) == []
    await store.append(session, turn(1))
    await store.append(session, turn(2))
    assert await store.load(session) == turn(1) + turn(2)
    assert await store.load(unique("other")) == []
    assert await store.reset(session) == 4
    assert await store.load(session) == []
    assert await store.reset(session) == 0
    await store.append(session, turn(3))  # a reset session starts again
    assert await store.load(session) == turn(3)


async def test_store_drops_the_oldest_beyond_its_limit(store: HistoryStore) -> None:
    session = unique("limit")
    for n in range(5):
        await store.append(session, turn(n))
    assert await store.load(session) == turn(2) + turn(3) + turn(4)


async def test_store_takes_any_valid_session_id(store: HistoryStore) -> None:
    for session in (".leading-dot", "trailing.", "a..b", "under_score-1.2", "x" * 128):
        await store.append(session, turn(1))
        assert await store.load(session) == turn(1), session
        assert await store.reset(session) == 2


async def test_store_keeps_text_exactly(store: HistoryStore) -> None:
    session = unique("text")
    odd = [Message("user", 'Quotes " and \\ and ünïcödé 🙂\nnew line'), Message("assistant", "")]
    await store.append(session, odd)
    assert await store.load(session) == odd


async def test_concurrent_appends_all_land(store: HistoryStore) -> None:
    session = unique("race")
    await asyncio.gather(*(store.append(session, [Message("user", str(n))]) for n in range(5)))
    assert sorted(m.text for m in await store.load(session)) == ["0", "1", "2", "3", "4"]


def test_memory_store_forgets_least_recent_sessions_beyond_its_limit() -> None:
    async def scenario() -> list[list[Message]]:
        store = MemoryHistoryStore(max_messages=10, max_sessions=2)
        await store.append("a", turn(1))
        await store.append("b", turn(2))
        await store.load("a")  # "a" is now the most recently used
        await store.append("c", turn(3))
        return [await store.load(s) for s in ("a", "b", "c")]

    assert asyncio.run(scenario()) == [turn(1), [], turn(3)]


async def test_a_restarted_service_carries_on_the_conversation(
    nats_server: NatsServer, start_llm: Any, ask: Any
) -> None:
    env = {"AVATARCHAT_LLM_HISTORY": "nats", "AVATARCHAT_NATS_URL": nats_server.url}
    session = unique("restart")
    async with start_llm(env) as first_instance:
        first = await ask(first_instance.stub, session, "Hello! My name is Alice.")
    async with start_llm(env) as second_instance:
        history = await second_instance.stub.GetHistory(
            llm_pb2.GetHistoryRequest(session_id=session)
        )
        assert [(m.role, m.text) for m in history.messages] == [
            (llm_pb2.ROLE_USER, "Hello! My name is Alice."),
            (llm_pb2.ROLE_ASSISTANT, first.done.text),
        ]
        second = await ask(second_instance.stub, session, "What is my name?")
        fresh = await ask(second_instance.stub, unique("fresh"), "What is my name?")
        # The restarted service sent the first turn to the model along with the question.
        assert second.done.prompt_tokens > fresh.done.prompt_tokens + 5
        history = await second_instance.stub.GetHistory(
            llm_pb2.GetHistoryRequest(session_id=session)
        )
        assert len(history.messages) == 4
        reset = await second_instance.stub.ResetHistory(
            llm_pb2.ResetHistoryRequest(session_id=session)
        )
        assert reset.removed == 4


async def test_the_history_bucket_takes_its_retention_from_the_shared_settings(
    fresh_nats_server: NatsServer, start_llm: Any
) -> None:
    """Issue 9: the llm built ``bus.Retention()`` by hand and ignored these variables."""
    env = {
        "AVATARCHAT_LLM_BACKEND": "groq",  # no engine to start; the bucket is made in load()
        "GROQ_API_KEY": "gsk_unused",
        "AVATARCHAT_LLM_HISTORY": "nats",
        "AVATARCHAT_NATS_URL": fresh_nats_server.url,
        "AVATARCHAT_HISTORY_TTL_S": "321",
        "AVATARCHAT_NATS_REPLICAS": "1",
    }
    async with start_llm(env):
        pass
    nc = await bus.connect(fresh_nats_server.url, name="llm-retention-test")
    try:
        js = nc.jetstream()
        status = await (await js.key_value(bus.HISTORY_BUCKET)).status()
        stream = await js.stream_info(f"KV_{bus.HISTORY_BUCKET}")
    finally:
        await nc.drain()
    assert status.ttl == 321  # the bucket's TTL, as the server holds it
    assert stream.config.max_age == 321 and stream.config.num_replicas == 1
