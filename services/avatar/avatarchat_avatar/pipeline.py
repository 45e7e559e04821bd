"""The clip work pool: two stages, each with its own queue and workers, cancellation and a registry.

- *speech* (``speech_workers``): synthesises the speech, builds the timeline, stores the WAV and
  hands over *speech-ready*. The user hears the avatar from here on.
- *video* (``render_workers``): renders the video, stores the MP4 and hands over *clip-ready*.

The stages have their own workers so that a clip's speech never waits for the renders of the
clips before it: with 8 conversations at once, a new turn's first sentence is spoken while older
sentences are still being drawn (the renderer's pool also runs at a lower CPU priority, see
``backends.registry``). Any failure becomes *clip-failed* with a human reason and a status code
name. Events go through ``OrderedEvents``, which publishes each session's events in ``seq``
order.

Cancelled clips end with a *clip-failed* event whose code is ``CANCELLED`` (and no speech-ready
if that had not gone out yet), so every clip that is not speech-only ends with exactly one
clip-ready or clip-failed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from avatarchat import bus, errors, log
from avatarchat.inline_tags import parse_tags
from avatarchat.v1 import avatar_pb2, events_pb2
from avatarchat_avatar import publisher as events
from avatarchat_avatar.ordering import OrderedEvents
from avatarchat_avatar.publisher import ClipIdentity, Publisher
from avatarchat_avatar.speech import Speech, SpeechBackend
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
    speech: Speech | None = None  # between the stages
    task: asyncio.Task[None] | None = None  # the stage working on it
    accepted_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0  # time.monotonic() when it left the speech queue

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
        speech_workers: int,
        render_workers: int,
        queue_size: int,
        clip_timeout_s: float,
        registry_size: int,
    ) -> None:
        self.speech = speech
        self.video = video
        self._publisher = publisher
        self._speech_workers = speech_workers
        self._render_workers = render_workers
        self._queue_size = queue_size
        self._clip_timeout_s = clip_timeout_s
        self._registry_size = registry_size
        self._queue: deque[ClipRecord] = deque()  # waiting for speech
        self._has_work = asyncio.Event()
        self._render_queue: deque[ClipRecord] = deque()  # spoken, waiting for a renderer
        self._has_render_work = asyncio.Event()
        self._registry: OrderedDict[str, ClipRecord] = OrderedDict()
        self._order = OrderedEvents(publisher.publish)
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(
                self._work(self._queue, self._has_work, self._speak), name=f"speech-worker-{i}"
            )
            for i in range(self._speech_workers)
        ] + [
            asyncio.create_task(
                self._work(self._render_queue, self._has_render_work, self._render),
                name=f"render-worker-{i}",
            )
            for i in range(self._render_workers)
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
        if self.queued >= self._queue_size:
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
            self._stop(record)
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
        """Clips waiting for a worker of either stage."""
        return len(self._queue) + len(self._render_queue)

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
        for record in [*self._queue, *self._render_queue]:
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
        self._stop(record)
        self._fail(record, "The avatar service shut down before the clip was done.", "UNAVAILABLE")

    def _stop(self, record: ClipRecord) -> None:
        """Takes ``record`` out of its stage's queue, or cancels the stage working on it."""
        if record.task is not None and not record.task.done():
            record.task.cancel()
        elif record in self._queue:
            self._queue.remove(record)
        elif record in self._render_queue:
            self._render_queue.remove(record)

    async def _work(
        self,
        queue: deque[ClipRecord],
        has_work: asyncio.Event,
        stage: Callable[[ClipRecord], Awaitable[None]],
    ) -> None:
        while True:
            while not queue:
                has_work.clear()
                await has_work.wait()
            record = queue.popleft()
            if record.status == Status.CLIP_STATUS_QUEUED:
                record.status = Status.CLIP_STATUS_SYNTHESISING
                record.started_at = time.monotonic()
            # The task exists in the same step as the clip leaves its queue, so a CancelClips
            # finds one or the other.
            task = asyncio.create_task(self._run(record, stage), name=f"clip-{record.clip_id}")
            record.task = task
            await asyncio.wait({task})  # never raises, even if the clip was cancelled
            if record.task is task:  # not yet taken by the next stage
                record.task = None

    async def _run(
        self, record: ClipRecord, stage: Callable[[ClipRecord], Awaitable[None]]
    ) -> None:
        identity = record.identity
        with log.bound_contextvars(
            session_id=identity.session_id,
            turn_id=identity.turn_id,
            clip_id=record.clip_id,
            seq=identity.seq,
        ):
            try:
                # One deadline for the whole clip, both stages and the wait between them.
                remaining = self._clip_timeout_s - (time.monotonic() - record.started_at)
                async with asyncio.timeout(max(0.0, remaining)):
                    await stage(record)
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

    async def _speak(self, record: ClipRecord) -> None:
        """The speech stage; queues the clip for the video stage unless it is speech-only."""
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
        if not record.speech_only:
            record.speech = speech
            self._render_queue.append(record)
            self._has_render_work.set()

    async def _render(self, record: ClipRecord) -> None:
        """The video stage."""
        identity = record.identity
        started = record.accepted_at
        speech, timeline = record.speech, record.timeline
        assert speech is not None and timeline is not None
        record.speech = None  # the PCM is not kept once the MP4 is made
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
        record.speech = None
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
