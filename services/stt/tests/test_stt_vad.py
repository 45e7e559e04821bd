"""End-pointing with WebRTC VAD on synthesised speech, clicks and silence."""

from __future__ import annotations

import numpy as np
import pytest

from avatarchat_stt.audio_format import TARGET_RATE
from avatarchat_stt.vad import FRAME_SAMPLES, Endpointer, Framer, SpeechEnded, SpeechStarted
from tests import speech_corpus


def run(audio: np.ndarray, silence_ms: int = 600, min_speech_ms: int = 150) -> list[object]:
    endpointer = Endpointer(2, silence_ms, min_speech_ms)
    framer = Framer()
    events: list[object] = [e for f in framer.push(audio) if (e := endpointer.push(f))]
    if endpointer.speaking:
        events.append(endpointer.end())
    return events


@pytest.fixture(scope="module")
def two_sentences() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Two utterances 1.5 s apart, and where each really starts and ends (ms)."""
    clips = [
        speech_corpus.resample(*speech_corpus.synthesize(text), TARGET_RATE)
        for text in speech_corpus.sentences()[2:4]
    ]
    audio = speech_corpus.join(clips, TARGET_RATE, gap_s=1.5, pad_s=0.5)
    first = (500, 500 + len(clips[0]) * 1000 // TARGET_RATE)
    second_start = first[1] + 1500
    return audio, [first, (second_start, second_start + len(clips[1]) * 1000 // TARGET_RATE)]


def test_framer_cuts_whole_frames_and_keeps_the_rest() -> None:
    framer = Framer()
    frames = list(framer.push(np.arange(1000, dtype=np.int16)))
    frames += list(framer.push(np.arange(100, dtype=np.int16)))
    assert [f.size for f in frames] == [FRAME_SAMPLES, FRAME_SAMPLES]
    assert framer.rest().size == 1100 - 2 * FRAME_SAMPLES


def test_two_utterances_with_a_pause_are_two_segments(two_sentences) -> None:
    audio, truth = two_sentences
    events = run(audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded] * 2
    for (start, end), (began, ended) in zip(
        truth, zip(events[::2], events[1::2], strict=True), strict=True
    ):
        assert isinstance(began, SpeechStarted) and isinstance(ended, SpeechEnded)
        # Piper's clips carry a little silence of their own at each end
        assert start - 60 <= began.offset_ms <= start + 250
        assert end - 300 <= ended.offset_ms <= end + 60
        assert began.audio.size >= 0.15 * TARGET_RATE  # the pre-roll and the trigger window


def test_a_longer_silence_setting_joins_them(two_sentences) -> None:
    audio, _ = two_sentences
    events = run(audio, silence_ms=2500)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_clicks_and_silence_start_nothing() -> None:
    rng = np.random.default_rng(7)
    audio = np.zeros(3 * TARGET_RATE, dtype=np.int16)
    for at in (0.5, 1.3, 2.2):  # three 20 ms clicks
        start = int(at * TARGET_RATE)
        audio[start : start + 320] = rng.integers(-20000, 20000, 320, dtype=np.int16)
    assert run(audio) == []
    assert run(np.zeros(2 * TARGET_RATE, dtype=np.int16)) == []
