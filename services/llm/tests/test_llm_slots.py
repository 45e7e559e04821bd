"""SlotGate: bounded concurrency, FIFO order, the queue limit, and callers that go away."""

from __future__ import annotations

import asyncio

import pytest

from avatarchat.errors import ResourceExhausted
from avatarchat_llm.slots import SlotGate


async def hold(gate: SlotGate, name: str, order: list[str], release: asyncio.Event) -> None:
    async with gate.slot():
        order.append(name)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_capacity_run_and_the_rest_wait_in_arrival_order() -> None:
    gate = SlotGate(capacity=2, max_queue=10)
    order: list[str] = []
    release = {name: asyncio.Event() for name in "abcde"}
    tasks = []
    for name in "abcde":
        tasks.append(asyncio.create_task(hold(gate, name, order, release[name])))
        await settle()
    assert order == ["a", "b"] and (gate.busy, gate.waiting) == (2, 3)
    release["b"].set()
    await settle()
    assert order == ["a", "b", "c"]
    release["a"].set()
    await settle()
    assert order == ["a", "b", "c", "d"] and (gate.busy, gate.waiting) == (2, 1)
    for event in release.values():
        event.set()
    await asyncio.gather(*tasks)
    assert order == list("abcde") and (gate.busy, gate.waiting) == (0, 0)


async def test_past_the_queue_limit_a_request_is_refused_with_a_retry_after() -> None:
    gate = SlotGate(capacity=1, max_queue=1, retry_after_s=2.5)
    release = asyncio.Event()
    order: list[str] = []
    running = asyncio.create_task(hold(gate, "running", order, release))
    waiting = asyncio.create_task(hold(gate, "waiting", order, release))
    await settle()
    with pytest.raises(ResourceExhausted) as refused:
        async with gate.slot():
            pass
    assert refused.value.retry_after_s == 2.5
    assert "AVATARCHAT_LLM_MAX_QUEUE" in refused.value.message
    release.set()
    await asyncio.gather(running, waiting)
    assert order == ["running", "waiting"]


async def test_a_waiter_that_goes_away_leaves_the_queue() -> None:
    gate = SlotGate(capacity=1, max_queue=5)
    release = asyncio.Event()
    order: list[str] = []
    running = asyncio.create_task(hold(gate, "running", order, release))
    await settle()
    leaving = asyncio.create_task(hold(gate, "leaving", order, release))
    staying = asyncio.create_task(hold(gate, "staying", order, release))
    await settle()
    leaving.cancel()
    await settle()
    assert gate.waiting == 1
    release.set()
    await asyncio.gather(running, staying)
    assert order == ["running", "staying"] and gate.busy == 0


async def test_a_holder_that_is_cancelled_hands_its_place_on_at_once() -> None:
    gate = SlotGate(capacity=1, max_queue=5)
    never = asyncio.Event()
    order: list[str] = []
    stuck = asyncio.create_task(hold(gate, "stuck", order, never))
    await settle()
    done = asyncio.Event()
    done.set()
    next_one = asyncio.create_task(hold(gate, "next", order, done))
    await settle()
    assert order == ["stuck"]
    stuck.cancel()  # a barge-in: the RPC is cancelled mid-generation
    await next_one
    assert order == ["stuck", "next"] and gate.busy == 0


async def test_no_queue_means_refuse_when_full() -> None:
    gate = SlotGate(capacity=1, max_queue=0)
    async with gate.slot():
        with pytest.raises(ResourceExhausted):
            async with gate.slot():
                pass
    async with gate.slot():  # free again
        assert gate.busy == 1
