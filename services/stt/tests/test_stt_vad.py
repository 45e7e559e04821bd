"""End-pointing with Silero VAD on real and synthesised speech, clicks, noise and music."""

from __future__ import annotations

import numpy as np
import pytest

from avatarchat_stt.audio_format import TARGET_RATE
from avatarchat_stt.vad import (
    FRAME_SAMPLES,
    Endpointer,
    Framer,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    VoiceDetector,
)
from tests import speech_corpus


def run(
    audio: np.ndarray, silence_ms: int = 600, min_speech_ms: int = 150, pause_ms: int = 0
) -> list[object]:
    endpointer = Endpointer(0.5, silence_ms, min_speech_ms, pause_ms)
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
    frames = list(framer.push(np.arange(1200, dtype=np.int16)))
    frames += list(framer.push(np.arange(100, dtype=np.int16)))
    assert [f.size for f in frames] == [FRAME_SAMPLES, FRAME_SAMPLES]
    assert framer.rest().size == 1300 - 2 * FRAME_SAMPLES


def test_a_frame_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="512 samples"):
        VoiceDetector(0.5).probability(np.zeros(480, dtype=np.int16))


def test_two_utterances_with_a_pause_are_two_segments(two_sentences) -> None:
    audio, truth = two_sentences
    events = run(audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded] * 2
    for (start, end), (began, ended) in zip(
        truth, zip(events[::2], events[1::2], strict=True), strict=True
    ):
        assert isinstance(began, SpeechStarted) and isinstance(ended, SpeechEnded)
        # Piper's clips carry a little silence of their own at each end
        assert start - 64 <= began.offset_ms <= start + 250
        assert end - 300 <= ended.offset_ms <= end + 100
        assert began.audio.size >= 0.15 * TARGET_RATE  # the pre-roll and the trigger window


def test_a_longer_silence_setting_joins_them(two_sentences) -> None:
    audio, _ = two_sentences
    events = run(audio, silence_ms=2500)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_a_pause_is_reported_once_before_the_end(two_sentences) -> None:
    audio, _ = two_sentences
    events = run(audio, silence_ms=2500, pause_ms=160)
    kinds = [type(e) for e in events]
    # a pause inside each sentence's tail and one in the gap; joined into one utterance
    assert kinds[0] is SpeechStarted and kinds[-1] is SpeechEnded
    assert SpeechPaused in kinds and kinds.count(SpeechStarted) == 1
    paused = [e.offset_ms for e in events if isinstance(e, SpeechPaused)]
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    # the gap's pause comes before the end; the last one is where the end will be
    assert paused[0] < ended.offset_ms and paused[-1] == ended.offset_ms


def test_real_read_speech_is_one_utterance_each() -> None:
    for recording in speech_corpus.real_speech("librivox"):
        pcm = speech_corpus.resample(recording.pcm, recording.rate, TARGET_RATE)
        events = run(np.concatenate([speech_corpus.silence(0.5, TARGET_RATE), pcm]), 900)
        assert [type(e) for e in events][:1] == [SpeechStarted], recording.name
        spans = zip(events[::2], events[1::2], strict=True)
        voiced = sum(end.offset_ms - start.offset_ms for start, end in spans)  # type: ignore[attr-defined]
        assert voiced >= 0.6 * recording.seconds * 1000, recording.name


def test_clicks_and_silence_start_nothing() -> None:
    rng = np.random.default_rng(7)
    audio = np.zeros(3 * TARGET_RATE, dtype=np.int16)
    for at in (0.5, 1.3, 2.2):  # three 20 ms clicks
        start = int(at * TARGET_RATE)
        audio[start : start + 320] = rng.integers(-20000, 20000, 320, dtype=np.int16)
    assert run(audio) == []
    assert run(np.zeros(2 * TARGET_RATE, dtype=np.int16)) == []


@pytest.mark.parametrize("name", ["silence", "white-noise", "tone-sweep", "chords"])
def test_noise_and_music_start_nothing(name: str) -> None:
    assert run(speech_corpus.non_speech()[name]) == []
