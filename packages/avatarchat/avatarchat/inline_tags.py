"""Inline gesture tags in a reply: the one grammar the edge and the avatar share.

The llm may annotate its reply: ``"[smile] Hello [nod] there"``. The edge cuts the reply into
sentences without splitting or stranding a tag, and the avatar takes the tags out of the text
before it reaches the voice (Piper would otherwise say "nod", and ``[[...]]`` is Piper's raw
phoneme syntax); both read the text with the functions below, so they always agree on what is
a tag and what is spoken.

- ``[name]`` of at most ``MAX_BRACKET_CHARS`` characters, with a gesture name or alias
  (case-insensitive, spaces or hyphens allowed: ``[Raise brows]``), becomes a tag; any other
  bracketed text that short (``[1]``, ``[citation needed]``) is dropped silently. A longer
  bracket is not a tag: its brackets are dropped and its words are spoken.
- Markdown-style actions ``*smiles*`` (at most ``MAX_STAR_CHARS`` characters between the stars,
  on one line) become tags the same way; other ``*emphasis*`` keeps its words and adds a
  ``beat`` tag (the emphasised word gets a beat gesture). Stray ``*``, ``#``, ``_``, ``~`` and
  backticks are dropped, since the voice would read them out ("asterisk").
- Whitespace is collapsed to single spaces and the result is stripped.

``Tag.char_index`` is the index in the cleaned text of the first character after the tag (the
start of the word it precedes), or ``len(text)`` for a tag at the end.

``GESTURES`` are the gesture names a timeline may contain (docs/timeline.md); the avatar's
gesture catalogue gives each its timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BRACKET_CHARS = 40
"""The longest ``[label]``, brackets excluded; the longest alias has 20 characters."""
MAX_STAR_CHARS = 80
"""The longest ``*action*`` or ``*emphasis*``, stars excluded."""

COUNT_GESTURES = tuple(f"count_{n}" for n in range(1, 6))
GESTURES: tuple[str, ...] = (
    "wave",
    "nod",
    "shake",
    "head_tilt",
    "brow_raise",
    "beat",
    *COUNT_GESTURES,
    "open_hands",
    "shrug",
    "smile",
    "blink",
)
"""Every gesture name a timeline may contain."""


@dataclass(frozen=True)
class Tag:
    """A gesture requested inline, at a character position of the cleaned text."""

    name: str
    char_index: int


_ALIASES: dict[str, str] = {
    **{name: name for name in GESTURES},
    **dict.fromkeys(
        [
            "smiles",
            "smiling",
            "grin",
            "grins",
            "grinning",
            "laugh",
            "laughs",
            "laughing",
            "chuckle",
            "chuckles",
            "happy",
            "joy",
        ],
        "smile",
    ),
    **dict.fromkeys(["nods", "nodding", "nod_head", "nods_head"], "nod"),
    **dict.fromkeys(["shakes", "shaking", "shake_head", "shakes_head", "head_shake"], "shake"),
    **dict.fromkeys(["waves", "waving", "wave_hand", "waves_hand"], "wave"),
    **dict.fromkeys(["shrugs", "shrugging"], "shrug"),
    **dict.fromkeys(
        [
            "tilt",
            "tilts",
            "tilt_head",
            "tilts_head",
            "tilts_head_curiously",
            "curious",
            "thinking",
            "thinks",
            "hmm",
        ],
        "head_tilt",
    ),
    **dict.fromkeys(
        [
            "raise_brows",
            "raises_brows",
            "raise_eyebrows",
            "raises_eyebrows",
            "brows",
            "eyebrows",
            "surprised",
            "surprise",
            "wow",
        ],
        "brow_raise",
    ),
    **dict.fromkeys(["emphasis", "emphasize", "emphasise", "stress"], "beat"),
    **dict.fromkeys(["open_hand", "open_arms", "explain", "explains", "gesture"], "open_hands"),
    **dict.fromkeys(["count", "one"], "count_1"),
    **dict.fromkeys(["two"], "count_2"),
    **dict.fromkeys(["three"], "count_3"),
    **dict.fromkeys(["four"], "count_4"),
    **dict.fromkeys(["five"], "count_5"),
    **dict.fromkeys(["blinks", "wink", "winks"], "blink"),
}

_MARKUP = re.compile(
    rf"\[(?P<bracket>[^\[\]]{{0,{MAX_BRACKET_CHARS}}})\]"  # [tag], without nesting
    rf"|\*{{1,2}}(?P<star>[^*\n]{{1,{MAX_STAR_CHARS}}}?)\*{{1,2}}"  # *action*, *emphasis*, **…**
)
_STRAY = re.compile(r"[\[\]*#_~`]")
_WHITESPACE = re.compile(r"\s+")


def gesture_for(label: str) -> str | None:
    """The gesture a tag label names (``"Raise brows"`` -> ``"brow_raise"``), or None."""
    key = re.sub(r"[\s\-]+", "_", label.strip().lower())
    return _ALIASES.get(key)


def parse_tags(text: str) -> tuple[str, list[Tag]]:
    """Splits ``text`` into what to speak and the inline gesture tags, positioned in it."""
    out = _CleanText()
    position = 0
    for match in _MARKUP.finditer(text):
        out.append(text[position : match.start()])
        position = match.end()
        bracket, star = match.group("bracket"), match.group("star")
        gesture = gesture_for(bracket if bracket is not None else star)
        if gesture is not None:
            out.tag(gesture)
        elif star is not None and star.strip():
            out.tag("beat")
            out.append(star)
        if text[position : position + 1].isalnum():
            out.append(" ")  # "Hello[nod]there" is two words
    out.append(text[position:])
    return out.result()


def says_something(text: str) -> bool:
    """Whether ``text`` has words to speak once its tags are out (a letter or a digit)."""
    spoken, _ = parse_tags(text)
    return any(c.isalnum() for c in spoken)


def markup_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every complete ``[label]`` and ``*star*`` in ``text``."""
    return [match.span() for match in _MARKUP.finditer(text)]


def silent_markup_end(text: str, position: int) -> int | None:
    """The end of the markup at ``position`` if it speaks no words (a tag, a dropped bracket)."""
    match = _MARKUP.match(text, position)
    if match is None or says_something(match.group()):
        return None
    return match.end()


def open_markup_start(text: str) -> int | None:
    """Where an unfinished ``[label`` or ``*star`` that ends ``text`` begins, else None.

    For text that is still streaming in: what follows may close it into a tag, so a cut should
    neither fall inside it nor be decided before it closes (or can no longer close).
    """
    spans = markup_spans(text)
    for opener in re.finditer(r"[\[*]", text):
        start = opener.start()
        if any(a <= start < b for a, b in spans):
            continue
        rest = text[start + 1 :]
        if opener.group() == "[":
            if "]" not in rest and "[" not in rest and len(rest) <= MAX_BRACKET_CHARS:
                return start
        else:
            body = rest.removeprefix("*")
            if "*" not in body and "\n" not in body and len(body) <= MAX_STAR_CHARS:
                return start
    return None


class _CleanText:
    """Accumulates text with stray markup removed and whitespace collapsed, placing tags."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._pending_space = False
        self._tags: list[Tag] = []
        self._unplaced: list[str] = []

    def append(self, piece: str) -> None:
        for chunk in re.split(r"(\s+)", _STRAY.sub(" ", piece)):
            if not chunk:
                continue
            if chunk.isspace():
                self._pending_space = self._length > 0
                continue
            if self._pending_space and chunk[0] not in ",.;:!?)":
                self._add(" ")
                self._pending_space = False
            self._tags.extend(Tag(name, self._length) for name in self._unplaced)
            self._unplaced.clear()
            self._add(chunk)

    def tag(self, name: str) -> None:
        """A tag that applies from the next word on."""
        self._unplaced.append(name)

    def result(self) -> tuple[str, list[Tag]]:
        text = "".join(self._parts)
        return text, [*self._tags, *(Tag(name, len(text)) for name in self._unplaced)]

    def _add(self, chunk: str) -> None:
        self._parts.append(chunk)
        self._length += len(chunk)
