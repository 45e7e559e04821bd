"""Fails the clips of an avatar process that died, instead of waiting for them forever.

``GenerateClip`` returns at once and the work goes on in the avatar process, so a killed pod
would leave its clients waiting for ``clip.speech``/``clip.ready`` that never come. Every
avatar process publishes a ``WorkerHeartbeat`` on ``avatar.workers.<worker_id>`` and names its
worker in each ``GenerateClipResponse``. This watch:

- remembers each clip this edge requested, with its worker (``track``);
- forgets it once the clip's last event goes by on ``avatar.events.*`` (a plain NATS
  subscription sees what the JetStream stream stores);
- when a worker has not been heard for ``STALE_INTERVALS`` heartbeat intervals while NATS was
  up, publishes ``clip_failed`` for each of its unfinished clips into the events stream, where
  it reaches the client like any other event, in order, across resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from avatarchat import bus, log
from avatarchat.v1 import events_pb2

from .nats_link import NatsLink

_log = log.get("avatarchat.edge.workers")

STALE_INTERVALS = 3.0
DEFAULT_INTERVAL_S = 0.5
SWEEP_S = 0.2


@dataclass
class _Clip:
    worker_id: str
    session_id: str
    turn_id: str
    seq: int
    speech_only: bool
    since: float


class WorkerWatch:
    def __init__(self, link: NatsLink, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._clock = clock
        self._clips: dict[str, _Clip] = {}
        self._heard: dict[str, tuple[float, float]] = {}  # worker -> (last heard, interval s)
        self._up_since: float | None = None  # NATS connected continuously since
        self.lost_total = 0

    # -- what the clip scheduler tells us --------------------------------------------------

    def track(
        self,
        clip_id: str,
        worker_id: str,
        *,
        session_id: str,
        turn_id: str,
        seq: int,
        speech_only: bool,
    ) -> None:
        if worker_id:  # an avatar without heartbeats cannot be watched
            self._clips[clip_id] = _Clip(
                worker_id, session_id, turn_id, seq, speech_only, self._clock()
            )

    @property
    def tracked(self) -> int:
        return len(self._clips)

    # -- what NATS tells us ----------------------------------------------------------------

    def heard(self, beat: events_pb2.WorkerHeartbeat) -> None:
        interval = beat.interval_ms / 1000 if beat.interval_ms else DEFAULT_INTERVAL_S
        self._heard[beat.worker_id] = (self._clock(), interval)

    def event(self, event: events_pb2.AvatarEvent) -> None:
        clip = self._clips.get(event.clip_id)
        kind = event.WhichOneof("event")
        if clip is not None and (
            kind in ("clip_ready", "clip_failed") or (kind == "speech_ready" and clip.speech_only)
        ):
            del self._clips[event.clip_id]

    def connection(self, connected: bool) -> None:
        if not connected:
            self._up_since = None
        elif self._up_since is None:
            self._up_since = self._clock()

    def lost(self) -> list[tuple[str, _Clip]]:
        """Clips whose worker went quiet; they are forgotten as they are returned."""
        if self._up_since is None:
            return []  # silence while NATS is down proves nothing
        now = self._clock()
        gone = []
        for clip_id, clip in self._clips.items():
            last, interval = self._heard.get(clip.worker_id, (clip.since, DEFAULT_INTERVAL_S))
            quiet_since = max(last, clip.since, self._up_since)
            if now - quiet_since > STALE_INTERVALS * interval:
                gone.append((clip_id, clip))
        for clip_id, _ in gone:
            del self._clips[clip_id]
        return gone

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Subscribes, then sweeps every ``SWEEP_S`` until cancelled."""
        nc = await self._link.client()
        await nc.subscribe(f"{bus.WORKERS_SUBJECT_PREFIX}.*", cb=self._on_heartbeat)
        await nc.subscribe(f"{bus.EVENTS_SUBJECT_PREFIX}.*", cb=self._on_event)
        while True:
            self.connection(self._link.connected)
            for clip_id, clip in self.lost():
                await self._fail(clip_id, clip)
            await asyncio.sleep(SWEEP_S)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            self.heard(events_pb2.WorkerHeartbeat.FromString(msg.data))
        except DecodeError:
            _log.warning("workers.bad_heartbeat", subject=msg.subject)

    async def _on_event(self, msg: Msg) -> None:
        try:
            self.event(events_pb2.AvatarEvent.FromString(msg.data))
        except DecodeError:
            pass  # the event forwarder reports undecodable events

    async def _fail(self, clip_id: str, clip: _Clip) -> None:
        self.lost_total += 1
        _log.warning("clip.worker_lost", clip_id=clip_id, worker_id=clip.worker_id)
        event = events_pb2.AvatarEvent(
            clip_id=clip_id,
            session_id=clip.session_id,
            turn_id=clip.turn_id,
            seq=clip.seq,
            emitted_unix_ms=int(time.time() * 1000),
            clip_failed=events_pb2.ClipFailed(
                reason="the avatar process making this clip stopped; the next clips go to "
                "another one",
                code="UNAVAILABLE",
            ),
        )
        try:
            js = await self._link.jetstream()
            await js.publish(
                bus.events_subject(clip.session_id),
                event.SerializeToString(),
                stream=bus.EVENTS_STREAM,
                headers={"Nats-Msg-Id": f"{clip_id}.clip_failed"},
            )
        except Exception as exc:
            _log.warning("clip.worker_lost_not_published", clip_id=clip_id, error=str(exc))
