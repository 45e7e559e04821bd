"""The gesture planner, rule by rule."""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys

from avatarchat.inline_tags import Tag, parse_tags
from avatarchat_avatar.rendering.motion import MOTIONS
from avatarchat_avatar.timeline.catalogue import GESTURES
from avatarchat_avatar.timeline.gestures import Gesture, _blinks, plan_gestures
from avatarchat_avatar.timeline.words import Word

WORD_MS = 400.0


def _words(text: str) -> list[Word]:
    """Words of ``text``, each 400 ms long, back to back from 500 ms."""
    words, position = [], 0
    for i, token in enumerate(text.split()):
        start = text.index(token, position)
        position = start + len(token)
        words.append(Word(token, start, position, 500 + i * WORD_MS, 500 + (i + 1) * WORD_MS))
    return words


def _plan(text: str, tags: list[Tag] | None = None) -> list[Gesture]:
    words = _words(text)
    duration = words[-1].end_ms + 500 if words else 1000.0
    return plan_gestures(words, duration, tags or [], seed_text=text)


def _names(gestures: list[Gesture]) -> list[str]:
    return [g.name for g in gestures if g.name != "blink"]


def _at(gestures: list[Gesture], name: str) -> Gesture:
    return next(g for g in gestures if g.name == name)


def test_greeting_gets_a_wave_and_a_smile() -> None:
    gestures = _plan("Hello there, nice day.")
    assert {"wave", "smile"} <= set(_names(gestures))
    assert _at(gestures, "wave").start_ms < 500 + 100  # starts around "Hello"


def test_only_one_wave_per_clip_and_farewells_wave_too() -> None:
    assert _names(_plan("Hi! Hello! Hey!")).count("wave") == 1
    assert "wave" in _names(_plan("Okay then, goodbye for now."))
    assert "wave" in _names(_plan("Good morning to you."))


def test_question_gets_head_tilt_and_raised_brows_near_its_end() -> None:
    gestures = _plan("Could you tell me more about it?")
    tilt, brows = _at(gestures, "head_tilt"), _at(gestures, "brow_raise")
    end_of_question = 500 + 7 * WORD_MS
    assert tilt.start_ms < end_of_question < tilt.end_ms + 400
    assert brows.start_ms >= tilt.start_ms
    assert brows.start_ms > end_of_question - 800


def test_statement_gets_no_question_gestures() -> None:
    assert not {"head_tilt", "brow_raise"} & set(_names(_plan("This is a statement.")))


def test_capitalised_words_get_a_beat_and_a_brow_flash() -> None:
    gestures = _plan("That is NOT what I said.")
    beat = _at(gestures, "beat")
    assert beat.start_ms < 500 + 2 * WORD_MS < beat.end_ms  # lands on "NOT"
    assert "brow_raise" in _names(gestures)


def test_shouted_text_does_not_beat_every_word() -> None:
    assert _names(_plan("THIS IS ALL CAPS TEXT.")).count("beat") == 0


def test_intensifiers_get_beats_spaced_apart() -> None:
    gestures = _plan("It was really very good.")
    beats = [g for g in gestures if g.name == "beat"]
    assert len(beats) == 1  # "really" and "very" are 400 ms apart: one beat


def test_exclamation_beats_its_longest_word() -> None:
    gestures = _plan("We finished everything today!")
    beat = _at(gestures, "beat")
    assert beat.start_ms < 500 + 2 * WORD_MS < beat.end_ms  # "everything"


def test_yes_nods_and_no_shakes() -> None:
    assert "nod" in _names(_plan("Yes, that works."))
    assert "nod" in _names(_plan("Of course it does."))
    assert "shake" in _names(_plan("No, that is wrong."))
    assert "shake" in _names(_plan("I never said that."))


def test_no_problem_nods_and_not_sure_does_not() -> None:
    names = _names(_plan("No problem at all."))
    assert "nod" in names and "shake" not in names
    assert "nod" not in _names(_plan("I am not sure."))


def test_ordinals_count_on_the_fingers() -> None:
    gestures = _plan("First, open it. Second, close it. Third, smile.")
    counts = [g for g in gestures if g.name.startswith("count_")]
    assert [g.name for g in counts] == ["count_1", "count_2", "count_3"]


def test_comma_lists_count_their_items_and_counts_hand_over() -> None:
    gestures = _plan("I like red, green and blue.")
    counts = [g for g in gestures if g.name.startswith("count_")]
    assert [g.name for g in counts] == ["count_1", "count_2", "count_3"]
    for before, after in itertools.pairwise(counts):
        overlap = before.end_ms - after.start_ms
        assert overlap == MOTIONS["count_1"].release_ms  # the hand stays up in between


def test_long_clauses_are_not_a_list() -> None:
    text = "Well, I think that we should go home, and then we can all have some dinner."
    assert not any(n.startswith("count_") for n in _names(_plan(text)))


def test_explanations_get_open_hands() -> None:
    assert "open_hands" in _names(_plan("There are several ways to do it."))
    assert "open_hands" in _names(_plan("Take fruit, for example apples."))


def test_positive_words_smile() -> None:
    assert "smile" in _names(_plan("That sounds great to me."))


def test_blinks_are_always_planned_and_deterministic() -> None:
    text = "A plain sentence with nothing special in it at all, going on for a while."
    first, second = _plan(text), _plan(text)
    blinks = [g for g in first if g.name == "blink"]
    assert len(blinks) >= 2
    assert first == second
    gaps = [b.start_ms - a.start_ms for a, b in itertools.pairwise(blinks)]
    assert all(2200 <= gap <= 4800 for gap in gaps)


def test_blinks_follow_the_text_not_the_process() -> None:
    """The seed is the text's CRC, so another process (another hash seed) plans the same."""
    text = "A plain sentence with nothing special in it at all, going on for a while."
    here = [g.start_ms for g in _blinks(9000.0, text)]
    assert len(here) >= 2
    assert here != [g.start_ms for g in _blinks(9000.0, text + " Once more.")]
    program = (
        "from avatarchat_avatar.timeline.gestures import _blinks\n"
        f"print([g.start_ms for g in _blinks(9000.0, {text!r})])"
    )
    out = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert ast.literal_eval(out.stdout.strip()) == here


def test_tags_are_honoured_at_their_word() -> None:
    text, tags = parse_tags("This is fine [shrug] I guess.")
    gestures = _plan(text, tags)
    shrug = _at(gestures, "shrug")
    assert shrug.tagged
    assert shrug.start_ms < 500 + 3 * WORD_MS < shrug.end_ms  # around "I"


def test_tag_at_the_end_is_placed_before_the_clip_ends() -> None:
    text, tags = parse_tags("See you [wave]")
    gestures = _plan(text, tags)
    wave = _at(gestures, "wave")
    assert wave.end_ms <= _words(text)[-1].end_ms + 500


def test_tags_win_over_rules_on_the_same_arm() -> None:
    text, tags = parse_tags("[shrug] Hello there friend.")
    names = _names(_plan(text, tags))
    assert "shrug" in names and "wave" not in names


def test_nod_and_shake_never_overlap() -> None:
    gestures = _plan("Yes no yes no.")
    head = sorted((g for g in gestures if g.name in ("nod", "shake")), key=lambda g: g.start_ms)
    for before, after in itertools.pairwise(head):
        assert before.end_ms <= after.start_ms


def test_gestures_fit_inside_the_clip_and_use_known_names() -> None:
    text, tags = parse_tags("[wave] Hi! Really? [nod]")
    words = _words(text)
    gestures = plan_gestures(words, 900.0, tags)
    assert gestures
    for g in gestures:
        assert g.name in GESTURES
        assert 0 <= g.start_ms and g.end_ms <= 900
        assert 0 < g.intensity <= 1


def test_no_words_still_blinks_and_honours_tags() -> None:
    gestures = plan_gestures([], 3000.0, [Tag("smile", 0)])
    assert "smile" in _names(gestures)
    assert any(g.name == "blink" for g in gestures)
    assert plan_gestures([], 0.0) == []
