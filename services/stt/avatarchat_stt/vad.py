"""Voice activity detection (Silero VAD) and end-pointing on 32 ms frames of 16 kHz audio.

Silero VAD is a small neural network (the ONNX file faster-whisper ships,
``faster_whisper/assets/silero_vad_v6.onnx``, MIT) that gives a speech probability per 512-sample
frame. Unlike an energy or pitch detector it stays quiet on hiss, white noise, tone sweeps and
music, so neither an utterance nor Whisper's decoder ever starts on them. It runs on
onnxruntime with one thread, about 0.3 ms per frame (1 % of a core per stream). One ONNX
session is shared by every stream; each stream keeps its own recurrent state.

A frame is voiced when its probability reaches ``threshold``, and stays voiced while it is above
``threshold - 0.15`` (Silero's recommended hysteresis), so a word's soft tail is not cut.

The endpointer turns a frame stream into utterances:
- speech starts when at least ``min_speech_ms`` of the last ``2 × min_speech_ms`` is voiced,
  so clicks and short noises never start an utterance; the start is the first voiced frame of
  that window, and a short pre-roll before it is handed to the recogniser with it;
- a pause is reported once after ``pause_ms`` of unvoiced frames (the recogniser may start
  decoding then), and speech ends after ``silence_ms`` of them; the end is the last voiced frame;
- with a ``TurnModel`` (Smart Turn), ``silence_ms`` is where the utterance's last 8 s are
  judged: a complete thought ends there, an unfinished one waits for more speech until
  ``max_silence_ms``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from avatarchat_stt.audio_format import TARGET_RATE

FRAME_SAMPLES = 512
FRAME_MS = FRAME_SAMPLES * 1000 // TARGET_RATE  # 32
PREROLL_MS = 300
HYSTERESIS = 0.15
_CONTEXT = 64  # samples of the previous frame the model sees with each frame
_STATE_SHAPE = (1, 1, 128)
_session_lock = threading.Lock()


def model_path() -> Path:
    """The Silero VAD ONNX file inside the installed faster-whisper package."""
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


@functools.cache
def _session():  # type: ignore[no-untyped-def]
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(model_path()), providers=["CPUExecutionProvider"], sess_options=options
    )


def load() -> None:
    """Loads the shared ONNX session now (at service start) rather than on the first frame."""
    with _session_lock:
        _session()


class Framer:
    """Cuts blocks of any size into whole 32 ms frames."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        data = np.concatenate([self._pending, block]) if self._pending.size else block
        whole = data.size - data.size % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            yield data[start : start + FRAME_SAMPLES]
        self._pending = data[whole:].copy()

    def rest(self) -> np.ndarray:
        """The samples short of a whole frame, once the input has ended."""
        rest, self._pending = self._pending, np.zeros(0, dtype=np.int16)
        return rest


class VoiceDetector:
    """Voiced/unvoiced per 32 ms frame, with Silero's state carried from frame to frame; keeps a
    count of voiced frames for a speech gate. One per stream: not thread-safe."""

    def __init__(self, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the VAD threshold must be between 0 and 1, got {threshold}")
        with _session_lock:
            self._session = _session()
        self._threshold = threshold
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._voiced = False
        self.voiced_frames = 0

    def probability(self, frame: np.ndarray) -> float:
        """Silero's speech probability for one frame of ``FRAME_SAMPLES`` int16 samples."""
        if frame.size != FRAME_SAMPLES:
            raise ValueError(f"a VAD frame has {FRAME_SAMPLES} samples, got {frame.size}")
        samples = frame.astype(np.float32) / 32768.0
        model_input = np.concatenate([self._context, samples])[np.newaxis, :]
        output, self._h, self._c = self._session.run(
            None, {"input": model_input, "h": self._h, "c": self._c}
        )
        self._context = samples[-_CONTEXT:]
        return float(np.asarray(output).reshape(-1)[0])

    def is_speech(self, frame: np.ndarray) -> bool:
        p = self.probability(frame)
        floor = self._threshold - HYSTERESIS if self._voiced else self._threshold
        self._voiced = p >= floor
        self.voiced_frames += self._voiced
        return self._voiced

    @property
    def voiced_ms(self) -> int:
        return self.voiced_frames * FRAME_MS


@dataclass(frozen=True)
class SpeechStarted:
    offset_ms: int
    # The audio from shortly before the start up to and including the current frame.
    audio: np.ndarray


@dataclass(frozen=True)
class SpeechPaused:
    """``pause_ms`` of unvoiced frames after speech: the utterance may be over."""

    offset_ms: int  # the end of the last voiced frame


@dataclass(frozen=True)
class SpeechEnded:
    offset_ms: int


class TurnModel(Protocol):
    def complete(self, pcm: np.ndarray) -> bool:
        """Whether the utterance in ``pcm`` (16 kHz int16) sounds finished."""
        ...


# Smart Turn hears the last 8 s of an utterance, up to 200 ms after its last voiced frame (how
# Pipecat feeds it: its judgement depends on the length of that tail).
_TURN_FRAMES = 8 * TARGET_RATE // FRAME_SAMPLES
_TURN_TAIL_FRAMES = math.ceil(200 / FRAME_MS)


class Endpointer:
    """Feeds on frames; reports where utterances start, pause and end."""

    def __init__(
        self,
        threshold: float,
        silence_ms: int,
        min_speech_ms: int,
        pause_ms: int = 0,
        turn: TurnModel | None = None,
        max_silence_ms: int = 0,
    ) -> None:
        self._detector = VoiceDetector(threshold)
        self._turn = turn
        self._max_silence_frames = max(1, math.ceil(max(silence_ms, max_silence_ms) / FRAME_MS))
        self._heard: deque[np.ndarray] = deque(maxlen=_TURN_FRAMES)
        self._trigger = max(1, math.ceil(min_speech_ms / FRAME_MS))
        self._window = 2 * self._trigger
        self._silence_frames = max(1, math.ceil(silence_ms / FRAME_MS))
        # 0: no pause events
        self._pause_frames = math.ceil(pause_ms / FRAME_MS) if pause_ms else 0
        self._preroll = math.ceil(PREROLL_MS / FRAME_MS)
        self._recent: deque[tuple[int, np.ndarray, bool]] = deque(
            maxlen=self._window + self._preroll
        )
        self._index = 0
        self.speaking = False
        self._last_voiced_end = 0
        self._unvoiced_run = 0

    @property
    def in_pause(self) -> bool:
        """Speaking, and the pause event has been reported for the current silence."""
        return self.speaking and 0 < self._pause_frames <= self._unvoiced_run

    def push(self, frame: np.ndarray) -> SpeechStarted | SpeechPaused | SpeechEnded | None:
        index = self._index
        self._index += 1
        voiced = self._detector.is_speech(frame)
        if self.speaking:
            if self._turn is not None:
                self._heard.append(frame)
            if voiced:
                self._last_voiced_end = index + 1
                self._unvoiced_run = 0
                return None
            self._unvoiced_run += 1
            if self._unvoiced_run >= self._max_silence_frames:
                return self.end()
            if self._unvoiced_run == self._silence_frames and self._thought_complete():
                return self.end()
            if self._unvoiced_run == self._pause_frames:
                return SpeechPaused(offset_ms=self._last_voiced_end * FRAME_MS)
            return None
        self._recent.append((index, frame, voiced))
        window = list(self._recent)[-self._window :]
        if sum(v for _, _, v in window) < self._trigger:
            return None
        onset = next(i for i, _, v in window if v)
        audio = np.concatenate([f for i, f, _ in self._recent if i >= onset - self._preroll])
        self.speaking = True
        self._last_voiced_end = index + 1
        self._unvoiced_run = 0
        self._recent.clear()
        if self._turn is not None:
            self._heard.clear()
            self._heard.extend(
                audio[i : i + FRAME_SAMPLES] for i in range(0, audio.size, FRAME_SAMPLES)
            )
        return SpeechStarted(offset_ms=onset * FRAME_MS, audio=audio)

    def _thought_complete(self) -> bool:
        """At ``silence_ms``: without a turn model, always; with one, if it says so."""
        if self._turn is None:
            return True
        heard = list(self._heard)
        extra = self._unvoiced_run - _TURN_TAIL_FRAMES
        if extra > 0:
            heard = heard[:-extra]
        return self._turn.complete(np.concatenate(heard))

    def end(self) -> SpeechEnded:
        """Ends the current utterance now (silence, the end of input, or a length cap)."""
        self.speaking = False
        self._unvoiced_run = 0
        return SpeechEnded(offset_ms=self._last_voiced_end * FRAME_MS)

    @property
    def voiced_ms(self) -> int:
        return self._detector.voiced_ms

    @property
    def position_ms(self) -> int:
        return self._index * FRAME_MS
