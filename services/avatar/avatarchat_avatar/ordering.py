"""Publishes each session's clip events in ``seq`` order, whatever order the work finishes in.

Every clip has two ordered stages:

- *speech*: its speech-ready event. Clip N's goes out only once every earlier live clip of the
  session has published its speech-ready, or has failed or been cancelled before it.
- *terminal*: its clip-ready or clip-failed event. Clip N's goes out only once every earlier
  clip's terminal event has gone out, and after its own speech-ready.

A speech-only clip has no terminal event: its speech-ready ends it. A failed or cancelled clip
resolves its stages at once, so it never holds up the clips after it. Workers only hand events
over (``speech`` / ``finish``) and never wait here; one publishing task per session drains
what has become publishable, so a slow earlier clip cannot tie up a worker (no deadlock with
a small pool, whatever order clips arrive in).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from avatarchat import log
from avatarchat.v1 import events_pb2

_log = log.get("avatarchat.avatar.ordering")

Publish = Callable[[events_pb2.AvatarEvent], Awaitable[None]]


@dataclass
class _Slot:
    clip_id: str
    seq: int
    speech_only: bool
    speech_event: events_pb2.AvatarEvent | None = None
    speech_done: bool = False
    terminal_event: events_pb2.AvatarEvent | None = None
    terminal_done: bool = False


@dataclass
class _Lane:
    slots: dict[str, _Slot] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class OrderedEvents:
    """Buffers clip events per session and publishes them in ``seq`` order."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._lanes: dict[str, _Lane] = {}

    def has_live_seq(self, session_id: str, seq: int) -> bool:
        lane = self._lanes.get(session_id)
        return lane is not None and any(slot.seq == seq for slot in lane.slots.values())

    def register(self, session_id: str, clip_id: str, seq: int, *, speech_only: bool) -> None:
        """Takes a clip's place in its session's order; call when the clip is accepted."""
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = _Lane()
            # A fresh context: the task outlives the RPC that happened to create it, and must not
            # log with that RPC's bound rpc/turn_id.
            lane.task = asyncio.create_task(
                self._drain(session_id, lane),
                name=f"events-{session_id}",
                context=contextvars.Context(),
            )
        lane.slots[clip_id] = _Slot(clip_id=clip_id, seq=seq, speech_only=speech_only)

    def speech(self, session_id: str, clip_id: str, event: events_pb2.AvatarEvent) -> None:
        """Hands over the clip's speech-ready event."""
        slot = self._slot(session_id, clip_id)
        if slot is not None and not slot.speech_done:
            slot.speech_event = event
            self._wake(session_id)

    def finish(
        self,
        session_id: str,
        clip_id: str,
        event: events_pb2.AvatarEvent,
        *,
        drop_speech: bool = False,
    ) -> None:
        """Hands over the clip's terminal event (clip-ready or clip-failed).

        ``drop_speech`` withdraws a speech-ready that has not gone out yet (cancellation);
        otherwise a pending speech-ready still goes out first.
        """
        slot = self._slot(session_id, clip_id)
        if slot is None or slot.terminal_done or slot.terminal_event is not None:
            return
        if drop_speech or (slot.speech_event is None and not slot.speech_done):
            slot.speech_event = None
            slot.speech_done = True  # resolved: nothing will be published at this stage
        slot.terminal_event = event
        self._wake(session_id)

    async def close(self, timeout_s: float) -> None:
        """Waits up to ``timeout_s`` for buffered events to go out, then stops."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for lane in self._lanes.values():
            lane.wake.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._lanes.clear()

    def _slot(self, session_id: str, clip_id: str) -> _Slot | None:
        lane = self._lanes.get(session_id)
        return lane.slots.get(clip_id) if lane else None

    def _wake(self, session_id: str) -> None:
        lane = self._lanes.get(session_id)
        if lane is not None:
            lane.wake.set()

    async def _drain(self, session_id: str, lane: _Lane) -> None:
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            await self._flush(lane)
            if not lane.slots:
                # No await between this check and the removal: a clip registered from now on
                # gets a new lane.
                if self._lanes.get(session_id) is lane:
                    del self._lanes[session_id]
                return

    async def _flush(self, lane: _Lane) -> None:
        # Speech first: a client can start on the next sentence's audio while the video of an
        # earlier one is still on its way.
        for slot in sorted(lane.slots.values(), key=lambda s: s.seq):
            if slot.speech_event is not None and not slot.speech_done:
                event, slot.speech_event = slot.speech_event, None
                await self._send(event)
                slot.speech_done = True
                if slot.speech_only:
                    slot.terminal_done = True
            elif not slot.speech_done:
                break
        for slot in sorted(lane.slots.values(), key=lambda s: s.seq):
            if slot.terminal_done:
                continue
            if slot.terminal_event is None or not slot.speech_done:
                break
            event, slot.terminal_event = slot.terminal_event, None
            await self._send(event)
            slot.terminal_done = True
        for clip_id in [c for c, slot in lane.slots.items() if slot.terminal_done]:
            del lane.slots[clip_id]

    async def _send(self, event: events_pb2.AvatarEvent) -> None:
        try:
            await self._publish(event)
        except Exception:  # the publisher has already retried; keep the order moving
            _log.exception(
                "event.lost",
                clip_id=event.clip_id,
                kind=event.WhichOneof("event"),
                session_id=event.session_id,
            )
