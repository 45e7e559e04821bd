"""Measures lip-sync: how far the mouth-openness track is shifted against the audio's energy.

Both tracks are sampled at 100 Hz and smoothed with the same 30 ms window; the lag of the peak
of their normalised cross-correlation is the offset. A positive lag means the mouth moves late.
The test suite and the bench both use this, on :data:`REFERENCE_SENTENCES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatarchat_avatar.timeline.lipsync import VisemeSpan, openness

RATE_HZ = 100
WINDOW_MS = 30
MAX_LAG_MS = 200

REFERENCE_SENTENCES: tuple[str, ...] = (
    "Hello there! I am your virtual assistant.",
    "How can I help you today?",
    "The weather is lovely, so maybe we should go for a walk in the park.",
    "Please remember to bring your passport and a bottle of water.",
    "My favourite colours are blue, green and purple.",
    "Wow, that is really amazing news!",
    "Could you tell me more about the project you are working on?",
    "Yes, absolutely, I would be happy to help with that.",
    "No, I am afraid the museum is closed on Mondays.",
    "First, open the box. Second, remove the cable. Third, plug it in.",
    "Bob bought a big blue balloon for the baby.",
    "She sells sea shells by the sea shore every summer.",
)
"""Sentences covering open vowels, closures, fricatives, questions and lists."""


def openness_track(track: Sequence[VisemeSpan], duration_ms: float) -> np.ndarray:
    """Jaw opening sampled every 10 ms over ``[0, duration_ms)``."""
    times = np.arange(0.0, duration_ms, 1000 / RATE_HZ)
    values = np.zeros(len(times))
    for span in track:
        mask = (times >= span.start_ms) & (times < span.end_ms)
        values[mask] = openness(span)
    return _smoothed(values)


def energy_envelope(pcm: np.ndarray, sample_rate: int, duration_ms: float) -> np.ndarray:
    """RMS energy of the audio in 30 ms windows centred every 10 ms."""
    audio = pcm.astype(np.float64) / 32768.0
    count = len(np.arange(0.0, duration_ms, 1000 / RATE_HZ))
    hop = sample_rate / RATE_HZ
    half = int(sample_rate * WINDOW_MS / 2000)
    padded = np.pad(audio, (half, half + int(hop) + 1))
    squares = np.concatenate([[0.0], np.cumsum(padded**2)])
    centres = (np.arange(count) * hop).astype(np.int64) + half
    lows, highs = centres - half, centres + half
    return np.sqrt((squares[highs] - squares[lows]) / (highs - lows))


def peak_lag_ms(mouth: np.ndarray, energy: np.ndarray) -> float:
    """Lag (ms) maximising the correlation of ``mouth[t + lag]`` with ``energy[t]``."""
    n = min(len(mouth), len(energy))
    a = _standardised(mouth[:n])
    b = _standardised(energy[:n])
    max_lag = MAX_LAG_MS * RATE_HZ // 1000
    best_lag, best = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            value = float(np.dot(a[lag:], b[: n - lag])) / (n - lag)
        else:
            value = float(np.dot(a[: n + lag], b[-lag:])) / (n + lag)
        if value > best:
            best_lag, best = lag, value
    return best_lag * 1000 / RATE_HZ


def lipsync_lag_ms(
    pcm: np.ndarray, sample_rate: int, track: Sequence[VisemeSpan], duration_ms: float
) -> float:
    """The lip-sync offset of a viseme track against its audio."""
    return peak_lag_ms(
        openness_track(track, duration_ms), energy_envelope(pcm, sample_rate, duration_ms)
    )


def _smoothed(values: np.ndarray) -> np.ndarray:
    width = WINDOW_MS * RATE_HZ // 1000
    return np.convolve(values, np.ones(width) / width, mode="same")


def _standardised(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else values - values.mean()
