"""Lip-sync: phonemes (Piper) or characters (ElevenLabs) to a smoothed viseme track.

The viseme set is the Oculus/Meta 15 (documented with example phonemes in docs/timeline.md).
Every key also carries a weight, how far the mouth reaches that shape, set by coarticulation:
short unstressed sounds are reduced, lip closures (PP) and lip-teeth contacts (FF) always reach
their target and last at least one video frame.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from avatarchat_avatar.speech import PhonemeSpan, Speech
from avatarchat_avatar.timeline.graphemes import grapheme_visemes

VISEMES: tuple[str, ...] = (
    "sil",
    "PP",
    "FF",
    "TH",
    "DD",
    "kk",
    "CH",
    "SS",
    "nn",
    "RR",
    "aa",
    "E",
    "ih",
    "oh",
    "ou",
)
"""The Oculus 15 viseme set, in its canonical order."""

OPENNESS: dict[str, float] = {
    "sil": 0.0,
    "PP": 0.0,
    "FF": 0.12,
    "TH": 0.25,
    "DD": 0.3,
    "kk": 0.4,
    "CH": 0.25,
    "SS": 0.15,
    "nn": 0.25,
    "RR": 0.35,
    "aa": 1.0,
    "E": 0.7,
    "ih": 0.45,
    "oh": 0.8,
    "ou": 0.35,
}
"""How far each shape opens the jaw, 0-1 (the mouth drawings use the same numbers)."""

VOWELS = frozenset({"aa", "E", "ih", "oh", "ou"})
LIP_CRITICAL = frozenset({"PP", "FF"})
"""Shapes a viewer must see to believe the sound: always full weight, at least one frame."""

MIN_CRITICAL_MS = 40.0
"""One frame at 25 fps."""
MIN_KEY_MS = 20.0
"""Shorter non-critical keys are absorbed by a neighbour (invisible at 25 fps anyway)."""

PHONEME_VISEMES: dict[str, str] = {
    **dict.fromkeys("pbmɓʙɸβ", "PP"),
    **dict.fromkeys("fvʋⱱɱ", "FF"),
    **dict.fromkeys("θð", "TH"),
    **dict.fromkeys("tdɾʈɖɗ", "DD"),
    **dict.fromkeys("kgɡŋxɣqɢɠχʁɴcɟç", "kk"),
    **dict.fromkeys("ʃʒʂʐɕʑ", "CH"),
    **dict.fromkeys("sz", "SS"),
    **dict.fromkeys("nlɲɳɫɬɮɭʎʟ", "nn"),
    **dict.fromkeys("ɹrɻʀɚɝɺɽ", "RR"),
    **dict.fromkeys("aɑɐʌæɶ", "aa"),
    **dict.fromkeys("eɛəɜɘɞœ", "E"),
    **dict.fromkeys("iɪᵻɨyʏjɥ", "ih"),
    **dict.fromkeys("oɔɒɵø", "oh"),
    **dict.fromkeys("uʊʉɯwʍ", "ou"),
}
"""espeak-ng IPA symbols (as Piper emits them, one per span) to visemes."""

REDUCED_VOWELS = frozenset("əɐᵻɚɪ")
STRESS_MARKS = frozenset("ˈˌ")
LENGTH_MARKS = frozenset("ːˑʲʰˤ˞")
PAUSES = frozenset('^$_.,!?;:()"-…—')
"""Sentence start/end markers and punctuation: the mouth rests."""
INHERITING = frozenset("hɦʔ'")
"""No lip shape of their own: they take the next sound's shape (anticipation)."""


@dataclass(frozen=True)
class VisemeSpan:
    """One mouth shape from ``start_ms`` to ``end_ms``, reached to ``weight`` (0-1)."""

    viseme: str
    start_ms: float
    end_ms: float
    weight: float = 1.0

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class _Sound:
    """A raw sound while mapping: a viseme, or None for a space or an inheriting sound."""

    viseme: str | None
    start_ms: float
    end_ms: float
    stressed: bool = False
    reduced: bool = False
    space: bool = False


def viseme_track(speech: Speech) -> list[VisemeSpan]:
    """The smoothed viseme track of ``speech``: from phonemes if any, else from characters."""
    duration = float(speech.duration_ms)
    if speech.phonemes:
        sounds = _sounds_from_phonemes(speech.phonemes)
    elif speech.chars:
        sounds = [
            _Sound(v, s, e, space=(v is None and c.isspace()))
            for v, s, e, c in grapheme_visemes(speech.chars)
        ]
    else:
        sounds = []
    return smooth(_weighted(_resolve(sounds)), duration)


def _sounds_from_phonemes(spans: Sequence[PhonemeSpan]) -> list[_Sound]:
    sounds: list[_Sound] = []
    stress_start: float | None = None
    for span in spans:
        symbol = span.phoneme
        if symbol in STRESS_MARKS:
            # The stress mark precedes its vowel; its time belongs to what follows.
            stress_start = span.start_ms if stress_start is None else stress_start
            continue
        if symbol in LENGTH_MARKS or (symbol and unicodedata.combining(symbol[0])):
            if sounds:
                sounds[-1].end_ms = span.end_ms
                continue
            symbol = "^"
        start = span.start_ms if stress_start is None else stress_start
        if symbol == " ":
            sound = _Sound(None, start, span.end_ms, space=True)
        elif symbol in PAUSES or not symbol.strip():
            sound = _Sound("sil", start, span.end_ms)
        elif symbol in INHERITING:
            sound = _Sound(None, start, span.end_ms)
        else:
            sound = _Sound(
                PHONEME_VISEMES.get(symbol),
                start,
                span.end_ms,
                stressed=stress_start is not None,
                reduced=symbol in REDUCED_VOWELS,
            )
        sounds.append(sound)
        stress_start = None
    return sounds


def _resolve(sounds: list[_Sound]) -> list[_Sound]:
    """Gives spaces and inheriting sounds a shape.

    A space between two sounds is split between them (there is no pause between words in
    running speech); next to a rest it becomes rest. An inheriting sound (``h``, glottal stop,
    unknown symbol) takes the next sound's shape, or the previous one's at the end.
    """
    resolved: list[_Sound] = []
    for i, sound in enumerate(sounds):
        if sound.viseme is not None:
            resolved.append(sound)
            continue
        before = resolved[-1] if resolved else None
        after = next((s for s in sounds[i + 1 :] if s.viseme is not None and not s.space), None)
        if sound.space:
            if before is None or after is None or "sil" in (before.viseme, after.viseme):
                resolved.append(replace(sound, viseme="sil", space=False))
            else:
                middle = (sound.start_ms + sound.end_ms) / 2
                before.end_ms = middle
                resolved.append(replace(sound, viseme=after.viseme, start_ms=middle, space=False))
            continue
        source = after if after is not None else before
        viseme = source.viseme if source is not None else "sil"
        resolved.append(replace(sound, viseme=viseme, reduced=True))
    return resolved


def _weighted(sounds: Iterable[_Sound]) -> list[VisemeSpan]:
    """Coarticulation weights: how far each sound reaches its shape."""
    spans: list[VisemeSpan] = []
    for sound in sounds:
        viseme = sound.viseme or "sil"
        duration = sound.end_ms - sound.start_ms
        if viseme == "sil" or viseme in LIP_CRITICAL:
            weight = 1.0
        elif viseme in VOWELS:
            weight = 1.0 if sound.stressed else _clamp(duration / 90.0, 0.55, 0.9)
            if sound.reduced and not sound.stressed:
                weight *= 0.8
        else:
            weight = _clamp(duration / 70.0, 0.5, 0.85)
        spans.append(VisemeSpan(viseme, sound.start_ms, sound.end_ms, round(weight, 3)))
    return spans


def smooth(spans: Sequence[VisemeSpan], duration_ms: float) -> list[VisemeSpan]:
    """Merges, widens and absorbs keys into a contiguous track covering ``[0, duration_ms]``."""
    track = _merge_same(_cover(spans, duration_ms))
    track = _widen_critical(track)
    track = _absorb_short(track)
    return _merge_same(track)


def _cover(spans: Sequence[VisemeSpan], duration_ms: float) -> list[VisemeSpan]:
    """Clips to the audio, closes gaps with rest, and makes the track contiguous."""
    track: list[VisemeSpan] = []
    cursor = 0.0
    for span in sorted(spans, key=lambda s: s.start_ms):
        start, end = max(span.start_ms, cursor), min(span.end_ms, duration_ms)
        if end <= start:
            continue
        if start > cursor:
            track.append(VisemeSpan("sil", cursor, start))
        track.append(replace(span, start_ms=start, end_ms=end))
        cursor = end
    if cursor < duration_ms:
        track.append(VisemeSpan("sil", cursor, duration_ms))
    return track


def _merge_same(track: list[VisemeSpan]) -> list[VisemeSpan]:
    merged: list[VisemeSpan] = []
    for span in track:
        if merged and merged[-1].viseme == span.viseme:
            last = merged[-1]
            merged[-1] = replace(last, end_ms=span.end_ms, weight=max(last.weight, span.weight))
        else:
            merged.append(span)
    return merged


def _widen_critical(track: list[VisemeSpan]) -> list[VisemeSpan]:
    """Makes PP/FF last one frame, borrowing evenly from neighbours that can spare it."""
    track = list(track)
    for i, span in enumerate(track):
        missing = MIN_CRITICAL_MS - span.duration_ms
        if span.viseme not in LIP_CRITICAL or missing <= 0:
            continue
        start, end = span.start_ms, span.end_ms
        if i > 0:
            spare = max(0.0, track[i - 1].duration_ms - MIN_KEY_MS)
            start -= min(missing / 2, spare)
        if i + 1 < len(track):
            spare = max(0.0, track[i + 1].duration_ms - MIN_KEY_MS)
            end += min(MIN_CRITICAL_MS - (end - start), spare)
        if i > 0:
            track[i - 1] = replace(track[i - 1], end_ms=start)
        if i + 1 < len(track):
            track[i + 1] = replace(track[i + 1], start_ms=end)
        track[i] = replace(span, start_ms=start, end_ms=end)
    return track


def _absorb_short(track: list[VisemeSpan]) -> list[VisemeSpan]:
    """Gives keys shorter than MIN_KEY_MS (other than PP/FF) to their longer neighbour."""
    result = list(track)
    i = 0
    while i < len(result):
        span = result[i]
        if span.duration_ms >= MIN_KEY_MS or span.viseme in LIP_CRITICAL or len(result) == 1:
            i += 1
            continue
        before = result[i - 1] if i > 0 else None
        after = result[i + 1] if i + 1 < len(result) else None
        if before is not None and (after is None or before.duration_ms >= after.duration_ms):
            result[i - 1] = replace(before, end_ms=span.end_ms)
        elif after is not None:
            result[i + 1] = replace(after, start_ms=span.start_ms)
        del result[i]
        i = max(i - 1, 0)
    return result


def openness(span: VisemeSpan) -> float:
    """Jaw opening of a key: the shape's openness scaled by how far it is reached."""
    return OPENNESS[span.viseme] * span.weight


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
