"""Voice activity detection (WebRTC VAD) and end-pointing on 30 ms frames of 16 kHz audio.

The endpointer turns a frame stream into utterances:
- speech starts when at least ``min_speech_ms`` of the last ``2 × min_speech_ms`` is voiced,
  so clicks and short noises never start an utterance; the start is the first voiced frame of
  that window, and a short pre-roll before it is handed to the recogniser with it;
- speech ends after ``silence_ms`` of unvoiced frames; the end is the last voiced frame.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import webrtcvad

from avatarchat_stt.audio_format import TARGET_RATE

FRAME_MS = 30
FRAME_SAMPLES = TARGET_RATE * FRAME_MS // 1000
PREROLL_MS = 300


class Framer:
    """Cuts blocks of any size into whole 30 ms frames."""

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
    """Voiced/unvoiced per 30 ms frame; keeps a count of voiced frames for a speech gate."""

    def __init__(self, aggressiveness: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self.voiced_frames = 0

    def is_speech(self, frame: np.ndarray) -> bool:
        voiced = bool(self._vad.is_speech(frame.tobytes(), TARGET_RATE))
        self.voiced_frames += voiced
        return voiced

    @property
    def voiced_ms(self) -> int:
        return self.voiced_frames * FRAME_MS


@dataclass(frozen=True)
class SpeechStarted:
    offset_ms: int
    # The audio from shortly before the start up to and including the current frame.
    audio: np.ndarray


@dataclass(frozen=True)
class SpeechEnded:
    offset_ms: int


class Endpointer:
    """Feeds on frames; reports where utterances start and end."""

    def __init__(self, aggressiveness: int, silence_ms: int, min_speech_ms: int) -> None:
        self._detector = VoiceDetector(aggressiveness)
        self._trigger = max(1, math.ceil(min_speech_ms / FRAME_MS))
        self._window = 2 * self._trigger
        self._silence_frames = max(1, math.ceil(silence_ms / FRAME_MS))
        self._preroll = math.ceil(PREROLL_MS / FRAME_MS)
        self._recent: deque[tuple[int, np.ndarray, bool]] = deque(
            maxlen=self._window + self._preroll
        )
        self._index = 0
        self.speaking = False
        self._last_voiced_end = 0
        self._unvoiced_run = 0

    def push(self, frame: np.ndarray) -> SpeechStarted | SpeechEnded | None:
        index = self._index
        self._index += 1
        voiced = self._detector.is_speech(frame)
        if self.speaking:
            if voiced:
                self._last_voiced_end = index + 1
                self._unvoiced_run = 0
                return None
            self._unvoiced_run += 1
            if self._unvoiced_run >= self._silence_frames:
                return self.end()
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
        return SpeechStarted(offset_ms=onset * FRAME_MS, audio=audio)

    def end(self) -> SpeechEnded:
        """Ends the current utterance now (silence, the end of input, or a length cap)."""
        self.speaking = False
        self._unvoiced_run = 0
        return SpeechEnded(offset_ms=self._last_voiced_end * FRAME_MS)

    @property
    def position_ms(self) -> int:
        return self._index * FRAME_MS
