"""The planner's rules: each looks at the words and returns cues (a gesture at a word)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from avatarchat.inline_tags import Tag
from avatarchat_avatar.timeline.words import Word


@dataclass(frozen=True)
class Cue:
    """A gesture anchored at a word (index into the words), at a time, or at the clip's end."""

    name: str
    word: int | None = None
    intensity: float = 1.0
    at_ms: float | None = None
    duration_ms: float | None = None
    tagged: bool = False


GREETINGS = frozenset(
    {
        "hello",
        "hi",
        "hey",
        "hiya",
        "howdy",
        "greetings",
        "welcome",
        "bye",
        "goodbye",
        "farewell",
        "cheers",
    }
)
GREETING_PAIRS = frozenset(
    {
        ("good", "morning"),
        ("good", "afternoon"),
        ("good", "evening"),
        ("good", "night"),
        ("see", "you"),
        ("nice", "to"),
    }
)
INTENSIFIERS = frozenset(
    {
        "really",
        "very",
        "absolutely",
        "totally",
        "completely",
        "extremely",
        "incredibly",
        "definitely",
        "truly",
        "super",
        "huge",
        "always",
        "must",
        "amazing",
        "awesome",
        "fantastic",
        "important",
        "especially",
        "seriously",
        "literally",
        "so",
        "much",
        "everything",
        "nothing",
        "best",
        "worst",
        "love",
        "incredible",
        "enormous",
    }
)
YES_WORDS = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "yup",
        "sure",
        "certainly",
        "indeed",
        "correct",
        "exactly",
        "absolutely",
        "definitely",
        "okay",
        "ok",
        "right",
        "agreed",
    }
)
NO_WORDS = frozenset({"no", "nope", "nah", "never"})
NEGATIONS = frozenset({"not", "no", "never", "don't", "isn't", "aren't", "wasn't", "can't"})
POSITIVE_NO = frozenset({"problem", "worries", "worry", "doubt"})
ORDINALS = {
    "first": 1,
    "firstly": 1,
    "second": 2,
    "secondly": 2,
    "third": 3,
    "thirdly": 3,
    "fourth": 4,
    "fourthly": 4,
    "fifth": 5,
    "fifthly": 5,
}
OPEN_HAND_CUES = frozenset(
    {
        ("for", "example"),
        ("for", "instance"),
        ("such", "as"),
        ("there", "are"),
        ("a", "few"),
        ("lots", "of"),
        ("several",),
        ("various",),
        ("options",),
        ("either",),
        ("both",),
        ("many",),
        ("different",),
    }
)
POSITIVE = frozenset(
    {
        "glad",
        "happy",
        "great",
        "love",
        "wonderful",
        "nice",
        "awesome",
        "fantastic",
        "amazing",
        "thanks",
        "thank",
        "welcome",
        "pleasure",
        "fun",
        "excellent",
        "delighted",
        "enjoy",
        "lovely",
        "cool",
        "congratulations",
        "haha",
        "perfect",
        "beautiful",
        "smile",
    }
)
COUNT_RAMP_MS = 250.0
"""Rise and fall time of the count gestures (the rig's attack/release for them)."""
COUNT_HOLD_MAX_MS = 2500.0
"""Counts further apart than this lower the hand in between."""
STRONG_COMMA_SEGMENT_WORDS = 4
"""List items longer than this many words make a comma sequence a clause list, not a list."""


def normalise(text: str) -> str:
    """A word as a lookup key: lower case, letters, digits and apostrophes only."""
    return re.sub(r"[^\w']", "", text.replace("’", "'").lower()).strip("'_")


def sentences(words: Sequence[Word]) -> list[list[int]]:
    """Word indexes grouped into sentences (a word ending in . ! or ? ends one)."""
    groups: list[list[int]] = [[]]
    for i, word in enumerate(words):
        groups[-1].append(i)
        if _terminal(word.text):
            groups.append([])
    return [g for g in groups if g]


def _terminal(text: str) -> str:
    """The sentence-ending punctuation of a word ("?" for "you?"), or ""."""
    match = re.search(r"([.!?]+)[\"')\]]*$", text)
    return match.group(1)[-1] if match else ""


def greetings(words: Sequence[Word]) -> list[Cue]:
    keys = [normalise(w.text) for w in words]
    for i, key in enumerate(keys):
        pair = (key, keys[i + 1]) if i + 1 < len(keys) else None
        if key in GREETINGS or pair in GREETING_PAIRS:
            return [Cue("wave", i), Cue("smile", i, 0.8)]
    return []


def questions(words: Sequence[Word]) -> list[Cue]:
    cues: list[Cue] = []
    for sentence in sentences(words):
        last = words[sentence[-1]]
        if _terminal(last.text) != "?":
            continue
        first = words[sentence[0]]
        start = max(first.start_ms, last.end_ms - 1800.0) - 150.0
        cues.append(
            Cue("head_tilt", at_ms=start, duration_ms=last.end_ms + 350.0 - start, intensity=0.8)
        )
        raise_from = max(start, last.end_ms - 700.0)
        cues.append(
            Cue(
                "brow_raise",
                at_ms=raise_from,
                duration_ms=last.end_ms + 300.0 - raise_from,
                intensity=0.9,
            )
        )
    return cues


def emphasis(words: Sequence[Word]) -> list[Cue]:
    """Beats on stressed words, at most one per 600 ms."""
    text_is_shouted = sum(w.text.isupper() for w in words) > len(words) / 2
    cues: list[Cue] = []
    stressed: set[int] = set()
    for i, word in enumerate(words):
        letters = re.sub(r"[^A-Za-z]", "", word.text)
        if len(letters) >= 2 and letters.isupper() and not text_is_shouted:
            cues += [Cue("beat", i), Cue("brow_raise", i, 0.6, duration_ms=450.0)]
            stressed.add(i)
        elif normalise(word.text) in INTENSIFIERS:
            cues.append(Cue("beat", i, 0.8))
            stressed.add(i)
    for sentence in sentences(words):
        if _terminal(words[sentence[-1]].text) == "!" and not stressed & set(sentence):
            key_word = max(sentence, key=lambda i: len(normalise(words[i].text)))
            cues.append(Cue("beat", key_word, 0.9))
    return _spaced(cues, words, "beat", 600.0)


def yes_no(words: Sequence[Word]) -> list[Cue]:
    keys = [normalise(w.text) for w in words]
    first_words = {s[0] for s in sentences(words)}
    cues: list[Cue] = []
    for i, key in enumerate(keys):
        before = keys[i - 1] if i > 0 else ""
        after = keys[i + 1] if i + 1 < len(keys) else ""
        if key in NO_WORDS:
            cues.append(Cue("nod" if after in POSITIVE_NO else "shake", i))
        elif (key, after) == ("of", "course"):
            cues.append(Cue("nod", i))
        elif key in YES_WORDS:
            punctuated = bool(re.search(r"[,.!?;:]$", words[i].text))
            if i in first_words or (punctuated and before not in NEGATIONS):
                cues.append(Cue("nod", i, 0.9))
    return _spaced(cues, words, "nod", 900.0)


def enumerations(words: Sequence[Word]) -> list[Cue]:
    cues: list[Cue] = []
    first_words = {s[0] for s in sentences(words)}
    for i, word in enumerate(words):
        n = ORDINALS.get(normalise(word.text))
        if n is not None and (i in first_words or word.text.endswith(",")):
            cues.append(Cue(f"count_{n}", i))
    if not cues:
        for sentence in sentences(words):
            items = _list_items(words, sentence)
            cues += [Cue(f"count_{n}", i) for n, i in enumerate(items[:5], start=1)]
    if not cues:
        return _open_hands(words)
    return _held_counts(cues, words)


def _held_counts(cues: list[Cue], words: Sequence[Word]) -> list[Cue]:
    """Counts close together overlap by one ramp, so the hand stays up between numbers."""
    held: list[Cue] = []
    for cue, following in zip(cues, [*cues[1:], None], strict=True):
        duration = None
        if following is not None and cue.word is not None and following.word is not None:
            gap = words[following.word].start_ms - words[cue.word].start_ms
            if 0 < gap <= COUNT_HOLD_MAX_MS:
                duration = gap + COUNT_RAMP_MS
        held.append(Cue(cue.name, cue.word, cue.intensity, duration_ms=duration))
    return held


def _list_items(words: Sequence[Word], sentence: list[int]) -> list[int]:
    """First word of each item of "a, b and c" (three or more short items), else []."""
    segments: list[list[int]] = [[]]
    for i in sentence:
        key = normalise(words[i].text)
        if key in ("and", "or") and segments[-1] and len(segments) > 1:
            segments.append([])
            continue
        segments[-1].append(i)
        if words[i].text.endswith(","):
            segments.append([])
    segments = [s for s in segments if s]
    if len(segments) < 3 or any(len(s) > STRONG_COMMA_SEGMENT_WORDS for s in segments[1:]):
        return []
    return [segments[0][-1]] + [s[0] for s in segments[1:]]


def _open_hands(words: Sequence[Word]) -> list[Cue]:
    keys = [normalise(w.text) for w in words]
    for i in range(len(keys)):
        if (keys[i],) in OPEN_HAND_CUES or tuple(keys[i : i + 2]) in OPEN_HAND_CUES:
            return [Cue("open_hands", i, 0.9)]
    return []


def positive(words: Sequence[Word]) -> list[Cue]:
    return [Cue("smile", i, 0.9) for i, w in enumerate(words) if normalise(w.text) in POSITIVE]


def tagged(words: Sequence[Word], tags: Sequence[Tag]) -> list[Cue]:
    """Inline tags: at the first word starting at or after the tag, or at the clip's end."""
    cues: list[Cue] = []
    for tag in tags:
        index = next((i for i, w in enumerate(words) if w.char_start >= tag.char_index), None)
        cues.append(Cue(tag.name, index, 1.0, tagged=True))
    return cues


def _spaced(cues: list[Cue], words: Sequence[Word], name: str, gap_ms: float) -> list[Cue]:
    """Drops cues of ``name`` that start within ``gap_ms`` of the previous kept one."""
    kept: list[Cue] = []
    last: float | None = None
    for cue in sorted(cues, key=lambda c: words[c.word].start_ms if c.word is not None else 0):
        if cue.name == name and cue.word is not None:
            at = words[cue.word].start_ms
            if last is not None and at - last < gap_ms:
                continue
            last = at
        kept.append(cue)
    return kept


RULES: tuple[Callable[[Sequence[Word]], list[Cue]], ...] = (
    greetings,
    questions,
    emphasis,
    yes_no,
    enumerations,
    positive,
)
