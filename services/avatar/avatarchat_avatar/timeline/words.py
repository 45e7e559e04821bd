"""Word timings: when each written word of the spoken text is said.

With a character alignment (ElevenLabs) this is exact. With phonemes (Piper) the spoken words
come from the phoneme stream, split at spaces and pauses. espeak sometimes joins words ("I am"
becomes one phoneme word) or expands them ("42" becomes two), so when the counts differ (or the
text has digits, where equal counts may be a coincidence) the written words are spread over the
spoken time in proportion to their letters, and snapped to spoken word boundaries that are
close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from avatarchat_avatar.speech import Speech
from avatarchat_avatar.timeline.lipsync import PAUSES

SNAP_MS = 90.0
"""A proportional boundary this close to a spoken word boundary moves onto it."""

_WORD = re.compile(r"\S*\w\S*")


@dataclass(frozen=True)
class Word:
    """A written word (punctuation kept, as in the text) and when it is spoken."""

    text: str
    char_start: int
    char_end: int
    start_ms: float
    end_ms: float


def word_timings(speech: Speech) -> list[Word]:
    """Timings for every word of ``speech.text``, in order."""
    written = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(speech.text)]
    if not written:
        return []
    if speech.chars and "".join(c.char for c in speech.chars) == speech.text:
        return [
            Word(text, start, end, speech.chars[start].start_ms, speech.chars[end - 1].end_ms)
            for text, start, end in written
        ]
    spoken = _spoken_words(speech)
    if not spoken:
        spoken = [(0.0, float(speech.duration_ms))]
    has_digits = any(c.isdigit() for c in speech.text)
    if len(spoken) == len(written) and not has_digits:
        times = spoken
    else:
        times = _spread(spoken, [_letters(text) for text, _, _ in written])
    return [
        Word(text, start, end, t0, t1)
        for (text, start, end), (t0, t1) in zip(written, times, strict=True)
    ]


def _spoken_words(speech: Speech) -> list[tuple[float, float]]:
    """(start, end) of each group of sounds between spaces or pauses."""
    words: list[tuple[float, float]] = []
    current: tuple[float, float] | None = None
    if speech.phonemes:
        units = [(p.phoneme, p.start_ms, p.end_ms) for p in speech.phonemes]
        breaks = PAUSES | {" "}
    else:
        units = [(c.char, c.start_ms, c.end_ms) for c in speech.chars]
        breaks = frozenset(' \t\n.,!?;:…—()"')
    for symbol, start, end in units:
        if symbol in breaks or not symbol.strip():
            if current is not None:
                words.append(current)
            current = None
        else:
            current = (current[0], end) if current else (start, end)
    if current is not None:
        words.append(current)
    return words


def _letters(text: str) -> float:
    """Rough spoken length of a written word: letters, with digits counting triple."""
    return max(1.0, sum(3.0 if c.isdigit() else 1.0 for c in text if c.isalnum()))


def _spread(spoken: list[tuple[float, float]], weights: list[float]) -> list[tuple[float, float]]:
    """Places written words over the spoken time in proportion to ``weights``."""
    durations = [end - start for start, end in spoken]
    total_spoken, total_weight = sum(durations), sum(weights)
    starts = [s for s, _ in spoken]
    ends = [e for _, e in spoken]

    def at(fraction: float, prefer_next: bool) -> float:
        remaining = fraction * total_spoken
        for (start, _end), duration in zip(spoken, durations, strict=True):
            if remaining < duration or (remaining == duration and not prefer_next):
                return start + remaining
            remaining -= duration
        return spoken[-1][1]

    times: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in weights:
        begin = _snap(at(cumulative / total_weight, prefer_next=True), starts)
        cumulative += weight
        finish = _snap(at(cumulative / total_weight, prefer_next=False), ends)
        begin = max(begin, times[-1][1] if times else 0.0)
        times.append((begin, max(finish, begin + 1.0)))
    return times


def _snap(time: float, boundaries: list[float]) -> float:
    nearest = min(boundaries, key=lambda b: abs(b - time))
    return nearest if abs(nearest - time) <= SNAP_MS else time
