"""Recognition of one stream in a thread of its own: 16 kHz blocks in, events out.

Without VAD the whole stream is one utterance: every block goes to the recogniser as it
arrives, partials come out on the way, and one ``final`` follows the end of the input. With VAD
(hands-free) the endpointer cuts the stream into utterances, each with ``speech_started``,
``partial``s, ``speech_ended`` and ``final``; only speech reaches the recogniser.

Audio with less than ``min_speech_ms`` of voiced frames gives an empty transcript without
asking the recogniser, so silence or a click never turns into words.
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
from avatarchat_stt.vad import Endpointer, Framer, SpeechEnded, SpeechStarted, VoiceDetector

_log = log.get("avatarchat_stt.pipeline")

# Audio is handed to the recogniser at most this much at a time, so an abort takes effect soon.
MAX_FEED_SAMPLES = TARGET_RATE // 2

Emit = Callable[[stt_pb2.TranscriptEvent | BaseException | None], None]
_END = None
_Payload: TypeAlias = stt_pb2.Transcript | stt_pb2.SpeechStarted | stt_pb2.SpeechEnded


@dataclass(frozen=True)
class StreamOptions:
    vad: bool
    silence_ms: int
    min_speech_ms: int
    vad_aggressiveness: int
    partial_interval_ms: int
    max_utterance_ms: int


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
        self._next_partial = 0
        self._last_partial = ""

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
        if interval and self._fed >= self._next_partial and self._inbox.empty():
            self._next_partial = self._fed + interval * TARGET_RATE // 1000
            text = self._recognizer.partial()
            if text and text != self._last_partial:
                self._last_partial = text
                self._send(partial=stt_pb2.Transcript(text=text, audio_ms=_ms(self._fed)))

    def _run_single(self) -> None:
        detector = VoiceDetector(self._options.vad_aggressiveness)
        framer = Framer()
        self._begin()
        for block in self._blocks():
            self._feed(block)
            for frame in framer.push(block):
                detector.is_speech(frame)
        if self._aborted.is_set():
            return
        if detector.voiced_ms >= self._options.min_speech_ms:
            text = self._finish(_ms(self._fed))
        else:
            self._recognizer.cancel()
            text = ""
        self._send(final=stt_pb2.Transcript(text=text, audio_ms=_ms(self._fed)))

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
        options = self._options
        endpointer = Endpointer(
            options.vad_aggressiveness, options.silence_ms, options.min_speech_ms
        )
        framer = Framer()
        max_samples = options.max_utterance_ms * TARGET_RATE // 1000
        started_ms = 0
        for block in self._blocks():
            for frame in framer.push(block):
                speaking = endpointer.speaking
                event = endpointer.push(frame)
                if speaking:
                    self._feed(frame)
                    if event is None and self._fed >= max_samples:
                        event = endpointer.end()  # nobody pauses for that long: cut here
                if isinstance(event, SpeechStarted):
                    started_ms = event.offset_ms
                    self._send(speech_started=stt_pb2.SpeechStarted(offset_ms=event.offset_ms))
                    self._begin(event.audio)
                elif isinstance(event, SpeechEnded):
                    self._end_utterance(event, started_ms)
        if endpointer.speaking and not self._aborted.is_set():
            rest = framer.rest()
            if rest.size:
                self._feed(rest)
            self._end_utterance(endpointer.end(), started_ms)

    def _end_utterance(self, ended: SpeechEnded, started_ms: int) -> None:
        self._send(speech_ended=stt_pb2.SpeechEnded(offset_ms=ended.offset_ms))
        audio_ms = max(0, ended.offset_ms - started_ms)
        text = self._finish(audio_ms)
        self._send(final=stt_pb2.Transcript(text=text, audio_ms=audio_ms))
        self._utterance += 1
