"""Character alignment (ElevenLabs ``/with-timestamps``) to visemes, by English spelling rules.

Spelling is a rough guide to sound, so this is coarser than the phoneme path: digraphs
("th", "sh", "ch", "ph", "oo", ...) are recognised, a silent final "e" ("make") and "h" take their
neighbour's shape, punctuation rests the mouth, and digits (spoken as number words) get a
generic open-mid shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from avatarchat_avatar.speech import CharSpan

DIGRAPHS: dict[str, str] = {
    "th": "TH",
    "sh": "CH",
    "ch": "CH",
    "ph": "FF",
    "wh": "ou",
    "ck": "kk",
    "ng": "kk",
    "qu": "kk",
    "oo": "ou",
    "ou": "oh",
    "ow": "oh",
    "ee": "ih",
    "ea": "ih",
    "ie": "ih",
    "ai": "E",
    "ay": "E",
    "ey": "E",
    "oa": "oh",
    "oi": "oh",
    "oy": "oh",
    "au": "oh",
    "aw": "oh",
    "ew": "ou",
    "ue": "ou",
}

LETTERS: dict[str, str] = {
    **dict.fromkeys("pbm", "PP"),
    **dict.fromkeys("fv", "FF"),
    **dict.fromkeys("td", "DD"),
    **dict.fromkeys("kcgqx", "kk"),
    **dict.fromkeys("sz", "SS"),
    "j": "CH",
    **dict.fromkeys("ln", "nn"),
    "r": "RR",
    "a": "aa",
    "e": "E",
    **dict.fromkeys("iy", "ih"),
    "o": "oh",
    "u": "aa",
    "w": "ou",
}

RESTING_PUNCTUATION = frozenset('.,!?;:…—()"')
"""Characters during which the mouth rests; other non-letters take a neighbour's shape."""

GraphemeViseme = tuple[str | None, float, float, str]
"""(viseme or None to inherit a neighbour's, start_ms, end_ms, the characters)."""


def grapheme_visemes(chars: Sequence[CharSpan]) -> list[GraphemeViseme]:
    """Visemes for a character alignment, one entry per letter, digraph or other character."""
    result: list[GraphemeViseme] = []
    i = 0
    while i < len(chars):
        pair = "".join(c.char for c in chars[i : i + 2]).lower()
        if len(pair) == 2 and pair in DIGRAPHS:
            result.append((DIGRAPHS[pair], chars[i].start_ms, chars[i + 1].end_ms, pair))
            i += 2
            continue
        span = chars[i]
        result.append((_single(chars, i), span.start_ms, span.end_ms, span.char))
        i += 1
    return result


def _single(chars: Sequence[CharSpan], i: int) -> str | None:
    char = chars[i].char.lower()
    if char.isspace():
        return None
    if char in RESTING_PUNCTUATION:
        return "sil"
    if char.isdigit():
        return "E"
    if char == "e" and _is_silent_final_e(chars, i):
        return None
    return LETTERS.get(char)  # "h", apostrophes, hyphens, unknown letters inherit


def _is_silent_final_e(chars: Sequence[CharSpan], i: int) -> bool:
    """An "e" ending a word after a consonant, with a vowel before it: "make", not "the"."""
    at_word_end = i + 1 == len(chars) or not chars[i + 1].char.isalpha()
    if not at_word_end or i < 2 or chars[i - 1].char.lower() in "aeiouy":
        return False
    start = i
    while start > 0 and chars[start - 1].char.isalpha():
        start -= 1
    return any(c.char.lower() in "aeiouy" for c in chars[start : i - 1])
