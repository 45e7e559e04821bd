"""Word timings and the assembled Timeline message."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from avatarchat.inline_tags import parse_tags
from avatarchat_avatar.backends.speech.piper import PiperSpeech
from avatarchat_avatar.speech import CharSpan, PhonemeSpan, Speech
from avatarchat_avatar.timeline.build import build_timeline, viseme_spans
from avatarchat_avatar.timeline.catalogue import GESTURES
from avatarchat_avatar.timeline.lipsync import VISEMES
from avatarchat_avatar.timeline.words import word_timings


def _phoneme_speech(text: str, phonemes: list[str], ms: float = 50.0) -> Speech:
    spans = tuple(PhonemeSpan(p, i * ms, (i + 1) * ms) for i, p in enumerate(phonemes))
    return Speech(np.zeros(int(len(phonemes) * ms), np.int16), 1000, text, phonemes=spans)


def test_words_from_phonemes_when_counts_match() -> None:
    speech = _phoneme_speech("Hi, Bob.", ["^", "h", "a", "ɪ", ",", " ", "b", "ɑ", "b", ".", "$"])
    words = word_timings(speech)
    assert [(w.text, w.start_ms, w.end_ms) for w in words] == [("Hi,", 50, 200), ("Bob.", 300, 450)]
    assert [(w.char_start, w.char_end) for w in words] == [(0, 3), (4, 8)]


def test_words_are_spread_when_espeak_joins_or_splits_words() -> None:
    # "I am 42": espeak says "aɪɐm fɔːɹɾi tuː", three spoken words for three written ones but
    # split differently; digits make the counts untrustworthy, so words are spread by letters
    # (digits count triple) and snapped to spoken boundaries.
    speech = _phoneme_speech(
        "I am 42", ["^", "a", "ɪ", "ɐ", "m", " ", "f", "ɔ", "ɹ", "ɾ", "i", " ", "t", "u", "$"]
    )
    words = word_timings(speech)
    assert [w.text for w in words] == ["I", "am", "42"]
    for before, after in itertools.pairwise(words):
        assert before.start_ms < before.end_ms <= after.start_ms
    assert [(w.start_ms, w.end_ms) for w in words] == [
        (50, pytest.approx(111, abs=1)),
        (pytest.approx(111, abs=1), 250),
        (300, 700),
    ]


def test_words_from_character_alignment_are_exact() -> None:
    text = "Hey you"
    chars = tuple(CharSpan(c, i * 100.0, (i + 1) * 100.0) for i, c in enumerate(text))
    speech = Speech(np.zeros(700, np.int16), 1000, text, chars=chars)
    assert [(w.text, w.start_ms, w.end_ms) for w in word_timings(speech)] == [
        ("Hey", 0, 300),
        ("you", 400, 700),
    ]


def test_punctuation_only_tokens_are_not_words() -> None:
    speech = _phoneme_speech("Wait — what?", ["^", "w", "e", "ɪ", "t", " ", "w", "ʌ", "t", "?"])
    assert [w.text for w in word_timings(speech)] == ["Wait", "what?"]


@pytest.fixture(scope="module")
def piper() -> PiperSpeech:
    backend = PiperSpeech()
    asyncio.run(backend.load())
    return backend


def test_timeline_from_real_speech(piper: PiperSpeech) -> None:
    text, tags = parse_tags("[smile] Is it REALLY ready? Yes, it is.")
    speech = asyncio.run(piper.synthesize(text))
    timeline = build_timeline(speech, tags)
    assert timeline.duration_ms == speech.duration_ms
    keys = list(timeline.visemes)
    assert keys[0].start_ms == 0 and keys[-1].end_ms == timeline.duration_ms
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(keys))
    assert {k.viseme for k in keys} <= set(VISEMES)
    assert {"sil", "aa", "PP"} & {k.viseme for k in keys}
    names = [g.gesture for g in timeline.gestures]
    assert {"smile", "head_tilt", "brow_raise", "beat", "nod"} <= set(names)
    assert set(names) <= set(GESTURES)
    starts = [g.start_ms for g in timeline.gestures]
    assert starts == sorted(starts)
    assert all(g.start_ms + g.duration_ms <= timeline.duration_ms for g in timeline.gestures)
    assert [w.text for w in timeline.words] == ["Is", "it", "REALLY", "ready?", "Yes,", "it", "is."]
    assert len(viseme_spans(timeline)) == len(keys)


def test_timeline_of_speech_without_alignment() -> None:
    speech = Speech(np.zeros(16000, np.int16), 16000, "Hello")
    timeline = build_timeline(speech, [])
    assert [(k.viseme, k.start_ms, k.end_ms) for k in timeline.visemes] == [("sil", 0, 1000)]
    assert [w.text for w in timeline.words] == ["Hello"]
