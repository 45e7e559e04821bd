"""Cuts a streaming reply into sentences, one avatar clip each.

``!`` and ``?`` end a sentence when whitespace follows. A period or an ellipsis ends one only
when whitespace and then something other than a lower-case letter follows, so ``3.14``,
``Dr. Smith``, ``e.g. this``, ``U.S. law`` and ``wait... what`` stay whole. A boundary at the
very end of the text so far is decided when more text (or the end of the reply) arrives.

So that the avatar starts speaking early, the first piece is cut after ``first_max_words``
words when no sentence has ended by then (at a comma if there is one), and any later piece
after ``max_words``; such a cut never falls inside a tag.

Inline gesture tags (``[smile]``, ``*nods*``) are read with ``avatarchat.inline_tags``, the
grammar the avatar parses them with, so every piece sent has words to speak:

- a piece that is only tags (``*smiles*``) joins the next sentence;
- tags after the last sentence end (``All done. [smile]``) stay with that sentence: a boundary
  followed by tags is decided once what follows them is known;
- a bracket or star too long to be a tag is text, here and at the avatar.
"""

from __future__ import annotations

import re

from avatarchat import inline_tags

TERMINATORS = ".!?…"
CLOSERS = "\"')]}”’»"
CLAUSE_MARKS = ",;:—–"
# Abbreviations that do not end a sentence even before a capital letter ("Dr. Smith").
NEVER_ENDS = frozenset(
    "mr mrs ms dr prof st mt rev hon gen col capt lt sgt gov sen rep fr".split()
    + "vs cf approx ca fig vol".split()
)
_WORD = re.compile(r"\S+(?=\s)")
_TAGS_PENDING = -1
"""``_find_boundary``: a sentence ended, but nothing with words follows it yet (tags, stray
punctuation): whether they join it is known once words or the end of the reply arrive."""


class SentenceSplitter:
    """``feed`` deltas as they stream, then ``flush`` at the end of the reply."""

    def __init__(self, *, first_max_words: int = 12, max_words: int = 60) -> None:
        self._first_max_words = first_max_words
        self._max_words = max_words
        self._buf = ""
        self._emitted = False
        self._tags = ""  # a piece that was only gesture tags, carried into the next one

    def feed(self, text: str) -> list[str]:
        self._buf += text
        return self._drain(final=False)

    def flush(self) -> list[str]:
        pieces = self._drain(final=True)
        rest, self._buf = self._buf, ""
        return pieces + self._keep(rest)  # a reply of tags alone says nothing: they are dropped

    def _drain(self, *, final: bool) -> list[str]:
        pieces: list[str] = []
        while True:
            end = _find_boundary(self._buf, final=final)
            if end == _TAGS_PENDING:
                return pieces  # no word cut either: it would strand the tags
            if end is None:
                end = self._word_cut(final=final)
            if end is None:
                return pieces
            piece, self._buf = self._buf[:end], self._buf[end:]
            kept = self._keep(piece)
            if kept:
                self._emitted = True
            pieces.extend(kept)

    def _keep(self, piece: str) -> list[str]:
        """The piece to send, if it has anything to say; tags alone wait for the next one."""
        piece = piece.strip()
        if not inline_tags.says_something(piece):
            if inline_tags.parse_tags(piece)[1]:
                self._tags = f"{self._tags} {piece}".strip()
            return []
        if self._tags:
            piece, self._tags = f"{self._tags} {piece}", ""
        return [piece]

    def _word_cut(self, *, final: bool) -> int | None:
        """Where to cut a long piece with no sentence end yet, or None."""
        limit = self._max_words if self._emitted else self._first_max_words
        words = list(_WORD.finditer(self._buf))
        if len(words) < limit:
            return None
        buf = self._buf
        spans = inline_tags.markup_spans(buf)
        open_start = inline_tags.open_markup_start(buf)
        candidates = [
            w
            for w in words[:limit]
            # Never inside a tag, complete or still streaming in; and only where words follow
            # (at the end of the reply, a last piece of tags alone would be lost).
            if not any(start < w.end() < end for start, end in spans)
            and (open_start is None or w.end() <= open_start)
            and _nothing_said_after(buf, w.end(), final=final) is False
        ]
        if not candidates:
            return None
        for match in reversed(candidates[max(2, limit // 3) :]):
            if match.group()[-1] in CLAUSE_MARKS:
                return match.end()
        return candidates[-1].end()


def _find_boundary(buf: str, *, final: bool) -> int | None:
    """Index just past the first sentence end in ``buf``; None if none (yet).

    ``_TAGS_PENDING`` when a sentence ends but nothing with words follows it so far.
    """
    i = 0
    while i < len(buf):
        char = buf[i]
        if char == "\n" and buf[:i].strip():
            said_nothing = _nothing_said_after(buf, i + 1, final=final)
            if said_nothing is None:
                return _TAGS_PENDING
            if not said_nothing:
                return i + 1
            i += 1
            continue
        if char not in TERMINATORS:
            i += 1
            continue
        j = i
        while j < len(buf) and buf[j] in TERMINATORS:
            j += 1
        while j < len(buf) and buf[j] in CLOSERS:
            j += 1
        verdict = _ends_sentence(buf, i, j, final=final)
        if verdict and j < len(buf):
            said_nothing = _nothing_said_after(buf, j, final=final)
            if said_nothing is None:
                return _TAGS_PENDING
            verdict = not said_nothing
        if verdict is None:
            return None
        if verdict:
            return j
        i = j
    return None


def _nothing_said_after(buf: str, start: int, *, final: bool) -> bool | None:
    """Whether the reply says nothing more after ``start``: only whitespace, punctuation and
    silent tags follow to its end. None while undecided (the text so far ends so, or in a tag
    still streaming in)."""
    position = start
    while position < len(buf):
        char = buf[position]
        if char.isalnum():
            return False
        if char in "[*":
            silent_end = inline_tags.silent_markup_end(buf, position)
            if silent_end is not None:
                position = silent_end
                continue
            if not final and inline_tags.open_markup_start(buf[position:]) == 0:
                return None
        position += 1  # whitespace, punctuation, or a star or bracket that speaks its words
    return True if final else None


def _ends_sentence(buf: str, start: int, end: int, *, final: bool) -> bool | None:
    """Whether the terminator run ``buf[start:end]`` ends a sentence; None if undecided."""
    if end == len(buf):
        return True if final else None
    if not buf[end].isspace():
        return False  # 3.14, e.g.x, "U.S.A"
    after = end
    while after < len(buf) and buf[after].isspace():
        if buf[after] == "\n":
            return True
        after += 1
    run = buf[start:end]
    if "!" in run or "?" in run:
        return True
    if after == len(buf):
        return True if final else None
    if buf[after].islower():
        return False  # "wait... what", "e.g. this"
    if run.rstrip(CLOSERS) == ".":
        return not _is_abbreviation(_word_before(buf, start))
    return True


def _word_before(buf: str, index: int) -> str:
    begin = index
    while begin > 0 and not buf[begin - 1].isspace():
        begin -= 1
    return buf[begin:index].lstrip("\"'([{“‘").lower()


def _is_abbreviation(word: str) -> bool:
    if word in NEVER_ENDS:
        return True
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Smith"
    parts = word.split(".")
    return len(parts) > 1 and all(0 < len(p) <= 2 and p.isalpha() for p in parts)  # e.g, U.S
