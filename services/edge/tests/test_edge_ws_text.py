"""The text path over a real WebSocket: session, streamed replies, interrupt, reset, resume."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.waiting import eventually


async def test_hello_then_a_streamed_reply(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    assert hello["protocol"] == 1 and len(hello["session_id"]) == 32
    assert hello["resumed"] is False
    assert hello["features"] == {"text": True, "voice": False, "avatar": False}
    assert hello["avatar"] is False  # not deployed here

    await ws.send_json({"type": "text", "text": "Hi!"})
    frames = await helpers.until(ws, "reply.done")
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert [d["text"] for d in deltas] == llm.servicer.pieces
    done = frames[-1]
    assert done["text"] == "Hello there. Nice to meet you!"
    assert done["clips"] == 0
    assert {d["turn_id"] for d in deltas} == {done["turn_id"]}

    request = llm.servicer.requests[0]
    assert (request.session_id, request.text) == (hello["session_id"], "Hi!")
    assert request.turn_id == done["turn_id"]
    metadata = llm.servicer.metadata[0]
    assert metadata["session-id"] == hello["session_id"]
    assert metadata["turn-id"] == done["turn_id"]
    await ws.close()


async def test_turns_get_distinct_ids(text_edge: TestClient, helpers: Any) -> None:
    ws, _ = await helpers.connect(text_edge)
    turn_ids = set()
    for text in ("one", "two", "three"):
        await ws.send_json({"type": "text", "text": text})
        turn_ids.add((await helpers.until(ws, "reply.done"))[-1]["turn_id"])
    assert len(turn_ids) == 3
    await ws.close()


async def test_interrupt_cancels_the_reply(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    llm.servicer.hold = asyncio.Event()  # the reply never finishes on its own
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "Tell me a long story"})
    await helpers.until(ws, "reply.delta")
    await ws.send_json({"type": "interrupt"})
    frames = await helpers.until(ws, "reply.interrupted")
    interrupted = frames[-1]
    assert interrupted["reason"] == "interrupt"
    assert interrupted["text"].startswith("Hello")
    await eventually(lambda: llm.servicer.cancelled == 1)
    assert "reply.done" not in [f["type"] for f in frames]

    llm.servicer.hold = None  # the session still works
    await ws.send_json({"type": "text", "text": "Shorter, please"})
    assert (await helpers.until(ws, "reply.done"))[-1]["text"]
    await ws.close()


async def test_interrupt_with_nothing_running_is_harmless(
    text_edge: TestClient, helpers: Any
) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "interrupt"})
    await ws.send_json({"type": "ping", "id": 7})
    assert await helpers.receive(ws) == {"type": "pong", "id": 7}
    await ws.close()


async def test_a_new_text_barges_in(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "first"})
    first_delta = (await helpers.until(ws, "reply.delta"))[-1]
    llm.servicer.hold = None
    await ws.send_json({"type": "text", "text": "second"})
    frames = await helpers.until(ws, "reply.done")
    kinds = [f["type"] for f in frames]
    interrupted = frames[kinds.index("reply.interrupted")]
    assert interrupted["turn_id"] == first_delta["turn_id"]
    assert interrupted["reason"] == "barge_in"
    # Nothing of the old turn arrives after it was interrupted.
    after = frames[kinds.index("reply.interrupted") + 1 :]
    assert all(f["turn_id"] != first_delta["turn_id"] for f in after)
    assert frames[-1]["turn_id"] != first_delta["turn_id"]
    assert [r.text for r in llm.servicer.requests] == ["first", "second"]
    await ws.close()


async def test_reset_clears_memory(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    await ws.send_json({"type": "reset"})
    assert await helpers.receive(ws) == {"type": "reset.done", "removed": 2}
    assert llm.servicer.resets == [hello["session_id"]]
    await ws.close()


async def test_resume_keeps_the_session(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "My name is Ada."})
    await helpers.until(ws, "reply.done")
    await ws.close()

    ws2, hello2 = await helpers.connect(text_edge)
    assert hello2["session_id"] != hello["session_id"]
    await ws2.send_json({"type": "session.start", "session_id": hello["session_id"]})
    resumed = await helpers.receive(ws2)
    assert resumed["type"] == "session" and resumed["resumed"] is True
    assert resumed["session_id"] == hello["session_id"]
    await ws2.send_json({"type": "text", "text": "What is my name?"})
    await helpers.until(ws2, "reply.done")
    assert [r.session_id for r in llm.servicer.requests] == [hello["session_id"]] * 2
    await ws2.close()


async def test_resuming_a_live_session_takes_it_over(text_edge: TestClient, helpers: Any) -> None:
    ws1, hello = await helpers.connect(text_edge)
    ws2, _ = await helpers.connect(text_edge)
    await ws2.send_json({"type": "session.start", "session_id": hello["session_id"]})
    assert (await helpers.receive(ws2))["resumed"] is True
    taken = await helpers.receive(ws1)
    assert taken["code"] == "session_taken_over"
    closing = await ws1.receive(timeout=5)
    assert closing.type.name in ("CLOSE", "CLOSED", "CLOSING")
    assert ws1.close_code == 4409
    await ws2.send_json({"type": "text", "text": "still here?"})
    await helpers.until(ws2, "reply.done")
    await ws2.close()


async def test_session_start_for_own_session_just_confirms(
    text_edge: TestClient, helpers: Any
) -> None:
    ws, hello = await helpers.connect(text_edge)
    await ws.send_json(
        {"type": "session.start", "session_id": hello["session_id"], "avatar": False}
    )
    again = await helpers.receive(ws)
    assert again["type"] == "session" and again["session_id"] == hello["session_id"]
    assert again["resumed"] is False
    await ws.close()


async def test_asking_for_the_avatar_when_it_is_not_deployed(
    text_edge: TestClient, helpers: Any
) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "session.start", "avatar": True})
    err = await helpers.receive(ws)
    assert err["code"] == "avatar_unavailable"
    assert (await helpers.receive(ws))["avatar"] is False
    await ws.close()


async def test_reply_failure_is_an_error_frame_with_the_turn(
    text_edge: TestClient, llm: Any, helpers: Any
) -> None:
    import grpc

    llm.servicer.fail_with = grpc.StatusCode.RESOURCE_EXHAUSTED
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "hello"})
    err = await helpers.receive(ws)
    assert err["type"] == "error" and err["code"] == "llm_busy"
    assert err["turn_id"].startswith("t")
    llm.servicer.fail_with = None
    await ws.send_json({"type": "text", "text": "hello again"})
    await helpers.until(ws, "reply.done")
    await ws.close()


async def test_expired_sessions_are_forgotten_here_and_in_the_llm(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, session_ttl_s=0.2)
    ws, hello = await helpers.connect(edge)
    await ws.send_json({"type": "text", "text": "remember this"})
    await helpers.until(ws, "reply.done")
    await ws.close()
    await eventually(lambda: llm.servicer.resets == [hello["session_id"]])
    ws2, _ = await helpers.connect(edge)
    await ws2.send_json({"type": "session.start", "session_id": hello["session_id"]})
    assert (await helpers.receive(ws2))["code"] == "unknown_session"
    await ws2.close()
