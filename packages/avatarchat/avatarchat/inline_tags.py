"""Inline gesture tags in the text to speak: ``"[smile] Hello [nod] there"``.

The llm may annotate its reply with tags in square brackets. They are taken out of the text
before it reaches the voice (Piper would otherwise say "nod", and ``[[...]]`` is Piper's raw
phoneme syntax), and become :class:`Tag` s positioned in the cleaned text.

- ``[name]`` with a known name or alias (case-insensitive, spaces or hyphens allowed:
  ``[Raise brows]``) becomes a tag; any other bracketed text (``[1]``, ``[citation needed]``)
  and stray ``[`` or ``]`` are dropped silently.
- Markdown-style actions ``*smiles*`` become tags the same way; other ``*emphasis*`` keeps its
  words and adds a ``beat`` tag (the emphasised word gets a beat gesture). Stray ``*``, ``#``,
  ``_``, ``~`` and backticks are dropped, since the voice would read them out ("asterisk").
- Whitespace is collapsed to single spaces and the result is stripped.

``Tag.char_index`` is the index in the cleaned text of the first character after the tag (the
start of the word it precedes), or ``len(text)`` for a tag at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from avatarchat_avatar.timeline.catalogue import GESTURES


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
    r"\[(?P<bracket>[^\[\]]{0,64})\]"  # [tag], without nesting
    r"|\*{1,2}(?P<star>[^*\n]{1,80}?)\*{1,2}"  # *action* or *emphasis* / **emphasis**
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
