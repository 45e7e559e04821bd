"""Synthesised speech and the narrow interface every text-to-speech backend implements.

A backend turns one sentence into :class:`Speech`: mono 16-bit PCM plus the timing of what is
said, either per phoneme (Piper) or per character (ElevenLabs). The lip-sync and gesture
planners only ever look at these timings, never at the backend.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class PhonemeSpan:
    """One phoneme (espeak IPA, as Piper emits it: one symbol per span) and when it sounds."""

    phoneme: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class CharSpan:
    """One character of the spoken text and when it sounds (ElevenLabs character alignment)."""

    char: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class Speech:
    """One synthesised utterance: audio plus its alignment."""

    pcm: np.ndarray
    """int16 mono samples."""
    sample_rate: int
    text: str
    """The spoken text (inline tags removed)."""
    phonemes: tuple[PhonemeSpan, ...] = ()
    chars: tuple[CharSpan, ...] = ()

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError(
                f"Speech.pcm must be 1-D int16, got {self.pcm.dtype} with shape {self.pcm.shape}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"Speech.sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_ms(self) -> int:
        """Length of the audio in whole milliseconds (rounded)."""
        return round(len(self.pcm) * 1000 / self.sample_rate)

    def wav_bytes(self) -> bytes:
        """The audio as a complete RIFF/WAVE file (PCM 16-bit mono)."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
            wav.writeframes(self.pcm.astype("<i2", copy=False).tobytes())
        return buffer.getvalue()


@runtime_checkable
class SpeechBackend(Protocol):
    """Text to :class:`Speech`. ``load`` is called once before the first ``synthesize``."""

    name: str

    def voices(self) -> tuple[str, ...]:
        """Voice ids this backend accepts; the first is the default."""
        ...

    async def load(self) -> None:
        """Loads models or checks credentials; heavy work runs off the event loop."""
        ...

    async def synthesize(self, text: str, voice: str | None = None) -> Speech:
        """Speaks ``text``. Raises ``avatarchat.errors.InvalidArgument`` for an unknown voice."""
        ...
