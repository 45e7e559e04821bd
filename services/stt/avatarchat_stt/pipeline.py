"""Recognition of one stream in a thread of its own: 16 kHz blocks in, events out.

Without VAD the whole stream is one utterance: every block goes to the recogniser as it
arrives, partials come out on the way, and one ``final`` follows the end of the input. With VAD
(hands-free) the endpointer cuts the stream into utterances, each with ``speech_started``,
``partial``s, ``speech_ended`` and ``final``; only speech reaches the recogniser.

Audio with less than ``min_speech_ms`` of voiced frames (Silero VAD) gives an empty transcript
without asking the recogniser, so silence, noise or music never turns into words.

Early decoding: after ``early_decode_ms`` of unvoiced audio that follows speech, the recogniser
is told to ``prefinish`` (Whisper decodes the utterance so far), and the unvoiced frames that
follow are held back. If the utterance ends there (the input ends, or the silence reaches
``silence_ms``), the held frames are dropped and ``finish`` returns the early result. If speech
resumes, the held frames are fed, which discards the early result.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeAlias

import numpy as np

from avatarchat import log
from avatarchat.v1 import stt_pb2
from avatarchat_stt.audio_format import TARGET_RATE
from avatarchat_stt.backends.base import Recognizer
from avatarchat_stt.vad import (
    Endpointer,
    Framer,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    TurnModel,
)

_log = log.get("avatarchat_stt.pipeline")

# Audio is handed to the recogniser at most this much at a time, so an abort takes effect soon.
MAX_FEED_SAMPLES = TARGET_RATE // 2

# An early decode is skipped when more audio than this is waiting for the recogniser.
EARLY_DECODE_MAX_BACKLOG_MS = 1000
# Without VAD the stream is one utterance: a silence that never ends it.
_NEVER_MS = 1 << 40

Emit = Callable[[stt_pb2.TranscriptEvent | BaseException | None], None]
_END = None
_Payload: TypeAlias = stt_pb2.Transcript | stt_pb2.SpeechStarted | stt_pb2.SpeechEnded


@dataclass(frozen=True)
class StreamOptions:
    vad: bool
    silence_ms: int
    min_speech_ms: int
    vad_threshold: float
    partial_interval_ms: int
    early_decode_ms: int
    max_utterance_ms: int
    turn: TurnModel | None = None  # hands-free only: Smart Turn
    turn_max_silence_ms: int = 0


def _ms(samples: int) -> int:
    return samples * 1000 // TARGET_RATE


async def transcribe(recognizer: Recognizer, pcm: np.ndarray, options: StreamOptions) -> str:
    """A complete recording as one utterance (``Transcribe``), through a ``StreamPipeline``.

    Cancelling the caller aborts the pipeline: it stops feeding the recogniser within a block,
    and gives the recogniser back as soon as the block in hand is done.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Queue[stt_pb2.TranscriptEvent | BaseException | None] = asyncio.Queue()

    def emit(item: stt_pb2.TranscriptEvent | BaseException | None) -> None:
        loop.call_soon_threadsafe(outcome.put_nowait, item)

    pipeline = StreamPipeline(recognizer, replace(options, vad=False), emit)
    pipeline.start()
    try:
        for start in range(0, pcm.size, MAX_FEED_SAMPLES):
            pipeline.put(pcm[start : start + MAX_FEED_SAMPLES])
        pipeline.finish()
        while (item := await outcome.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            if item.HasField("final"):
                return item.final.text
        raise RuntimeError("the recogniser ended without a transcript")
    finally:
        pipeline.abort()


class StreamPipeline:
    """Owns ``recognizer`` from ``start()`` on and closes it when its thread ends.

    ``emit`` is called from the worker thread with each event, then ``None`` at a clean end or
    the exception that stopped it. Nothing is emitted after ``abort()``.
    """

    def __init__(self, recognizer: Recognizer, options: StreamOptions, emit: Emit) -> None:
        self._recognizer = recognizer
        self._options = options
        self._emit = emit
        self._inbox: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._backlog = 0  # samples put and not yet taken
        self._backlog_lock = threading.Lock()
        self._aborted = threading.Event()
        context = contextvars.copy_context()  # keeps session_id/turn_id on the thread's logs
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="stt-recognise", daemon=True
        )
        self._utterance = 0
        self._fed = 0  # samples given to the recogniser in the current utterance
        self._received = 0  # samples taken from the inbox
        self._next_partial = 0
        self._last_partial = ""
        self._held: list[np.ndarray] = []  # unvoiced frames held back after an early decode
        self._voiced_ms: Callable[[], int] = lambda: options.min_speech_ms  # the speech gate

    def start(self) -> None:
        self._thread.start()

    def put(self, block: np.ndarray) -> None:
        """Thread-safe: the next 16 kHz mono block."""
        with self._backlog_lock:
            self._backlog += block.size
        self._inbox.put(block)

    @property
    def backlog_ms(self) -> int:
        """Audio waiting for the recogniser."""
        return _ms(self._backlog)

    def finish(self) -> None:
        """Thread-safe: the input has ended; finish the utterance and stop."""
        self._inbox.put(_END)

    def abort(self) -> None:
        """Thread-safe: stop as soon as possible, emitting nothing more."""
        self._aborted.set()
        self._inbox.put(_END)
        self._recognizer.interrupt()

    def _run(self) -> None:
        outcome: BaseException | None = None
        try:
            if self._options.vad:
                self._run_hands_free()
            else:
                self._run_single()
        except BaseException as exc:
            outcome = exc
        finally:
            try:
                self._recognizer.close()
            except Exception:
                _log.exception("stt.recognizer_close_failed")
        if not self._aborted.is_set():
            self._emit(outcome)

    def _blocks(self) -> Iterator[np.ndarray]:
        while not self._aborted.is_set():
            block = self._inbox.get()
            if block is _END or self._aborted.is_set():
                return
            with self._backlog_lock:
                self._backlog -= block.size
            self._received += block.size
            yield block

    def _send(self, **event: _Payload) -> None:
        if not self._aborted.is_set():
            self._emit(stt_pb2.TranscriptEvent(utterance=self._utterance, **event))

    def _begin(self, audio: np.ndarray | None = None) -> None:
        self._recognizer.start()
        self._fed = 0
        self._next_partial = self._options.partial_interval_ms * TARGET_RATE // 1000
        self._last_partial = ""
        if audio is not None and audio.size:
            self._feed(audio)

    def _feed(self, block: np.ndarray) -> None:
        for start in range(0, block.size, MAX_FEED_SAMPLES):
            if self._aborted.is_set():
                return
            self._recognizer.feed(block[start : start + MAX_FEED_SAMPLES])
        self._fed += block.size
        interval = self._options.partial_interval_ms
        # A partial is a round trip to the recogniser: skip it while more audio is waiting, as
        # it would be stale at once and would only delay the final.
        # Nor is one asked for before the VAD has heard speech: Whisper makes words of silence.
        if (
            interval
            and self._fed >= self._next_partial
            and self._inbox.empty()
            and self._voiced_ms() >= self._options.min_speech_ms
        ):
            self._next_partial = self._fed + interval * TARGET_RATE // 1000
            text = self._recognizer.partial()
            if text and text != self._last_partial:
                self._last_partial = text
                self._send(partial=stt_pb2.Transcript(text=text, audio_ms=_ms(self._fed)))

    def _endpointer(self, silence_ms: int) -> Endpointer:
        options = self._options
        pause_ms = options.early_decode_ms if self._recognizer.decodes_early else 0
        turn = options.turn if options.vad else None
        return Endpointer(
            options.vad_threshold,
            silence_ms,
            options.min_speech_ms,
            pause_ms,
            turn=turn,
            max_silence_ms=options.turn_max_silence_ms,
        )

    def _frames(self, framer: Framer) -> Iterator[np.ndarray]:
        for block in self._blocks():
            yield from framer.push(block)

    def _track(
        self, endpointer: Endpointer, frame: np.ndarray, *, feed_outside_speech: bool
    ) -> SpeechStarted | SpeechEnded | None:
        """Runs the VAD on ``frame`` and feeds the frame to the recogniser while an utterance is
        open (or always, with ``feed_outside_speech``), holding back the frames of a pause that
        followed an early decode."""
        speaking = endpointer.speaking
        event = endpointer.push(frame)
        if isinstance(event, SpeechPaused):
            self._held.append(frame)
            # Far behind the input (a recording sent at once), the early result would be stale
            # at once; a live stream is at most a partial's decode behind.
            if self.backlog_ms <= EARLY_DECODE_MAX_BACKLOG_MS:
                self._recognizer.prefinish()
            return None
        if speaking and endpointer.in_pause:
            self._held.append(frame)
            return None
        if isinstance(event, SpeechEnded):
            self._held = []  # the silence after an early decode: the final needs none of it
            return event
        if self._held:  # speech resumed: the early decode is stale
            held, self._held = self._held, []
            self._feed(np.concatenate(held))
        if speaking or feed_outside_speech:
            self._feed(frame)
        return event

    def _feed_rest(self, framer: Framer) -> None:
        """The input has ended: the last partial frame goes in unless a pause is being held."""
        rest = framer.rest()
        if rest.size and not self._held:
            self._feed(rest)
        self._held = []

    def _run_single(self) -> None:
        endpointer = self._endpointer(_NEVER_MS)
        self._voiced_ms = lambda: endpointer.voiced_ms
        framer = Framer()
        self._begin()
        for frame in self._frames(framer):
            self._track(endpointer, frame, feed_outside_speech=True)
        if self._aborted.is_set():
            return
        self._feed_rest(framer)
        audio_ms = _ms(self._received)
        if endpointer.voiced_ms >= self._options.min_speech_ms:
            text = self._finish(audio_ms)
        else:
            self._recognizer.cancel()
            text = ""
        self._send(final=stt_pb2.Transcript(text=text, audio_ms=audio_ms))

    def _finish(self, audio_ms: int) -> str:
        started = time.perf_counter()
        text = self._recognizer.finish()
        _log.info(
            "stt.final",
            utterance=self._utterance,
            audio_ms=audio_ms,
            words=len(text.split()),  # not the words themselves: transcripts stay out of logs
            finish_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return text

    def _run_hands_free(self) -> None:
        endpointer = self._endpointer(self._options.silence_ms)
        framer = Framer()
        max_samples = self._options.max_utterance_ms * TARGET_RATE // 1000
        started_ms = 0
        for frame in self._frames(framer):
            event = self._track(endpointer, frame, feed_outside_speech=False)
            if event is None and endpointer.speaking and self._fed >= max_samples:
                self._held = []
                event = endpointer.end()  # nobody pauses for that long: cut here
            if isinstance(event, SpeechStarted):
                started_ms = event.offset_ms
                self._send(speech_started=stt_pb2.SpeechStarted(offset_ms=event.offset_ms))
                self._begin(event.audio)
            elif isinstance(event, SpeechEnded):
                self._end_utterance(event, started_ms)
        if endpointer.speaking and not self._aborted.is_set():
            self._feed_rest(framer)
            self._end_utterance(endpointer.end(), started_ms)

    def _end_utterance(self, ended: SpeechEnded, started_ms: int) -> None:
        self._send(speech_ended=stt_pb2.SpeechEnded(offset_ms=ended.offset_ms))
        audio_ms = max(0, ended.offset_ms - started_ms)
        text = self._finish(audio_ms)
        self._send(final=stt_pb2.Transcript(text=text, audio_ms=audio_ms))
        self._utterance += 1
