"""Inline gesture tags: honoured, positioned in the cleaned text, never spoken."""

from __future__ import annotations

import pytest

from avatarchat_avatar.timeline.catalogue import GESTURES
from avatarchat_avatar.timeline.tags import Tag, gesture_for, parse_tags


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
