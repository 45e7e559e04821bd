"""Speech value type and the local Piper backend (real joe-medium voice, real alignments)."""

from __future__ import annotations

import asyncio
import io
import itertools
import wave

import numpy as np
import pytest

from avatarchat.errors import InvalidArgument
from avatarchat_avatar.backends.speech.piper import PiperSpeech
from avatarchat_avatar.speech import PhonemeSpan, Speech, SpeechBackend


@pytest.fixture(scope="module")
def piper() -> PiperSpeech:
    backend = PiperSpeech()
    asyncio.run(backend.load())
    return backend


def test_duration_is_rounded_milliseconds() -> None:
    speech = Speech(pcm=np.zeros(22050 + 11, np.int16), sample_rate=22050, text="x")
    assert speech.duration_ms == 1000


def test_wav_bytes_is_a_complete_wave_file() -> None:
    pcm = (np.sin(np.arange(800) / 5) * 1000).astype(np.int16)
    data = Speech(pcm=pcm, sample_rate=16000, text="x").wav_bytes()
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert np.array_equal(np.frombuffer(wav.readframes(800), "<i2"), pcm)


@pytest.mark.parametrize(
    ("pcm", "rate"),
    [
        (np.zeros(10, np.float32), 16000),
        (np.zeros((2, 10), np.int16), 16000),
        (np.zeros(10, np.int16), 0),
    ],
)
def test_speech_rejects_malformed_audio(pcm: np.ndarray, rate: int) -> None:
    with pytest.raises(ValueError, match="Speech"):
        Speech(pcm=pcm, sample_rate=rate, text="x")


def test_piper_implements_the_backend_protocol(piper: PiperSpeech) -> None:
    assert isinstance(piper, SpeechBackend)
    assert piper.name == "piper"
    assert piper.voices() == ("joe",)


async def test_unknown_voice_is_invalid_argument(piper: PiperSpeech) -> None:
    with pytest.raises(InvalidArgument, match="unknown voice 'bob'"):
        await piper.synthesize("Hello.", voice="bob")


@pytest.mark.parametrize("text", ["", "   \n "])
async def test_empty_text_is_invalid_argument(piper: PiperSpeech, text: str) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        await piper.synthesize(text)


async def test_unspeakable_text_is_invalid_argument(piper: PiperSpeech) -> None:
    with pytest.raises(InvalidArgument, match="nothing speakable"):
        await piper.synthesize("...")


async def test_synthesis_gives_audio_with_phoneme_alignment(piper: PiperSpeech) -> None:
    speech = await piper.synthesize("Hello there! How are you?", voice="joe")
    assert speech.sample_rate == 22050
    assert speech.pcm.dtype == np.int16
    assert speech.text == "Hello there! How are you?"
    assert 1000 < speech.duration_ms < 4000
    assert np.abs(speech.pcm).max() > 10000  # Piper normalises: real speech, not silence
    phonemes = [p.phoneme for p in speech.phonemes]
    assert phonemes[0] == "^" and phonemes[-1] == "$"
    assert {"h", "ð", "?"} <= set(phonemes)
    assert phonemes.count("^") == 2  # two sentences, two chunks
    _assert_contiguous(speech.phonemes, speech.duration_ms)


def _assert_contiguous(spans: tuple[PhonemeSpan, ...], duration_ms: int) -> None:
    assert spans[0].start_ms == 0
    for before, after in itertools.pairwise(spans):
        assert after.start_ms == pytest.approx(before.end_ms)
        assert before.end_ms >= before.start_ms
    assert spans[-1].end_ms == pytest.approx(duration_ms, abs=1)


async def test_synthesis_runs_off_the_event_loop(piper: PiperSpeech) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await piper.synthesize("The event loop keeps turning while the voice speaks.")
    task.cancel()
    assert ticks > 3


async def test_concurrent_synthesis_is_serialised_and_correct(piper: PiperSpeech) -> None:
    texts = ["One two three.", "Four five six seven.", "Eight."]
    results = await asyncio.gather(*(piper.synthesize(t) for t in texts))
    assert [r.text for r in results] == texts
    for speech in results:
        _assert_contiguous(speech.phonemes, speech.duration_ms)


async def test_synthesize_loads_the_voice_on_first_use() -> None:
    backend = PiperSpeech()
    speech = await backend.synthesize("Ready.")
    assert speech.duration_ms > 200
