"""``StreamTranscribe``: incremental decoding, hands-free end-pointing, and bad streams."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from avatarchat.v1 import stt_pb2
from avatarchat_stt.pipeline import StreamPipeline
from tests import speech_corpus

WER_BAR = 0.25


@pytest.mark.parametrize("fmt", ["pcm", "webm"])
async def test_word_error_rate_streamed_in_chunks(stt, corpus, fmt: str) -> None:
    hypotheses = []
    for _, pcm, rate in corpus:
        data = speech_corpus.encode(pcm, rate, fmt)
        events = await stt.stream(stt.requests(fmt, data, rate=rate, chunk=3200))
        kinds = stt.kinds(events)
        assert kinds[-1] == "final" and kinds.count("final") == 1
        assert set(kinds) <= {"partial", "final"}  # no VAD events without VAD
        assert {e.utterance for e in events} == {0}
        hypotheses.append(events[-1].final.text)
    wer = speech_corpus.word_error_rate([t for t, _, _ in corpus], hypotheses)
    print(f"\nstreamed {fmt} WER {wer:.3f}: {hypotheses}")
    assert wer <= WER_BAR


@pytest.mark.parametrize("fmt", ["wav", "ogg", "mp3"])
async def test_other_formats_stream_too(stt, corpus, fmt: str) -> None:
    picked = corpus[1:4]
    hypotheses = []
    for _, pcm, rate in picked:
        data = speech_corpus.encode(pcm, rate, fmt)
        hypotheses += stt.finals(await stt.stream(stt.requests(fmt, data, chunk=1000)))
    assert speech_corpus.word_error_rate([t for t, _, _ in picked], hypotheses) <= WER_BAR


async def test_partials_come_while_the_client_is_still_sending(stt, corpus) -> None:
    """The client holds back its last chunk until a partial has arrived."""
    text, pcm, rate = corpus[3]
    data = speech_corpus.encode(pcm, rate, "webm")
    partial_seen = asyncio.Event()

    async def requests() -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        messages = stt.requests("webm", data, chunk=2000)
        for message in messages[:-1]:
            yield message
        await asyncio.wait_for(partial_seen.wait(), 60)
        yield messages[-1]

    events = []
    async for event in stt.stub.StreamTranscribe(requests(), timeout=120):
        events.append(event)
        if event.WhichOneof("event") == "partial":
            partial_seen.set()
    partials = [e.partial for e in events if e.WhichOneof("event") == "partial"]
    assert partials and all(p.text for p in partials)
    assert [p.audio_ms for p in partials] == sorted(p.audio_ms for p in partials)
    assert speech_corpus.word_error_rate([text], stt.finals(events)) <= WER_BAR


def hands_free_audio(corpus, first: int, gap_s: float) -> tuple[np.ndarray, list[str]]:
    picked = corpus[first : first + 2]
    clips = [speech_corpus.resample(pcm, rate, 16000) for _, pcm, rate in picked]
    return speech_corpus.join(clips, 16000, gap_s=gap_s, pad_s=0.6), [t for t, _, _ in picked]


@pytest.mark.parametrize("fmt", ["pcm", "webm"])
async def test_hands_free_two_utterances_give_two_finals(stt, corpus, fmt: str) -> None:
    audio, texts = hands_free_audio(corpus, 2, gap_s=1.5)
    data = speech_corpus.encode(audio, 16000, fmt)
    events = await stt.stream(stt.requests(fmt, data, rate=16000, chunk=3200, vad=True))
    per_utterance: dict[int, list[str]] = {}
    for event in events:
        per_utterance.setdefault(event.utterance, []).append(str(event.WhichOneof("event")))
    assert sorted(per_utterance) == [0, 1]
    for kinds in per_utterance.values():
        assert kinds[0] == "speech_started" and kinds[-2:] == ["speech_ended", "final"]
        assert set(kinds[1:-2]) <= {"partial"}
    starts = [e.speech_started.offset_ms for e in events if e.HasField("speech_started")]
    ends = [e.speech_ended.offset_ms for e in events if e.HasField("speech_ended")]
    assert starts[0] < ends[0] < starts[1] < ends[1] <= len(audio) * 1000 // 16000
    assert starts[1] - ends[0] >= 1200  # the 1.5 s pause, give or take Piper's own edges
    finals = [e.final for e in events if e.WhichOneof("event") == "final"]
    assert finals[1].audio_ms == ends[1] - starts[1]
    for text, final in zip(texts, finals, strict=True):
        assert speech_corpus.word_error_rate([text], [final.text]) <= 0.35, (text, final.text)


async def test_hands_free_silence_setting_per_stream(stt, corpus) -> None:
    audio, _ = hands_free_audio(corpus, 2, gap_s=1.5)
    data = audio.tobytes()
    events = await stt.stream(stt.requests("pcm", data, rate=16000, vad=True, silence_ms=2500))
    assert stt.kinds(events).count("final") == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stt.stream(stt.requests("pcm", data, rate=16000, vad=True, silence_ms=20))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "silence_ms must be 90-10000" in (caught.value.details() or "")


async def test_hands_free_stream_ending_mid_speech_still_gives_a_final(stt, corpus) -> None:
    text, pcm, rate = corpus[0]
    audio = np.concatenate([np.zeros(8000, np.int16), speech_corpus.resample(pcm, rate, 16000)])
    events = await stt.stream(stt.requests("pcm", audio.tobytes(), rate=16000, vad=True))
    assert [k for k in stt.kinds(events) if k != "partial"] == [
        "speech_started",
        "speech_ended",
        "final",
    ]
    assert speech_corpus.word_error_rate([text], stt.finals(events)) <= 0.5


async def test_hands_free_silence_only_gives_no_events(stt) -> None:
    silence = np.zeros(3 * 16000, dtype=np.int16).tobytes()
    assert await stt.stream(stt.requests("pcm", silence, rate=16000, vad=True)) == []


async def test_silence_and_empty_streams_give_an_empty_final(stt) -> None:
    silence = np.zeros(2 * 16000, dtype=np.int16)
    for fmt in ("pcm", "webm"):
        events = await stt.stream(
            stt.requests(fmt, speech_corpus.encode(silence, 16000, fmt), rate=16000)
        )
        assert [(e.utterance, e.final.text) for e in events] == [(0, "")]
        events = await stt.stream(stt.requests(fmt, b"", rate=16000))
        assert [(e.WhichOneof("event"), e.final.text, e.final.audio_ms) for e in events] == [
            ("final", "", 0)
        ]


def audio_message(data: bytes) -> stt_pb2.StreamTranscribeRequest:
    return stt_pb2.StreamTranscribeRequest(audio=data)


def config_message(**fields) -> stt_pb2.StreamTranscribeRequest:  # type: ignore[no-untyped-def]
    fmt = stt_pb2.AudioFormat(encoding=stt_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000)
    return stt_pb2.StreamTranscribeRequest(config=stt_pb2.StreamConfig(format=fmt, **fields))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "ended before its config"),
        ([audio_message(b"\x00" * 320)], "first message must carry config"),
        (
            [config_message(), audio_message(b"\x00" * 320), config_message()],
            "only the first message may carry config",
        ),
        (
            [config_message(), stt_pb2.StreamTranscribeRequest()],
            "must carry config (first) or audio",
        ),
        ([config_message(), audio_message(b"\x00" * (1024 * 1024 + 1))], "at most 1048576 bytes"),
        (
            [
                stt_pb2.StreamTranscribeRequest(
                    config=stt_pb2.StreamConfig(
                        format=stt_pb2.AudioFormat(encoding=stt_pb2.AUDIO_ENCODING_PCM_S16LE)
                    )
                )
            ],
            "sample_rate_hz is required",
        ),
        (
            [
                stt_pb2.StreamTranscribeRequest(
                    config=stt_pb2.StreamConfig(
                        format=stt_pb2.AudioFormat(
                            encoding=stt_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=1000
                        )
                    )
                )
            ],
            "must be 8000-48000",
        ),
        ([config_message(language="de")], "is English-only, so it cannot recognise 'de'"),
    ],
    ids=[
        "no-messages",
        "audio-before-config",
        "second-config",
        "empty-message",
        "huge-chunk",
        "rate-0",
        "rate-1000",
        "german",
    ],
)
async def test_malformed_streams_are_invalid_argument(stt, corpus, messages, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stt.stream(messages, deadline_s=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    text, pcm, rate = corpus[0]  # and the service carries on
    events = await stt.stream(stt.requests("pcm", pcm.tobytes(), rate=rate))
    assert speech_corpus.word_error_rate([text], stt.finals(events)) <= 0.5


@pytest.mark.parametrize("fmt", ["wav", "webm", "ogg"])
async def test_random_bytes_in_a_stream_are_invalid_argument(stt, fmt: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stt.stream(stt.requests(fmt, os.urandom(50_000), chunk=5000), deadline_s=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"could not decode the audio as {fmt.upper()}" in (caught.value.details() or "")


async def test_a_wrong_declared_rate_streams_without_crashing(stt, corpus) -> None:
    text, pcm, _ = corpus[1]  # 22050 Hz declared as 8000
    events = await stt.stream(stt.requests("pcm", pcm.tobytes(), rate=8000))
    assert events[-1].final.audio_ms == len(pcm) * 1000 // 8000
    assert events[-1].final.text != speech_corpus.normalise(text)


@pytest.mark.parametrize(("fmt", "chunk"), [("pcm", 64_000), ("webm", 4_000)])
async def test_ten_minutes_is_refused_after_decoding_only_the_first_minute(
    stt, corpus, monkeypatch, fmt: str, chunk: int
) -> None:
    recognised = 0
    put = StreamPipeline.put

    def counting_put(self: StreamPipeline, block: np.ndarray) -> None:
        nonlocal recognised
        recognised += block.size
        put(self, block)

    monkeypatch.setattr(StreamPipeline, "put", counting_put)
    speech = np.concatenate([speech_corpus.resample(pcm, rate, 16000) for _, pcm, rate in corpus])
    piece = np.tile(speech, int(np.ceil(120 * 16000 / speech.size)))[: 120 * 16000]
    data = speech_corpus.encode(piece, 16000, fmt)  # two minutes, sent five times
    messages = stt.requests(fmt, b"", rate=16000)[:1] + [
        audio_message(data[start : start + chunk])
        for _ in range(5)
        for start in range(0, len(data), chunk)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stt.stream(messages)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "longer than the limit of 60 s" in (caught.value.details() or "")
    assert 0 < recognised <= 61 * 16000, f"{recognised / 16000:.0f} s reached the recogniser"


async def test_streams_beyond_the_cap_get_resource_exhausted(start_stt, corpus) -> None:
    client = await start_stt(max_streams=1)
    held = asyncio.Event()
    release = asyncio.Event()

    async def holding() -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        yield config_message()
        held.set()
        await release.wait()

    first = client.stub.StreamTranscribe(holding(), timeout=60)
    reader = asyncio.ensure_future(first.read())
    await held.wait()
    await asyncio.sleep(0.3)  # the server has opened the first stream's recogniser
    _, pcm, rate = corpus[0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.transcribe("pcm", pcm.tobytes(), rate)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AVATARCHAT_STT_MAX_STREAMS" in (caught.value.details() or "")
    assert dict(caught.value.trailing_metadata() or ()).get("retry-after") == "1"
    release.set()
    event = await reader
    assert event.final.text == ""
    assert (await client.transcribe("pcm", pcm.tobytes(), rate)).text  # the slot came back


async def test_a_cancelled_stream_gives_its_recogniser_back(start_stt, corpus) -> None:
    client = await start_stt(max_streams=1)
    _, pcm, rate = corpus[0]
    for _ in range(3):
        call = client.stub.StreamTranscribe(
            iter(client.requests("pcm", pcm.tobytes(), rate=rate)[:3]), timeout=60
        )
        call.cancel()
        await asyncio.sleep(0.2)
    assert (await client.transcribe("pcm", pcm.tobytes(), rate, deadline_s=60)).text


def sphinx_workers() -> list[int]:
    """This process's PocketSphinx worker processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"avatarchat_stt.sphinx_worker" in command:
            found.append(int(entry.name))
    return found


async def test_a_crashed_recogniser_fails_its_call_only(start_stt, corpus) -> None:
    """A PocketSphinx decoder process killed mid-stream: that call is UNAVAILABLE, the next one
    works."""
    stt = await start_stt(backend="pocketsphinx")
    text, pcm, rate = corpus[0]
    data = pcm.tobytes()
    killed = asyncio.Event()

    async def requests() -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        messages = stt.requests("pcm", data, rate=rate, chunk=4410)
        yield messages[0]
        yield messages[1]
        await asyncio.sleep(0.3)
        for pid in sphinx_workers():
            os.kill(pid, signal.SIGKILL)
        killed.set()
        for message in messages[2:]:
            yield message

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stt.stream(requests(), deadline_s=60)
    assert killed.is_set()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "the recogniser process stopped; please retry" in (caught.value.details() or "")
    events = await stt.stream(stt.requests("pcm", data, rate=rate))
    assert speech_corpus.word_error_rate([text], stt.finals(events)) <= 0.5
    assert sphinx_workers(), "a fresh worker took the dead one's place"
