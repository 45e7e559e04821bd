"""Cuts a streaming reply into sentences, one avatar clip each.

``!`` and ``?`` end a sentence when whitespace follows. A period or an ellipsis ends one only
when whitespace and then something other than a lower-case letter follows, so ``3.14``,
``Dr. Smith``, ``e.g. this``, ``U.S. law`` and ``wait... what`` stay whole. A boundary at the
very end of the text so far is decided when more text (or the end of the reply) arrives.

So that the avatar starts speaking early, the first piece is cut after ``first_max_words``
words when no sentence has ended by then (at a comma if there is one), and any later piece
after ``max_words``. A piece that is only gesture tags (``[smile]``) joins the next sentence.
"""

from __future__ import annotations

import re

TERMINATORS = ".!?…"
CLOSERS = "\"')]}”’»"
CLAUSE_MARKS = ",;:—–"
# Abbreviations that do not end a sentence even before a capital letter ("Dr. Smith").
NEVER_ENDS = frozenset(
    "mr mrs ms dr prof st mt rev hon gen col capt lt sgt gov sen rep fr".split()
    + "vs cf approx ca fig vol".split()
)
# Inline gesture tags such as "[smile]" are for the avatar, never spoken on their own.
_TAG = re.compile(r"\[[^\[\]]{0,40}\]")
_WORD = re.compile(r"\S+(?=\s)")


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
        return pieces + self._keep(rest)  # tags left over at the very end are dropped

    def _drain(self, *, final: bool) -> list[str]:
        pieces: list[str] = []
        while True:
            end = _find_boundary(self._buf, final=final)
            if end is None:
                end = self._word_cut()
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
        if not any(c.isalnum() for c in _TAG.sub("", piece)):
            if _TAG.search(piece):
                self._tags = f"{self._tags} {piece}".strip()
            return []
        if self._tags:
            piece, self._tags = f"{self._tags} {piece}", ""
        return [piece]

    def _word_cut(self) -> int | None:
        """Where to cut a long piece with no sentence end yet, or None."""
        limit = self._max_words if self._emitted else self._first_max_words
        words = list(_WORD.finditer(self._buf))
        if len(words) < limit:
            return None
        candidates = words[:limit]
        for match in reversed(candidates[max(2, limit // 3) :]):
            if match.group()[-1] in CLAUSE_MARKS:
                return match.end()
        return candidates[-1].end()


def _find_boundary(buf: str, *, final: bool) -> int | None:
    """Index just past the first sentence end in ``buf``; None if none (yet)."""
    i = 0
    while i < len(buf):
        char = buf[i]
        if char == "\n" and buf[:i].strip():
            return i + 1
        if char not in TERMINATORS:
            i += 1
            continue
        j = i
        while j < len(buf) and buf[j] in TERMINATORS:
            j += 1
        while j < len(buf) and buf[j] in CLOSERS:
            j += 1
        verdict = _ends_sentence(buf, i, j, final=final)
        if verdict is None:
            return None
        if verdict:
            return j
        i = j
    return None


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
