"""The sentence splitter that decides where avatar clips start."""

from __future__ import annotations

import pytest

from avatarchat import errors
from avatarchat.inline_tags import MAX_BRACKET_CHARS, MAX_STAR_CHARS, parse_tags
from avatarchat_avatar.server import clean_text
from avatarchat_edge.sentences import SentenceSplitter


def split(text: str, *, chunk: int = 0, **kwargs: int) -> list[str]:
    """Feeds ``text`` whole or in ``chunk``-sized deltas, then flushes."""
    splitter = SentenceSplitter(**kwargs)
    pieces: list[str] = []
    if chunk:
        for i in range(0, len(text), chunk):
            pieces += splitter.feed(text[i : i + chunk])
    else:
        pieces += splitter.feed(text)
    return pieces + splitter.flush()


@pytest.mark.parametrize("chunk", [0, 1, 3, 7])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Wow! Really? Yes.", ["Wow!", "Really?", "Yes."]),
        ("Dr. Smith will see you. Please wait.", ["Dr. Smith will see you.", "Please wait."]),
        ("Mr. and Mrs. Jones are here.", ["Mr. and Mrs. Jones are here."]),
        ("Pi is about 3.14 today. Nice.", ["Pi is about 3.14 today.", "Nice."]),
        ("Fruit, e.g. apples, is good. Eat it.", ["Fruit, e.g. apples, is good.", "Eat it."]),
        ("Use tools, e.g. Python. Or not.", ["Use tools, e.g. Python.", "Or not."]),
        ("Well... maybe later. Okay.", ["Well... maybe later.", "Okay."]),
        ("Wait... Then it rained.", ["Wait...", "Then it rained."]),
        ("Hmm… Sure.", ["Hmm…", "Sure."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Meet J. R. Tolkien. He wrote books.", ["Meet J. R. Tolkien.", "He wrote books."]),
        ("It is 5 p.m. in the U.S. right now.", ["It is 5 p.m. in the U.S. right now."]),
        ("Apples, pears, etc. Then more.", ["Apples, pears, etc.", "Then more."]),
        ("Version 2.0.1 is out!", ["Version 2.0.1 is out!"]),
        ("One line\nAnother line", ["One line", "Another line"]),
        ("No ending punctuation", ["No ending punctuation"]),
        ("", []),
        ("...", []),
        ("  Spaces around.   ", ["Spaces around."]),
    ],
)
def test_sentences(text: str, expected: list[str], chunk: int) -> None:
    assert split(text, chunk=chunk) == expected


def test_a_boundary_at_the_end_waits_for_more_text() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Call Dr.") == []  # might be "Dr. Smith"
    assert splitter.feed(" Smith now.") == []
    assert splitter.feed(" Then") == ["Call Dr. Smith now."]
    assert splitter.flush() == ["Then"]


def test_decimal_split_across_deltas_is_not_a_boundary() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("It costs 3.") == []
    assert splitter.feed("50 dollars. Cheap") == ["It costs 3.50 dollars."]
    assert splitter.flush() == ["Cheap"]


def test_first_piece_is_cut_after_about_twelve_words() -> None:
    words = " ".join(f"w{i}" for i in range(30))
    splitter = SentenceSplitter(first_max_words=12, max_words=60)
    first = splitter.feed(words + " ")
    assert first == [" ".join(f"w{i}" for i in range(12))]
    assert splitter.flush() == [" ".join(f"w{i}" for i in range(12, 30))]


def test_first_cut_prefers_a_comma() -> None:
    text = "Well, as you might know, I think that this is a rather long first sentence indeed."
    pieces = split(text, chunk=2, first_max_words=12)
    assert pieces == [
        "Well, as you might know,",
        "I think that this is a rather long first sentence indeed.",
    ]


def test_a_sentence_end_before_twelve_words_wins() -> None:
    assert split("Hi! " + "word " * 14, chunk=4) == ["Hi!", ("word " * 14).strip()]


def test_later_pieces_are_cut_at_max_words() -> None:
    text = "Short one. " + " ".join(f"X{i}" for i in range(25)) + "."
    pieces = split(text, chunk=5, first_max_words=12, max_words=10)
    assert pieces[0] == "Short one."
    assert all(len(p.split()) <= 10 for p in pieces)
    assert " ".join(pieces) == text


def test_nothing_is_lost_or_reordered() -> None:
    text = (
        "Hello! I am Ada, e.g. your guide. The value is 2.5... or so. Dr. Who? "
        "Yes. It's 9 a.m. now and we will talk about many things for a good while today."
    )
    for chunk in (1, 2, 5, 11):
        pieces = split(text, chunk=chunk)
        assert " ".join(pieces).split() == text.split()


def test_gesture_tags_alone_join_the_next_sentence() -> None:
    assert split("[wave]\nHello there! [nod] Yes.", chunk=3) == [
        "[wave] Hello there!",
        "[nod] Yes.",
    ]
    assert split("I [smile] agree.") == ["I [smile] agree."]


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_markdown_actions_alone_join_the_next_sentence(chunk: int) -> None:
    assert split("*smiles*\nHello there.", chunk=chunk) == ["*smiles* Hello there."]
    assert split("Hi. *smiles* How are you?", chunk=chunk) == ["Hi.", "*smiles* How are you?"]
    assert split("*smiles*", chunk=chunk) == []
    assert split("I am *really* glad.", chunk=chunk) == ["I am *really* glad."]


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_tags_after_the_last_sentence_stay_with_it(chunk: int) -> None:
    assert split("All done. [smile]", chunk=chunk) == ["All done. [smile]"]
    assert split("Nice to meet you! *smiles* [wave]", chunk=chunk) == [
        "Nice to meet you! *smiles* [wave]"
    ]
    assert split("All done.\n[smile]", chunk=chunk) == ["All done.\n[smile]"]


def test_a_boundary_followed_by_a_tag_waits_for_what_follows_it() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there! [wa") == []
    assert splitter.feed("ve] ") == []
    assert splitter.feed("How") == ["Hello there!"]
    assert splitter.flush() == ["[wave] How"]


def test_brackets_and_stars_too_long_for_a_tag_are_text() -> None:
    assert split(f"[{'x' * MAX_BRACKET_CHARS}]") == []  # a bracket: dropped, never spoken
    assert split(f"[{'x' * (MAX_BRACKET_CHARS + 1)}]") == [f"[{'x' * (MAX_BRACKET_CHARS + 1)}]"]
    assert split(f"*{'y' * (MAX_STAR_CHARS + 1)}*") == [f"*{'y' * (MAX_STAR_CHARS + 1)}*"]


@pytest.mark.parametrize("chunk", [0, 1, 4])
def test_a_word_cut_never_splits_a_tag(chunk: int) -> None:
    text = "one two [raise brows] three four five six seven"
    pieces = split(text, chunk=chunk, first_max_words=3, max_words=3)
    assert all(p.count("[") == p.count("]") for p in pieces)
    assert " ".join(pieces) == text


REPLIES = [
    "*smiles* Hello there! How are you?",
    "Nice to meet you. *smiles*",
    "Great to see you [smile]. [wave] Bye now!",
    "All done.\n[smile]",
    "I am *really* glad. [nod] Yes. *shrugs*",
    "Hmm. [thinking] [tilts head curiously] Let me see... okay. [Raise brows] Wow!",
    f"[{'an aside ' * 5}] Then this, [nod] and that.",
    f"*{'z' * (MAX_STAR_CHARS + 1)}* ok. *waves*",
    "[citation needed] See the docs [1]. [smile]",
    "First, [count] one thing, second, [two] another, and third, [three] one more thing to say.",
]


@pytest.mark.parametrize("chunk", [0, 1, 3, 7])
@pytest.mark.parametrize("reply", REPLIES)
def test_the_avatar_accepts_every_piece_and_sees_every_tag(reply: str, chunk: int) -> None:
    """The edge's pieces, parsed as the avatar parses them, say and gesture the whole reply."""
    pieces = split(reply, chunk=chunk, first_max_words=6, max_words=8)
    assert pieces
    for piece in pieces:
        # No INVALID_ARGUMENT at GenerateClip, so no clip.failed at the client.
        assert clean_text(piece, max_chars=1000).split() == piece.split()
    parsed = [parse_tags(piece) for piece in pieces]
    whole_spoken, whole_tags = parse_tags(reply)
    assert [tag.name for _, tags in parsed for tag in tags] == [tag.name for tag in whole_tags]
    assert " ".join(spoken for spoken, _ in parsed).split() == whole_spoken.split()


@pytest.mark.parametrize("reply", ["*smiles*", "[wave] [smile]", "[1]", "*nods* *smiles*"])
def test_a_reply_of_only_tags_makes_no_clip_on_either_side(reply: str) -> None:
    assert split(reply, chunk=2) == []
    with pytest.raises(errors.InvalidArgument, match="nothing to say"):
        clean_text(reply, max_chars=1000)
