"""The clip work pool: a bounded queue, a fixed number of workers, cancellation and a registry.

For each clip a worker synthesises the speech, builds the timeline, stores the WAV and hands
over *speech-ready*; then renders the video, stores the MP4 and hands over *clip-ready*. Any
failure becomes *clip-failed* with a human reason and a status code name. Events go through
``OrderedEvents``, which publishes each session's events in ``seq`` order.

Cancelled clips end with a *clip-failed* event whose code is ``CANCELLED`` (and no speech-ready
if that had not gone out yet), so every clip that is not speech-only ends with exactly one
clip-ready or clip-failed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from avatarchat import bus, errors, log
from avatarchat.inline_tags import parse_tags
from avatarchat.v1 import avatar_pb2, events_pb2
from avatarchat_avatar import publisher as events
from avatarchat_avatar.ordering import OrderedEvents
from avatarchat_avatar.publisher import ClipIdentity, Publisher
from avatarchat_avatar.speech import SpeechBackend
from avatarchat_avatar.timeline.build import build_timeline
from avatarchat_avatar.video import VideoBackend

_log = log.get("avatarchat.avatar.pipeline")

Status = avatar_pb2.ClipStatus
LIVE = (Status.CLIP_STATUS_QUEUED, Status.CLIP_STATUS_SYNTHESISING, Status.CLIP_STATUS_RENDERING)


@dataclass
class ClipRecord:
    """One clip's request and progress, as ``GetClip`` reports it."""

    identity: ClipIdentity
    text: str
    voice: str | None
    speech_only: bool
    status: int = Status.CLIP_STATUS_QUEUED
    duration_ms: int = 0
    error: str = ""
    timeline: events_pb2.Timeline | None = None
    task: asyncio.Task[None] | None = None
    accepted_at: float = field(default_factory=time.perf_counter)

    @property
    def clip_id(self) -> str:
        return self.identity.clip_id

    def to_proto(self) -> avatar_pb2.Clip:
        clip = avatar_pb2.Clip(
            clip_id=self.clip_id,
            session_id=self.identity.session_id,
            turn_id=self.identity.turn_id,
            seq=self.identity.seq,
            status=self.status,  # type: ignore[arg-type]
            duration_ms=self.duration_ms,
            error=self.error,
        )
        if self.timeline is not None:
            clip.timeline.CopyFrom(self.timeline)
        return clip


class ClipPipeline:
    def __init__(
        self,
        *,
        speech: SpeechBackend,
        video: VideoBackend,
        publisher: Publisher,
        workers: int,
        queue_size: int,
        clip_timeout_s: float,
        registry_size: int,
    ) -> None:
        self.speech = speech
        self.video = video
        self._publisher = publisher
        self._workers_count = workers
        self._queue_size = queue_size
        self._clip_timeout_s = clip_timeout_s
        self._registry_size = registry_size
        self._queue: deque[ClipRecord] = deque()
        self._has_work = asyncio.Event()
        self._registry: OrderedDict[str, ClipRecord] = OrderedDict()
        self._order = OrderedEvents(publisher.publish)
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"clip-worker-{i}")
            for i in range(self._workers_count)
        ]

    # -- requests ---------------------------------------------------------------------------

    def submit(
        self,
        *,
        session_id: str,
        turn_id: str,
        seq: int,
        text: str,
        voice: str | None,
        speech_only: bool,
    ) -> ClipRecord:
        """Queues a clip (arguments already validated) and returns its record."""
        if self._closing:
            raise errors.Unavailable("the avatar service is shutting down")
        if len(self._queue) >= self._queue_size:
            raise errors.ResourceExhausted(
                f"the avatar work queue is full ({self._queue_size} clips waiting); retry shortly",
                retry_after_s=1.0,
            )
        if self._order.has_live_seq(session_id, seq):
            raise errors.InvalidArgument(
                f"seq {seq} of session {session_id} is already in progress; seq must increase"
            )
        identity = ClipIdentity(uuid.uuid4().hex, session_id, turn_id, seq)
        record = ClipRecord(identity=identity, text=text, voice=voice, speech_only=speech_only)
        self._remember(record)
        self._order.register(session_id, record.clip_id, seq, speech_only=speech_only)
        self._queue.append(record)
        self._has_work.set()
        return record

    def get(self, clip_id: str) -> ClipRecord:
        record = self._registry.get(clip_id)
        if record is None:
            raise errors.NotFound(f"no clip {clip_id!r} (unknown, or too old to be remembered)")
        return record

    def cancel(self, session_id: str, turn_id: str | None = None) -> int:
        """Cancels the session's queued and running clips (of one turn if given)."""
        cancelled = 0
        for record in list(self._registry.values()):
            identity = record.identity
            if identity.session_id != session_id or record.status not in LIVE:
                continue
            if turn_id and identity.turn_id != turn_id:
                continue
            if record.status == Status.CLIP_STATUS_QUEUED:
                self._queue.remove(record)
            elif record.task is not None:
                record.task.cancel()
            record.status = Status.CLIP_STATUS_CANCELLED
            record.error = "cancelled"
            event = events.clip_failed(
                identity, reason="The clip was cancelled (CancelClips).", code="CANCELLED"
            )
            self._order.finish(session_id, record.clip_id, event, drop_speech=True)
            cancelled += 1
        if cancelled:
            _log.info("clips.cancelled", session_id=session_id, turn_id=turn_id, count=cancelled)
        return cancelled

    @property
    def queued(self) -> int:
        return len(self._queue)

    def in_progress(self) -> int:
        """Clips queued or being made."""
        return sum(1 for record in self._registry.values() if record.status in LIVE)

    async def close(self, grace_s: float) -> None:
        """Stops taking work: queued clips fail at once, running ones get ``grace_s`` to finish.

        Every clip still unfinished then ends with a clip-failed event (UNAVAILABLE), published
        before the NATS connection drains.
        """
        self._closing = True
        deadline = time.monotonic() + grace_s
        for record in list(self._queue):
            self._fail_shutdown(record)
        running = {r.task for r in self._registry.values() if r.task and not r.task.done()}
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for record in list(self._registry.values()):
            if record.status in LIVE:
                self._fail_shutdown(record)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._order.close(timeout_s=max(1.0, deadline - time.monotonic()))

    # -- work -------------------------------------------------------------------------------

    def _fail_shutdown(self, record: ClipRecord) -> None:
        if record.status == Status.CLIP_STATUS_QUEUED:
            self._queue.remove(record)
        elif record.task is not None:
            record.task.cancel()
        self._fail(record, "The avatar service shut down before the clip was done.", "UNAVAILABLE")

    async def _next(self) -> ClipRecord:
        while not self._queue:
            self._has_work.clear()
            await self._has_work.wait()
        return self._queue.popleft()

    async def _work(self) -> None:
        while True:
            record = await self._next()
            # Leaves QUEUED in the same step as it leaves the queue, so a CancelClips arriving
            # before the task's first step cancels the task instead of searching the queue.
            record.status = Status.CLIP_STATUS_SYNTHESISING
            record.task = asyncio.create_task(self._run(record), name=f"clip-{record.clip_id}")
            await asyncio.wait({record.task})  # never raises, even if the clip was cancelled

    async def _run(self, record: ClipRecord) -> None:
        identity = record.identity
        with log.bound_contextvars(
            session_id=identity.session_id,
            turn_id=identity.turn_id,
            clip_id=record.clip_id,
            seq=identity.seq,
        ):
            try:
                async with asyncio.timeout(self._clip_timeout_s):
                    await self._make(record)
            except asyncio.CancelledError:
                _log.info("clip.cancelled")
                raise
            except TimeoutError:
                self._fail(
                    record,
                    f"The clip took longer than {self._clip_timeout_s:g} s and was abandoned.",
                    "DEADLINE_EXCEEDED",
                )
            except errors.ServiceError as exc:
                self._fail(record, exc.message, exc.code.name)
            except Exception:
                _log.exception("clip.internal_error")
                self._fail(
                    record, "The avatar service hit an internal error; see its log.", "INTERNAL"
                )

    async def _make(self, record: ClipRecord) -> None:
        identity = record.identity
        started = record.accepted_at
        spoken, tags = parse_tags(record.text)
        speech = await self.speech.synthesize(spoken, record.voice)
        timeline = await asyncio.to_thread(build_timeline, speech, tags)
        wav = await asyncio.to_thread(speech.wav_bytes)
        await self._publisher.put(bus.clip_object(record.clip_id, "wav"), wav)
        record.duration_ms = speech.duration_ms
        record.timeline = timeline
        record.status = (
            Status.CLIP_STATUS_READY if record.speech_only else Status.CLIP_STATUS_RENDERING
        )
        self._order.speech(
            identity.session_id, record.clip_id, events.speech_ready(identity, spoken, timeline)
        )
        _log.info(
            "clip.speech_ready",
            duration_ms=speech.duration_ms,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )
        if record.speech_only:
            return
        video = await self.video.render(speech, timeline)
        await self._publisher.put(bus.clip_object(record.clip_id, "mp4"), video.mp4)
        record.status = Status.CLIP_STATUS_READY
        event = events.clip_ready(
            identity,
            duration_ms=video.duration_ms,
            fps=video.fps,
            width=video.width,
            height=video.height,
        )
        self._order.finish(identity.session_id, record.clip_id, event)
        _log.info(
            "clip.ready",
            backend=self.video.name,
            video_ms=video.duration_ms,
            bytes=len(video.mp4),
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )

    def _fail(self, record: ClipRecord, reason: str, code: str) -> None:
        record.status = Status.CLIP_STATUS_FAILED
        record.error = reason
        _log.warning("clip.failed", reason=reason, code=code)
        event = events.clip_failed(record.identity, reason=reason, code=code)
        self._order.finish(record.identity.session_id, record.clip_id, event)

    def _remember(self, record: ClipRecord) -> None:
        self._registry[record.clip_id] = record
        excess = len(self._registry) - self._registry_size
        if excess <= 0:
            return
        for clip_id in [c for c, r in self._registry.items() if r.status not in LIVE][:excess]:
            del self._registry[clip_id]
