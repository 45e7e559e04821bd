"""Inline gesture tags: honoured, positioned in the cleaned text, never spoken.

The edge's sentence splitter and the avatar both read tags with this grammar; the test that
runs one's output through the other is in services/edge/tests/test_edge_sentences.py.
"""

from __future__ import annotations

import pytest

from avatarchat.inline_tags import (
    GESTURES,
    MAX_BRACKET_CHARS,
    MAX_STAR_CHARS,
    Tag,
    gesture_for,
    markup_spans,
    open_markup_start,
    parse_tags,
    says_something,
    silent_markup_end,
)


def test_issue_example() -> None:
    assert parse_tags("[smile] Hello [nod] there") == (
        "Hello there",
        [Tag("smile", char_index=0), Tag("nod", char_index=6)],
    )


def test_text_without_tags_is_unchanged() -> None:
    assert parse_tags("Hello there, how are you?") == ("Hello there, how are you?", [])


@pytest.mark.parametrize("name", GESTURES)
def test_every_gesture_name_is_a_tag(name: str) -> None:
    assert parse_tags(f"Look [{name}] here") == ("Look here", [Tag(name, 5)])


@pytest.mark.parametrize(
    ("label", "gesture"),
    [
        ("Smile", "smile"),
        ("laughs", "smile"),
        ("Raise brows", "brow_raise"),
        ("shake-head", "shake"),
        ("waves", "wave"),
        ("shrugs", "shrug"),
        ("tilt", "head_tilt"),
        ("  NOD  ", "nod"),
        ("three", "count_3"),
        ("emphasis", "beat"),
    ],
)
def test_aliases_and_case(label: str, gesture: str) -> None:
    assert gesture_for(label) == gesture


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("Hi [dance] there", "Hi there"),  # unknown tag
        ("See the docs [1].", "See the docs."),  # citation marker
        ("[[hɛlˈoʊ]] world", "world"),  # Piper's raw-phoneme syntax must never reach it
        ("Unclosed [smile hello", "Unclosed smile hello"),  # stray bracket
        ("Odd ] bracket", "Odd bracket"),
        ("[]", ""),
        ("[" + "x" * 100 + "] too long", "x" * 100 + " too long"),
    ],
)
def test_unknown_and_malformed_brackets_are_never_spoken(raw: str, spoken: str) -> None:
    text, tags = parse_tags(raw)
    assert text == spoken
    assert tags == []
    assert "[" not in text and "]" not in text


def test_tag_between_words_without_spaces_separates_them() -> None:
    assert parse_tags("Hello[nod]there") == ("Hello there", [Tag("nod", 6)])


def test_tag_at_the_end_points_past_the_text() -> None:
    assert parse_tags("Goodbye! [wave]") == ("Goodbye!", [Tag("wave", 8)])


def test_only_tags_leave_nothing_to_speak() -> None:
    assert parse_tags("[wave] [smile]") == ("", [Tag("wave", 0), Tag("smile", 0)])


def test_markdown_actions_become_tags_and_emphasis_becomes_a_beat() -> None:
    assert parse_tags("*smiles* I am *really* happy") == (
        "I am really happy",
        [Tag("smile", 0), Tag("beat", 5)],
    )
    assert parse_tags("This is **very** important") == ("This is very important", [Tag("beat", 8)])


def test_markup_characters_the_voice_would_read_out_are_dropped() -> None:
    assert parse_tags("# Title: snake_case `code` ~ok~ a*b") == (
        "Title: snake case code ok a b",
        [],
    )


def test_whitespace_is_collapsed() -> None:
    assert parse_tags("  Hello \n\t [smile]   world  ") == ("Hello world", [Tag("smile", 6)])


def test_space_before_punctuation_left_by_a_tag_is_removed() -> None:
    assert parse_tags("Really [nod] , yes [smile].") == (
        "Really, yes.",
        [Tag("nod", 6), Tag("smile", 11)],
    )


def test_a_bracket_is_a_tag_up_to_the_limit_and_text_beyond() -> None:
    label = "smile" + " " * (MAX_BRACKET_CHARS - 5)
    assert parse_tags(f"Hi [{label}] there") == ("Hi there", [Tag("smile", 3)])
    aside = "x" * MAX_BRACKET_CHARS
    assert parse_tags(f"Hi [{aside}] there") == ("Hi there", [])
    assert parse_tags(f"Hi [{aside}y] there") == (f"Hi {aside}y there", [])


def test_a_star_is_markup_up_to_the_limit_and_text_beyond() -> None:
    words = "a" * MAX_STAR_CHARS
    assert parse_tags(f"*{words}*") == (words, [Tag("beat", 0)])
    assert parse_tags(f"*{words}b*") == (f"{words}b", [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*smiles*", False),
        ("[wave] [smile]", False),
        ("[citation needed].", False),
        ("*really*", True),
        ("[nod] Yes.", True),
        (f"[{'x' * (MAX_BRACKET_CHARS + 1)}]", True),
    ],
)
def test_says_something(text: str, expected: bool) -> None:
    assert says_something(text) is expected


def test_markup_spans_and_silent_markup() -> None:
    text = "Hi [wave] *really* there *nods*"
    assert markup_spans(text) == [(3, 9), (10, 18), (25, 31)]
    assert silent_markup_end(text, 3) == 9  # a gesture
    assert silent_markup_end(text, 10) is None  # emphasis speaks its word
    assert silent_markup_end(text, 25) == 31
    assert silent_markup_end("[1] ok", 0) == 3  # dropped, so silent too
    assert silent_markup_end(text, 0) is None  # no markup there


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello [wa", 6),
        ("Hello *smi", 6),
        ("Hello **", 6),
        ("Hello [wave] there", None),
        ("Hello *nods* there", None),
        ("Hello *star\nnext line", None),  # a star does not span lines
        (f"Hello [{'x' * (MAX_BRACKET_CHARS + 1)}", None),  # too long to close into a tag
        (f"Hello *{'y' * (MAX_STAR_CHARS + 1)}", None),
        ("[wave] then [smi", 12),
    ],
)
def test_open_markup_start(text: str, expected: int | None) -> None:
    assert open_markup_start(text) == expected
