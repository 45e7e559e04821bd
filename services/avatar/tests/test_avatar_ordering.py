"""Per-session event ordering: events go out in seq order whatever order the work finishes in."""

from __future__ import annotations

import asyncio

from avatarchat.v1 import events_pb2
from avatarchat_avatar import publisher as ev
from avatarchat_avatar.ordering import OrderedEvents
from avatarchat_avatar.publisher import ClipIdentity


class Recorder:
    def __init__(self) -> None:
        self.events: list[events_pb2.AvatarEvent] = []

    async def publish(self, event: events_pb2.AvatarEvent) -> None:
        await asyncio.sleep(0)  # a real publish awaits the stream's ack
        self.events.append(event)

    def log(self) -> list[tuple[int, str]]:
        return [(e.seq, e.WhichOneof("event") or "") for e in self.events]


def terminal_order(log: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [item for item in log if item[1] != "speech_ready"]


def clip(seq: int, session: str = "s1") -> ClipIdentity:
    return ClipIdentity(f"c{seq}-{session}", session, "t1", seq)


def speech(identity: ClipIdentity) -> events_pb2.AvatarEvent:
    return ev.speech_ready(identity, "hi", events_pb2.Timeline(duration_ms=100))


def ready(identity: ClipIdentity) -> events_pb2.AvatarEvent:
    return ev.clip_ready(identity, duration_ms=100, fps=25, width=512, height=512)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_later_clip_finishing_first_waits_for_earlier() -> None:
    rec = Recorder()
    order = OrderedEvents(rec.publish)
    c1, c2 = clip(1), clip(2)
    order.register("s1", c1.clip_id, 1, speech_only=False)
    order.register("s1", c2.clip_id, 2, speech_only=False)
    order.speech("s1", c2.clip_id, speech(c2))
    order.finish("s1", c2.clip_id, ready(c2))
    await settle()
    assert rec.log() == []
    order.speech("s1", c1.clip_id, speech(c1))
    await settle()
    # clip 2's speech may go as soon as clip 1's has; its clip-ready waits for clip 1's.
    assert rec.log() == [(1, "speech_ready"), (2, "speech_ready")]
    order.finish("s1", c1.clip_id, ready(c1))
    await settle()
    assert rec.log()[2:] == [(1, "clip_ready"), (2, "clip_ready")]
    await order.close(1)


async def test_failure_before_speech_does_not_hold_later_speech() -> None:
    rec = Recorder()
    order = OrderedEvents(rec.publish)
    c1, c2 = clip(1), clip(2)
    order.register("s1", c1.clip_id, 1, speech_only=False)
    order.register("s1", c2.clip_id, 2, speech_only=False)
    order.speech("s1", c2.clip_id, speech(c2))
    order.finish("s1", c1.clip_id, ev.clip_failed(c1, reason="boom", code="UNAVAILABLE"))
    await settle()
    assert sorted(rec.log()) == [(1, "clip_failed"), (2, "speech_ready")]
    await order.close(1)


async def test_cancel_drops_pending_speech_and_unblocks_later_clips() -> None:
    rec = Recorder()
    order = OrderedEvents(rec.publish)
    c1, c2, c3 = clip(1), clip(2), clip(3)
    for c in (c1, c2, c3):
        order.register("s1", c.clip_id, c.seq, speech_only=False)
    order.speech("s1", c2.clip_id, speech(c2))  # waiting behind clip 1
    order.finish(
        "s1",
        c2.clip_id,
        ev.clip_failed(c2, reason="cancelled", code="CANCELLED"),
        drop_speech=True,
    )
    order.speech("s1", c3.clip_id, speech(c3))
    order.finish("s1", c3.clip_id, ready(c3))
    order.finish(
        "s1",
        c1.clip_id,
        ev.clip_failed(c1, reason="cancelled", code="CANCELLED"),
        drop_speech=True,
    )
    await settle()
    assert terminal_order(rec.log()) == [(1, "clip_failed"), (2, "clip_failed"), (3, "clip_ready")]
    assert (3, "speech_ready") in rec.log() and (2, "speech_ready") not in rec.log()
    await order.close(1)


async def test_render_failure_after_speech_keeps_the_speech() -> None:
    rec = Recorder()
    order = OrderedEvents(rec.publish)
    c1, c2 = clip(1), clip(2)
    order.register("s1", c1.clip_id, 1, speech_only=False)
    order.register("s1", c2.clip_id, 2, speech_only=False)
    order.speech("s1", c2.clip_id, speech(c2))
    order.finish("s1", c2.clip_id, ev.clip_failed(c2, reason="render", code="INTERNAL"))
    order.speech("s1", c1.clip_id, speech(c1))
    order.finish("s1", c1.clip_id, ready(c1))
    await settle()
    assert rec.log() == [
        (1, "speech_ready"),
        (2, "speech_ready"),
        (1, "clip_ready"),
        (2, "clip_failed"),
    ]
    await order.close(1)


async def test_sessions_are_independent_and_lanes_are_released() -> None:
    rec = Recorder()
    order = OrderedEvents(rec.publish)
    a1, b1 = clip(1, "a"), clip(1, "b")
    order.register("a", a1.clip_id, 1, speech_only=True)
    order.register("b", b1.clip_id, 1, speech_only=True)
    assert order.has_live_seq("a", 1)
    order.speech("b", b1.clip_id, speech(b1))
    await settle()
    assert [(e.session_id, e.WhichOneof("event")) for e in rec.events] == [("b", "speech_ready")]
    order.speech("a", a1.clip_id, speech(a1))
    await settle()
    assert not order.has_live_seq("a", 1) and not order.has_live_seq("b", 1)
    # a session that comes back gets a fresh lane
    a2 = clip(2, "a")
    order.register("a", a2.clip_id, 2, speech_only=True)
    order.speech("a", a2.clip_id, speech(a2))
    await settle()
    assert rec.events[-1].clip_id == a2.clip_id
    await order.close(1)


async def test_a_failing_publish_does_not_stall_the_session() -> None:
    sent: list[int] = []

    async def flaky(event: events_pb2.AvatarEvent) -> None:
        if event.seq == 1:
            raise RuntimeError("NATS is gone")
        sent.append(event.seq)

    order = OrderedEvents(flaky)
    c1, c2 = clip(1), clip(2)
    order.register("s1", c1.clip_id, 1, speech_only=True)
    order.register("s1", c2.clip_id, 2, speech_only=True)
    order.speech("s1", c1.clip_id, speech(c1))
    order.speech("s1", c2.clip_id, speech(c2))
    await settle()
    assert sent == [2]
    await order.close(1)
