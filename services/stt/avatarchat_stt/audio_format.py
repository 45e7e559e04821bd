"""Declared audio formats: validation of ``AudioFormat`` and the limits every request obeys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatarchat.errors import InvalidArgument
from avatarchat.v1 import stt_pb2

# Everything is decoded to this before recognition and VAD.
TARGET_RATE = 16000
MIN_PCM_RATE = 8000
MAX_PCM_RATE = 48000
MAX_PCM_CHANNELS = 8

PCM = "pcm_s16le"
# encoding enum value -> (our name, the FFmpeg demuxer that reads it)
_CONTAINERS: dict[int, tuple[str, str]] = {
    stt_pb2.AUDIO_ENCODING_WAV: ("wav", "wav"),
    stt_pb2.AUDIO_ENCODING_WEBM: ("webm", "matroska"),
    stt_pb2.AUDIO_ENCODING_OGG: ("ogg", "ogg"),
    stt_pb2.AUDIO_ENCODING_MP3: ("mp3", "mp3"),
}
_CHOICES = "PCM_S16LE, WAV, WEBM, OGG or MP3"


@dataclass(frozen=True)
class AudioSpec:
    """A validated format: ``name`` is pcm_s16le, wav, webm, ogg or mp3."""

    name: str
    sample_rate: int = 0  # raw PCM only
    channels: int = 1  # raw PCM only: interleaved, mixed down to mono
    demuxer: str = ""  # containers only

    @property
    def is_pcm(self) -> bool:
        return self.name == PCM

    @property
    def label(self) -> str:
        return "raw PCM s16le" if self.is_pcm else self.name.upper()


def spec_from_proto(fmt: stt_pb2.AudioFormat) -> AudioSpec:
    """Validates a declared format, with messages that say how to fix it."""
    encoding = fmt.encoding
    if encoding == stt_pb2.AUDIO_ENCODING_PCM_S16LE:
        rate = fmt.sample_rate_hz
        if rate == 0:
            raise InvalidArgument(
                "format.sample_rate_hz is required for PCM_S16LE audio "
                f"({MIN_PCM_RATE}-{MAX_PCM_RATE} Hz, e.g. 16000)"
            )
        if not MIN_PCM_RATE <= rate <= MAX_PCM_RATE:
            raise InvalidArgument(
                f"format.sample_rate_hz must be {MIN_PCM_RATE}-{MAX_PCM_RATE} Hz for PCM_S16LE "
                f"audio, got {rate}"
            )
        channels = fmt.channels or 1
        if channels > MAX_PCM_CHANNELS:
            raise InvalidArgument(
                f"format.channels must be 1-{MAX_PCM_CHANNELS} for PCM_S16LE audio "
                f"(interleaved; 0 means mono), got {channels}"
            )
        return AudioSpec(PCM, sample_rate=rate, channels=channels)
    if encoding in _CONTAINERS:
        name, demuxer = _CONTAINERS[encoding]
        return AudioSpec(name, demuxer=demuxer)
    if encoding == stt_pb2.AUDIO_ENCODING_UNSPECIFIED:
        raise InvalidArgument(f"format.encoding is required: one of {_CHOICES}")
    raise InvalidArgument(f"format.encoding {encoding} is not supported; use one of {_CHOICES}")


class AudioTooLong(InvalidArgument):
    """The audio passed the duration limit. A stream still gets the transcript of the audio up
    to the cut, then this error."""


@dataclass(frozen=True)
class Limits:
    """Size and duration caps. Exceeding one is INVALID_ARGUMENT: retrying cannot help."""

    max_bytes: int
    max_seconds: float

    @property
    def max_samples(self) -> int:
        """At ``TARGET_RATE``."""
        return int(self.max_seconds * TARGET_RATE)

    def check_bytes(self, received: int) -> None:
        if received > self.max_bytes:
            raise InvalidArgument(
                f"the audio is larger than the limit of {self.max_bytes} bytes "
                f"(AVATARCHAT_STT_MAX_AUDIO_BYTES); send a shorter recording"
            )

    def check_seconds(self, seconds: float) -> None:
        if seconds > self.max_seconds:
            raise AudioTooLong(
                f"the audio is longer than the limit of {self.max_seconds:g} s "
                f"(AVATARCHAT_STT_MAX_AUDIO_S); send a shorter recording or split it"
            )

    def check_samples(self, samples: int) -> None:
        if samples > self.max_samples:
            self.check_seconds(samples / TARGET_RATE)

    def within(self, samples_before: int, block: np.ndarray) -> np.ndarray:
        """The part of ``block`` that fits under the duration limit after ``samples_before``
        samples; raises ``AudioTooLong`` if none of it does."""
        room = self.max_samples - samples_before
        if room <= 0:
            self.check_samples(samples_before + max(1, block.size))
        return block[:room] if block.size > room else block
