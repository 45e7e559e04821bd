"""Declared formats, limits and PyAV decoding, whole and incremental."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from avatarchat.errors import InvalidArgument
from avatarchat.v1 import stt_pb2
from avatarchat_stt.audio_format import TARGET_RATE, AudioSpec, Limits, spec_from_proto
from avatarchat_stt.decoding import ContainerDecoder, PcmDecoder, decode_all
from tests import speech_corpus

LIMITS = Limits(max_bytes=15 * 1024 * 1024, max_seconds=60)
CONTAINERS = ["wav", "webm", "ogg", "mp3"]


def spec(fmt: str, rate: int = 0) -> AudioSpec:
    encoding = {
        "pcm": stt_pb2.AUDIO_ENCODING_PCM_S16LE,
        "wav": stt_pb2.AUDIO_ENCODING_WAV,
        "webm": stt_pb2.AUDIO_ENCODING_WEBM,
        "ogg": stt_pb2.AUDIO_ENCODING_OGG,
        "mp3": stt_pb2.AUDIO_ENCODING_MP3,
    }[fmt]
    return spec_from_proto(stt_pb2.AudioFormat(encoding=encoding, sample_rate_hz=rate))


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    return speech_corpus.synthesize(speech_corpus.sentences()[0])


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (0, "sample_rate_hz is required"),
        (1000, "must be 8000-48000"),
        (96000, "must be 8000-48000"),
    ],
)
def test_pcm_needs_a_plausible_rate(rate: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec("pcm", rate)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_pcm_rates_in_range_are_accepted(rate: int) -> None:
    assert spec("pcm", rate).sample_rate == rate


def test_unspecified_encoding_is_rejected_with_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="PCM_S16LE, WAV, WEBM, OGG or MP3"):
        spec_from_proto(stt_pb2.AudioFormat())
    with pytest.raises(InvalidArgument, match="not supported"):
        spec_from_proto(stt_pb2.AudioFormat(encoding=99))  # type: ignore[arg-type]


def test_containers_ignore_the_declared_rate() -> None:
    assert spec("webm", 1234).demuxer == "matroska"


@pytest.mark.parametrize("fmt", ["pcm", *CONTAINERS])
def test_every_format_decodes_to_16khz_mono_of_the_same_length(
    fmt: str, speech: tuple[np.ndarray, int]
) -> None:
    pcm, rate = speech
    data = speech_corpus.encode(pcm, rate, fmt)
    out = decode_all(data, spec(fmt, rate), LIMITS)
    assert out.dtype == np.int16
    expected = len(pcm) * TARGET_RATE / rate
    # Opus and MP3 add a few ms of codec delay/padding
    assert abs(out.size - expected) < 0.06 * TARGET_RATE, (fmt, out.size, expected)
    assert np.abs(out).max() > 5000  # it is the speech, not silence


def test_stereo_wav_is_mixed_down(speech: tuple[np.ndarray, int]) -> None:
    import io
    import wave

    pcm, rate = speech
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm, 2).tobytes())
    decoded = decode_all(buffer.getvalue(), spec("wav"), LIMITS)
    assert abs(decoded.size - len(pcm) * TARGET_RATE / rate) < 160


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("wav", os.urandom(4000)),
        ("wav", b"RIFF\x24\x08\x00\x00WAVEfmt "),  # a header cut short
        ("webm", os.urandom(4000)),
        ("ogg", b"OggS" + os.urandom(200)),
        ("mp3", os.urandom(50)),
    ],
    ids=["random-wav", "truncated-wav-header", "random-webm", "broken-ogg", "random-mp3"],
)
def test_corrupt_audio_names_the_format_and_what_to_check(fmt: str, data: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_all(data, spec(fmt), LIMITS)
    message = caught.value.message
    assert f"could not decode the audio as {fmt.upper()}" in message or "no audio" in message
    assert "check the declared format" in message or "no audio" in message


def test_webm_declared_as_ogg_is_an_error_not_a_crash(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    with pytest.raises(InvalidArgument, match="as OGG"):
        decode_all(speech_corpus.encode(pcm, rate, "webm"), spec("ogg"), LIMITS)


def test_limits_are_checked_before_decoding_everything(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    small = Limits(max_bytes=1 << 30, max_seconds=1.0)
    # raw PCM by its length, WAV and MP3 by their declared duration, live WebM (no duration,
    # like MediaRecorder's) once decoding passes the limit
    for fmt in ("pcm", "wav", "mp3", "webm"):
        with pytest.raises(InvalidArgument, match="longer than the limit of 1 s"):
            decode_all(speech_corpus.encode(pcm, rate, fmt), spec(fmt, rate), small)
    tiny = Limits(max_bytes=1000, max_seconds=60)
    with pytest.raises(InvalidArgument, match="larger than the limit of 1000 bytes"):
        decode_all(speech_corpus.encode(pcm, rate, "pcm"), spec("pcm", rate), tiny)


def test_pcm_decoder_handles_odd_chunk_sizes(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    data = speech_corpus.encode(pcm, rate, "pcm")
    blocks: list[np.ndarray] = []
    done: list[BaseException | None] = []
    decoder = PcmDecoder(spec("pcm", rate), LIMITS, blocks.append, done.append)
    for start in range(0, len(data), 777):  # splits samples across chunks
        decoder.feed(data[start : start + 777])
    decoder.close()
    whole = decode_all(data, spec("pcm", rate), LIMITS)
    assert done == [None]
    assert np.array_equal(np.concatenate(blocks), whole)


@pytest.mark.parametrize("fmt", CONTAINERS)
def test_containers_decode_while_chunks_arrive(fmt: str, speech: tuple[np.ndarray, int]) -> None:
    """Most of the audio comes out before the input is closed."""
    pcm, rate = speech
    data = speech_corpus.encode(pcm, rate, fmt)
    received = 0
    lock = threading.Lock()
    finished = threading.Event()
    outcome: list[BaseException | None] = []

    def on_audio(block: np.ndarray) -> None:
        nonlocal received
        with lock:
            received += block.size

    def on_done(error: BaseException | None) -> None:
        outcome.append(error)
        finished.set()

    decoder = ContainerDecoder(spec(fmt), LIMITS, on_audio, on_done)
    decoder.start()
    for start in range(0, len(data), 2048):
        decoder.feed(data[start : start + 2048])
    total = len(pcm) * TARGET_RATE / rate
    for _ in range(200):  # wait (up to 10 s) for the decoder to catch up, without closing
        with lock:
            if received > 0.8 * total:
                break
        time.sleep(0.05)
    with lock:
        before_close = received
    decoder.close()
    assert finished.wait(30)
    assert outcome == [None]
    assert before_close > 0.8 * total, f"{fmt}: only {before_close}/{total} samples before close"
    assert received >= 0.98 * total


def test_container_decoder_reports_garbage_through_on_done() -> None:
    outcome: list[BaseException | None] = []
    finished = threading.Event()
    decoder = ContainerDecoder(
        spec("webm"), LIMITS, lambda _: None, lambda e: (outcome.append(e), finished.set())
    )
    decoder.start()
    decoder.feed(os.urandom(10_000))
    decoder.close()
    assert finished.wait(30)
    assert isinstance(outcome[0], InvalidArgument)


def test_aborting_a_waiting_container_decoder_ends_its_thread_silently() -> None:
    outcome: list[BaseException | None] = []
    decoder = ContainerDecoder(spec("webm"), LIMITS, lambda _: None, outcome.append)
    decoder.start()
    decoder.feed(b"\x1a\x45\xdf\xa3")  # the start of a header, then nothing
    decoder.abort()
    decoder._thread.join(10)
    assert not decoder._thread.is_alive()
    assert outcome == []
