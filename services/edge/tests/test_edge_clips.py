"""Clip orchestration: sentences to GenerateClip, avatar events from NATS to clip.* frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest
from aiohttp.test_utils import TestClient
from nats.aio.client import Client as NATS

from avatarchat import bus
from avatarchat.v1 import avatar_pb2, events_pb2
from avatarchat_edge.app import NATS as NATS_LINK
from tests.waiting import eventually


@pytest.fixture
async def publisher(nats_server: Any) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    await bus.ensure_events_stream(nc.jetstream(), bus.Retention())
    yield nc
    await nc.drain()


@pytest.fixture
async def clip_edge(make_edge: Any, llm: Any, avatar: Any, nats_server: Any) -> TestClient:
    return await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": avatar.addr,
            "AVATARCHAT_NATS_URL": nats_server.url,
        }
    )


def speech(session_id: str, clip_id: str, turn_id: str, seq: int) -> events_pb2.AvatarEvent:
    event = events_pb2.AvatarEvent(clip_id=clip_id, session_id=session_id, turn_id=turn_id, seq=seq)
    event.speech_ready.text = "Hello there."
    timeline = event.speech_ready.timeline
    timeline.duration_ms = 900
    timeline.visemes.add(start_ms=0, end_ms=120, viseme="sil", weight=0.0)
    timeline.visemes.add(start_ms=120, end_ms=300, viseme="aa", weight=0.75)
    timeline.gestures.add(start_ms=0, duration_ms=800, gesture="wave", intensity=1.0)
    timeline.words.add(start_ms=100, end_ms=420, text="Hello")
    return event


def ready(session_id: str, clip_id: str, turn_id: str, seq: int) -> events_pb2.AvatarEvent:
    event = events_pb2.AvatarEvent(clip_id=clip_id, session_id=session_id, turn_id=turn_id, seq=seq)
    event.clip_ready.duration_ms = 900
    event.clip_ready.fps = 25
    event.clip_ready.width = event.clip_ready.height = 512
    return event


def failed(session_id: str, clip_id: str, turn_id: str, seq: int) -> events_pb2.AvatarEvent:
    event = events_pb2.AvatarEvent(clip_id=clip_id, session_id=session_id, turn_id=turn_id, seq=seq)
    event.clip_failed.reason = "the voice could not be loaded"
    event.clip_failed.code = "INTERNAL"
    return event


async def publish(nc: NATS, event: events_pb2.AvatarEvent) -> None:
    await nc.jetstream().publish(
        bus.events_subject(event.session_id), event.SerializeToString(), stream=bus.EVENTS_STREAM
    )


Cancels = list[tuple[str, avatar_pb2.CancelClipsRequest]]


@pytest.fixture
async def cancels(publisher: NATS) -> Cancels:
    """The cancels broadcast to the avatar processes: (subject, request)."""
    heard: Cancels = []

    async def on_cancel(msg: Any) -> None:
        heard.append((msg.subject, avatar_pb2.CancelClipsRequest.FromString(msg.data)))

    await publisher.subscribe(f"{bus.CANCEL_SUBJECT_PREFIX}.>", cb=on_cancel)
    await publisher.flush()
    return heard


async def test_each_sentence_becomes_a_clip_in_order(
    clip_edge: TestClient, llm: Any, avatar: Any, cancels: Cancels, helpers: Any
) -> None:
    ws, hello = await helpers.connect(clip_edge)
    assert hello["avatar"] is True and hello["features"]["avatar"] is True
    sid = hello["session_id"]
    await ws.send_json({"type": "text", "text": "hi"})
    done = (await helpers.until(ws, "reply.done"))[-1]
    assert done["clips"] == 2
    await eventually(lambda: len(avatar.servicer.clips) == 2)
    llm.servicer.pieces = ["Dr. Smith says", " pi is 3.", "14... Really", "! Bye."]
    await ws.send_json({"type": "text", "text": "again"})
    done2 = (await helpers.until(ws, "reply.done"))[-1]
    assert done2["clips"] == 3
    await eventually(lambda: len(avatar.servicer.clips) == 5)
    clips = avatar.servicer.clips
    assert [(c.seq, c.text) for c in clips] == [
        (1, "Hello there."),
        (2, "Nice to meet you!"),
        (3, "Dr. Smith says pi is 3.14..."),
        (4, "Really!"),
        (5, "Bye."),
    ]
    assert {c.session_id for c in clips} == {sid}
    assert [c.turn_id for c in clips] == [done["turn_id"]] * 2 + [done2["turn_id"]] * 3
    assert not any(c.speech_only for c in clips)
    # A new turn first cancels whatever the previous one still had pending, on every avatar
    # process: the cancel is broadcast on NATS, not sent to one pod.
    await eventually(lambda: len(cancels) == 1)
    assert cancels[0][0] == bus.cancel_subject(sid) and cancels[0][1].session_id == sid
    assert avatar.servicer.cancels == []
    await ws.close()


async def test_the_first_clip_starts_before_the_reply_ends(
    clip_edge: TestClient, llm: Any, avatar: Any, helpers: Any
) -> None:
    words = [f" w{i}" for i in range(20)]
    llm.servicer.pieces = ["Well", *words]
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(clip_edge)
    await ws.send_json({"type": "text", "text": "ramble"})
    await eventually(lambda: bool(avatar.servicer.clips), what="a clip while the reply streams")
    assert avatar.servicer.clips[0].text == "Well" + "".join(words[:11])  # ~12 words
    llm.servicer.hold.set()
    done = (await helpers.until(ws, "reply.done"))[-1]
    assert done["clips"] == 2
    await ws.close()


async def test_avatar_off_and_speech_only(clip_edge: TestClient, avatar: Any, helpers: Any) -> None:
    ws, _ = await helpers.connect(clip_edge)
    await ws.send_json({"type": "session.start", "avatar": False})
    assert (await helpers.receive(ws))["avatar"] is False
    await ws.send_json({"type": "text", "text": "hi"})
    assert (await helpers.until(ws, "reply.done"))[-1]["clips"] == 0
    assert avatar.servicer.clips == []
    await ws.send_json({"type": "session.start", "avatar": True, "video": False})
    frame = await helpers.receive(ws)
    assert frame["avatar"] is True and frame["video"] is False
    await ws.send_json({"type": "text", "text": "hi"})
    await helpers.until(ws, "reply.done")
    await eventually(lambda: len(avatar.servicer.clips) == 2)
    assert all(c.speech_only for c in avatar.servicer.clips)
    await ws.close()


async def test_interrupt_cancels_the_clips(
    clip_edge: TestClient, llm: Any, avatar: Any, cancels: Cancels, helpers: Any
) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, hello = await helpers.connect(clip_edge)
    await ws.send_json({"type": "text", "text": "talk"})
    await eventually(lambda: len(avatar.servicer.clips) == 1)  # "Hello there."
    await ws.send_json({"type": "interrupt"})
    await helpers.until(ws, "reply.interrupted")
    await eventually(lambda: len(cancels) == 1)
    subject, cancel = cancels[0]
    assert subject == bus.cancel_subject(hello["session_id"])
    assert (cancel.session_id, cancel.turn_id) == (hello["session_id"], "")
    await ws.close()


async def test_refused_clips_become_clip_failed_frames(
    clip_edge: TestClient, avatar: Any, helpers: Any
) -> None:
    avatar.servicer.reject = grpc.StatusCode.RESOURCE_EXHAUSTED
    ws, _ = await helpers.connect(clip_edge)
    await ws.send_json({"type": "text", "text": "hi"})
    frames = await helpers.until(ws, "reply.done")
    frames += [await helpers.receive(ws) for _ in range(2 - _count(frames, "clip.failed"))]
    fails = [f for f in frames if f["type"] == "clip.failed"]
    assert [f["seq"] for f in fails] == [1, 2]
    assert all(f["clip_id"] is None and f["code"] == "RESOURCE_EXHAUSTED" for f in fails)
    assert "busy" in fails[0]["reason"]
    await ws.close()


def _count(frames: list[dict[str, Any]], kind: str) -> int:
    return sum(f["type"] == kind for f in frames)


async def test_avatar_events_are_forwarded(
    clip_edge: TestClient, publisher: NATS, helpers: Any
) -> None:
    ws, hello = await helpers.connect(clip_edge)
    sid = hello["session_id"]
    other, other_hello = await helpers.connect(clip_edge)
    await publish(publisher, speech(sid, "c1", "t1", 1))
    await publish(publisher, ready(sid, "c1", "t1", 1))
    await publish(publisher, failed(sid, "c2", "t1", 2))
    await publish(publisher, speech(other_hello["session_id"], "x9", "t9", 1))
    frames = [await helpers.receive(ws) for _ in range(3)]
    assert frames[0] == {
        "type": "clip.speech",
        "clip_id": "c1",
        "turn_id": "t1",
        "seq": 1,
        "audio_url": "/clips/c1.wav",
        "text": "Hello there.",
        "timeline": {
            "duration_ms": 900,
            "visemes": [
                {"start_ms": 0, "end_ms": 120, "viseme": "sil", "weight": 0.0},
                {"start_ms": 120, "end_ms": 300, "viseme": "aa", "weight": 0.75},
            ],
            "gestures": [{"start_ms": 0, "duration_ms": 800, "gesture": "wave", "intensity": 1.0}],
            "words": [{"start_ms": 100, "end_ms": 420, "text": "Hello"}],
        },
    }
    assert frames[1] == {
        "type": "clip.ready",
        "clip_id": "c1",
        "turn_id": "t1",
        "seq": 1,
        "video_url": "/clips/c1.mp4",
        "duration_ms": 900,
        "fps": 25,
        "width": 512,
        "height": 512,
    }
    assert frames[2] == {
        "type": "clip.failed",
        "clip_id": "c2",
        "turn_id": "t1",
        "seq": 2,
        "reason": "the voice could not be loaded",
        "code": "INTERNAL",
    }
    assert (await helpers.receive(other))["clip_id"] == "x9"  # each socket its own
    await ws.close()
    await other.close()


async def test_events_of_interrupted_clips_are_dropped(
    clip_edge: TestClient, llm: Any, publisher: NATS, helpers: Any
) -> None:
    ws, hello = await helpers.connect(clip_edge)
    sid = hello["session_id"]
    await ws.send_json({"type": "text", "text": "hi"})
    done = (await helpers.until(ws, "reply.done"))[-1]  # clips 1 and 2
    await ws.send_json({"type": "interrupt"})
    await ws.send_json({"type": "text", "text": "next"})
    done2 = (await helpers.until(ws, "reply.done"))[-1]  # clips 3 and 4
    await publish(publisher, speech(sid, "c1", done["turn_id"], 1))  # interrupted: dropped
    await publish(publisher, ready(sid, "c2", done["turn_id"], 2))  # interrupted: dropped
    await publish(publisher, speech(sid, "c3", done2["turn_id"], 3))
    frame = await helpers.receive(ws)
    assert (frame["type"], frame["clip_id"]) == ("clip.speech", "c3")
    await ws.close()


async def test_events_continue_after_a_resume_without_repeats(
    clip_edge: TestClient, publisher: NATS, helpers: Any
) -> None:
    ws, hello = await helpers.connect(clip_edge)
    sid = hello["session_id"]
    await ws.send_json({"type": "text", "text": "remember me"})
    await helpers.until(ws, "reply.done")
    await publish(publisher, speech(sid, "c1", "t1", 9))
    assert (await helpers.receive(ws))["clip_id"] == "c1"
    await ws.close()

    ws2, _ = await helpers.connect(clip_edge)
    await ws2.send_json({"type": "session.start", "session_id": sid})
    assert (await helpers.receive(ws2))["resumed"] is True
    await publish(publisher, speech(sid, "c2", "t2", 10))
    frame = await helpers.receive(ws2)
    assert frame["clip_id"] == "c2"  # c1 is not delivered again
    await ws2.close()


async def test_no_event_is_lost_when_nats_restarts_mid_clip(
    make_edge: Any, llm: Any, avatar: Any, fresh_nats_server: Any, helpers: Any
) -> None:
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": avatar.addr,
            "AVATARCHAT_NATS_URL": fresh_nats_server.url,
        }
    )
    ws, hello = await helpers.connect(edge)
    sid = hello["session_id"]
    await ws.send_json({"type": "text", "text": "hi"})
    done = (await helpers.until(ws, "reply.done"))[-1]
    turn = done["turn_id"]

    nc = await nats.connect(fresh_nats_server.url)
    await bus.ensure_events_stream(nc.jetstream(), bus.Retention())
    await publish(nc, speech(sid, "c1", turn, 1))
    assert (await helpers.receive(ws))["type"] == "clip.speech"
    await nc.close()

    await asyncio.to_thread(fresh_nats_server.stop)
    await eventually(lambda: not edge.app[NATS_LINK].connected, what="the edge noticing")
    await asyncio.to_thread(fresh_nats_server.start)
    nc = await nats.connect(fresh_nats_server.url)
    # Published while the edge may still be reconnecting: it must arrive anyway, once.
    await publish(nc, ready(sid, "c1", turn, 1))
    await publish(nc, speech(sid, "c2", turn, 2))
    frames = [await helpers.receive(ws, within=20) for _ in range(2)]
    kinds = [(f["type"], f["clip_id"]) for f in frames]
    assert kinds == [("clip.ready", "c1"), ("clip.speech", "c2")]
    await publish(nc, ready(sid, "c2", turn, 2))
    frame = await helpers.receive(ws, within=10)
    assert (frame["type"], frame["clip_id"]) == ("clip.ready", "c2")
    await nc.close()
    await ws.close()
