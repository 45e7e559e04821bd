"""Two edge processes sharing one nats-server, as two edge pods behind an ingress without
affinity: a session started on edge A resumes on edge B with its history, clip counter and
event stream position, and a session held on one edge is taken over from the other.

The edges are real ``python -m avatarchat_edge`` processes; the llm and avatar behind them are
the scripted doubles of ``conftest.py`` on real gRPC ports; avatar events are published into
the real stream as the avatar service would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from avatarchat import bus
from avatarchat.nats_server import NatsServer, free_port
from avatarchat.v1 import events_pb2
from avatarchat_edge.sessions import SessionState
from tests.waiting import eventually

CLOSE_TAKEN_OVER = 4409


@pytest.fixture
async def avatar_events(fresh_nats_server: NatsServer) -> AsyncIterator[NATS]:
    """A NATS client that owns the events stream, as the avatar service does."""
    nc = await nats.connect(fresh_nats_server.url)
    await bus.ensure_events_stream(nc.jetstream(), bus.Retention())
    yield nc
    await nc.drain()


@pytest.fixture
async def edges(
    service_process: Any, fresh_nats_server: NatsServer, llm: Any, avatar: Any
) -> AsyncIterator[list[Any]]:
    running = []
    for name in ("edge-a", "edge-b"):
        env = {
            "AVATARCHAT_EDGE_PORT": "0",
            "AVATARCHAT_NATS_URL": fresh_nats_server.url,
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": avatar.addr,
            "AVATARCHAT_STT_ADDR": "",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
        running.append(service_process(name, "avatarchat_edge", env).start())
    try:
        for edge in running:
            await edge.wait_serving(within_s=60)
        yield running
    finally:
        for edge in running:
            edge.stop()


async def receive(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> dict[str, Any]:
    message = await ws.receive(timeout=within)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = message.json()
    return frame


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frames.append(await receive(ws))
        assert frames[-1]["type"] != "error", frames[-1]
        if frames[-1]["type"] == kind:
            return frames


async def publish_speech(nc: NATS, sid: str, clip_id: str, turn_id: str, seq: int) -> None:
    event = events_pb2.AvatarEvent(clip_id=clip_id, session_id=sid, turn_id=turn_id, seq=seq)
    event.speech_ready.text = "Hello there."
    event.speech_ready.timeline.duration_ms = 900
    await nc.jetstream().publish(
        bus.events_subject(sid), event.SerializeToString(), stream=bus.EVENTS_STREAM
    )


async def test_a_session_started_on_one_edge_resumes_on_another(
    edges: list[Any], avatar_events: NATS, llm: Any, avatar: Any
) -> None:
    edge_a, edge_b = edges
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://{edge_a.addr}/ws")
        hello = await receive(ws)
        sid = hello["session_id"]
        await ws.send_json({"type": "session.start", "video": False})
        assert (await receive(ws))["video"] is False
        await ws.send_json({"type": "text", "text": "remember me"})
        first = (await until(ws, "reply.done"))[-1]
        assert first["clips"] == 2  # seq 1 and 2
        await publish_speech(avatar_events, sid, "c1", first["turn_id"], 1)
        assert (await until(ws, "clip.speech"))[-1]["clip_id"] == "c1"
        await ws.close()  # the socket drops

        # Published while no socket holds the session: it must reach the resumed one, once.
        await publish_speech(avatar_events, sid, "c2", first["turn_id"], 2)

        ws_b = await http.ws_connect(f"ws://{edge_b.addr}/ws")
        assert (await receive(ws_b))["session_id"] != sid
        await ws_b.send_json({"type": "session.start", "session_id": sid})
        resumed = await receive(ws_b)
        assert (resumed["type"], resumed["session_id"]) == ("session", sid)
        assert resumed["resumed"] is True
        assert resumed["video"] is False  # the flags came along
        frame = await receive(ws_b)
        assert (frame["type"], frame["clip_id"]) == ("clip.speech", "c2")  # not c1 again

        await ws_b.send_json({"type": "text", "text": "what did I say?"})
        second = (await until(ws_b, "reply.done"))[-1]
        await ws_b.close()
        # The socket closing lets the clips that reply.done announced be requested.
        await eventually(lambda: len(avatar.servicer.clips) == 4)
    # The llm keeps the history by session id: both turns reached it under the same one.
    assert [r.session_id for r in llm.servicer.requests] == [sid, sid]
    # The clip counter carried on: the second turn's clips follow the first turn's.
    seqs = [(c.turn_id, c.seq) for c in avatar.servicer.clips]
    first_id, second_id = first["turn_id"], second["turn_id"]
    assert seqs == [(first_id, 1), (first_id, 2), (second_id, 3), (second_id, 4)]
    assert all(c.speech_only for c in avatar.servicer.clips)


async def test_a_session_held_on_one_edge_is_taken_over_from_the_other(
    edges: list[Any], avatar_events: NATS
) -> None:
    edge_a, edge_b = edges
    async with aiohttp.ClientSession() as http:
        ws_a = await http.ws_connect(f"ws://{edge_a.addr}/ws")
        sid = (await receive(ws_a))["session_id"]
        await ws_a.send_json({"type": "text", "text": "hi"})
        await until(ws_a, "reply.done")

        ws_b = await http.ws_connect(f"ws://{edge_b.addr}/ws")
        await receive(ws_b)
        await ws_b.send_json({"type": "session.start", "session_id": sid})
        resumed = await receive(ws_b)
        assert (resumed["session_id"], resumed["resumed"]) == (sid, True)

        taken = await receive(ws_a)
        assert taken["code"] == "session_taken_over", taken
        closing = await ws_a.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, CLOSE_TAKEN_OVER)

        # Events now go to edge B's socket, and edge B's socket carries the conversation.
        await publish_speech(avatar_events, sid, "c9", "t9", 9)
        assert (await until(ws_b, "clip.speech"))[-1]["clip_id"] == "c9"
        await ws_b.send_json({"type": "text", "text": "still there?"})
        await until(ws_b, "reply.done")

        # And back: edge A takes it over from edge B.
        ws_a2 = await http.ws_connect(f"ws://{edge_a.addr}/ws")
        await receive(ws_a2)
        await ws_a2.send_json({"type": "session.start", "session_id": sid})
        assert (await receive(ws_a2))["resumed"] is True
        assert (await receive(ws_b))["code"] == "session_taken_over"
        await ws_a2.close()


async def test_a_session_survives_its_edge_being_killed(
    edges: list[Any], avatar_events: NATS, avatar: Any
) -> None:
    edge_a, edge_b = edges
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://{edge_a.addr}/ws")
        sid = (await receive(ws))["session_id"]
        await ws.send_json({"type": "text", "text": "hi"})
        first = (await until(ws, "reply.done"))[-1]

        # The edge checkpoints the session within about a second; then it dies outright.
        async def stored_turns() -> int:
            try:
                kv = await avatar_events.jetstream().key_value(bus.SESSIONS_BUCKET)
                entry = await kv.get(sid)
            except (BucketNotFoundError, KeyNotFoundError):
                return 0
            return SessionState.from_json(entry.value or b"").turns

        async def checkpointed() -> bool:
            return await stored_turns() >= 1

        await eventually(checkpointed, within_s=10, every_s=0.1, what="the checkpoint")
        await eventually(lambda: len(avatar.servicer.clips) == first["clips"])
        edge_a.kill()

        ws_b = await http.ws_connect(f"ws://{edge_b.addr}/ws")
        await receive(ws_b)
        await ws_b.send_json({"type": "session.start", "session_id": sid})
        resumed = await receive(ws_b)
        assert (resumed["type"], resumed.get("resumed")) == ("session", True), resumed
        await ws_b.send_json({"type": "text", "text": "are you there?"})
        await until(ws_b, "reply.done")
        await ws_b.close()
    # No seq is handed out twice: the counter came from the checkpoint.
    seqs = [c.seq for c in avatar.servicer.clips]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1, seqs


async def test_an_unknown_session_is_refused_on_every_edge(edges: list[Any]) -> None:
    async with aiohttp.ClientSession() as http:
        for edge in edges:
            ws = await http.ws_connect(f"ws://{edge.addr}/ws")
            own = (await receive(ws))["session_id"]
            await ws.send_json({"type": "session.start", "session_id": "0" * 32})
            refused = await receive(ws)
            assert refused["code"] == "unknown_session" and own in refused["message"]
            await ws.send_json({"type": "ping", "id": 1})
            assert (await receive(ws))["type"] == "pong"  # the socket carries on
            await ws.close()


async def test_with_nats_down_sockets_work_and_a_resume_says_why_it_cannot(
    make_edge: Any, llm: Any, avatar: Any, helpers: Any
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": avatar.addr,
            "AVATARCHAT_NATS_URL": nowhere,
        }
    )
    ws, hello = await helpers.connect(edge)  # nothing waits for NATS
    await ws.send_json({"type": "session.start", "session_id": "0" * 32})
    refused = await helpers.receive(ws)
    assert refused["code"] == "sessions_unavailable", refused
    assert hello["session_id"] in refused["message"]
    await ws.send_json({"type": "text", "text": "hi"})
    assert (await helpers.until(ws, "reply.done"))[-1]["text"]  # text still works
    await ws.close()


def test_session_state_round_trips_and_rejects_garbage() -> None:
    state = SessionState(
        id="s1",
        avatar=True,
        video=False,
        next_seq=5,
        cancelled_below_seq=3,
        last_event_seq=None,
        created_unix=1.5,
        turns=2,
    )
    assert SessionState.from_json(state.to_json()) == state
    for garbage in (b"", b"[]", b'{"id": "s1"}', b"\xff"):
        with pytest.raises(ValueError, match="not a session state"):
            SessionState.from_json(garbage)
