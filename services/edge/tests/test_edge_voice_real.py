"""Real speech through the socket: Piper-synthesised sentences, decoded by the real stt service
(PocketSphinx) while they stream, as raw PCM and as WebM/Opus; hands-free turns with the real
VAD; barge-in; and bad audio. The llm behind the edge is the scripted one: what is under test
here is the voice path, and every transcript must still get its reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from avatarchat.config import RuntimeConfig
from avatarchat.grpc_server import GrpcHost
from avatarchat.nats_server import free_port
from avatarchat_stt.backends import create_backend
from avatarchat_stt.config import SttConfig
from avatarchat_stt.server import SERVICE_NAME, SttServicer, register
from tests import speech_corpus

CHUNK_BYTES = 16 * 1024
WER_BAR = 0.25


@pytest.fixture
async def real_stt() -> AsyncIterator[str]:
    config = dataclasses.replace(SttConfig(runtime=RuntimeConfig.from_env({})), port=free_port())
    backend = create_backend(config)
    host = GrpcHost(
        port=config.port,
        service_names=[SERVICE_NAME],
        register=register(SttServicer(config, backend)),
        host="127.0.0.1",
    )
    await host.start()
    try:
        await backend.load()
        await host.set_serving(True)
        yield f"127.0.0.1:{host.port}"
    finally:
        await host.stop(0)
        await backend.aclose()


@pytest.fixture
async def voice_edge(make_edge: Any, llm: Any, real_stt: str) -> TestClient:
    return await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_STT_ADDR": real_stt})


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, np.ndarray, int]]:
    return [(text, *speech_corpus.synthesize(text)) for text in speech_corpus.sentences()[:10]]


async def send_audio(ws: Any, data: bytes) -> None:
    for start in range(0, len(data), CHUNK_BYTES):
        await ws.send_bytes(data[start : start + CHUNK_BYTES])


@pytest.mark.parametrize("fmt", ["pcm", "webm"])
async def test_spoken_sentences_become_turns(
    voice_edge: TestClient, corpus: list[tuple[str, np.ndarray, int]], helpers: Any, fmt: str
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    transcripts = []
    for _text, pcm, rate in corpus:
        start: dict[str, Any] = {"type": "audio.start", "format": "pcm_s16le", "sample_rate": rate}
        if fmt == "webm":
            start = {"type": "audio.start", "format": "webm"}
        await ws.send_json(start)
        await send_audio(ws, speech_corpus.encode(pcm, rate, fmt))
        await ws.send_json({"type": "audio.end"})
        frames = await helpers.until(ws, "reply.done", within=120)
        assert all(f["type"] != "error" for f in frames), frames
        final = next(f for f in frames if f["type"] == "transcript.final")
        assert final["turn_id"] == frames[-1]["turn_id"]  # the transcript got its reply
        transcripts.append(final["text"])
    wer = speech_corpus.word_error_rate([text for text, _, _ in corpus], transcripts)
    assert wer <= WER_BAR, f"WER {wer:.2f} over {len(corpus)} sentences: {transcripts}"
    await ws.close()


async def test_hands_free_two_utterances_two_turns(
    voice_edge: TestClient, corpus: list[tuple[str, np.ndarray, int]], llm: Any, helpers: Any
) -> None:
    (_, first, rate), (_, second, _) = corpus[4], corpus[8]
    gap = speech_corpus.silence(1.5, rate)
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json(
        {"type": "audio.start", "format": "pcm_s16le", "sample_rate": rate, "mode": "hands-free"}
    )
    # One continuous stream: speech, silence, speech, silence. The second utterance is sent
    # once the first has been answered, as a person would speak it after hearing the answer.
    await send_audio(ws, speech_corpus.encode(np.concatenate([gap, first, gap]), rate, "pcm"))
    frames = await helpers.until(ws, "reply.done", within=60)
    await send_audio(ws, speech_corpus.encode(np.concatenate([second, gap]), rate, "pcm"))
    frames += await helpers.until(ws, "reply.done", within=60)
    await ws.send_json({"type": "audio.end"})
    finals = [f for f in frames if f["type"] == "transcript.final" and f["text"]]
    assert [f["utterance"] for f in finals] == [0, 1]
    assert [f["type"] for f in frames].count("speech.start") == 2
    assert [f["type"] for f in frames].count("speech.end") == 2
    assert "reply.interrupted" not in [f["type"] for f in frames]
    assert [r.text for r in llm.servicer.requests] == [f["text"] for f in finals]
    await ws.close()


async def test_speaking_during_a_reply_interrupts_it(
    voice_edge: TestClient, corpus: list[tuple[str, np.ndarray, int]], llm: Any, helpers: Any
) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "text", "text": "tell me everything"})
    talking = (await helpers.until(ws, "reply.delta"))[-1]
    _, pcm, rate = corpus[0]
    await ws.send_json(
        {"type": "audio.start", "format": "pcm_s16le", "sample_rate": rate, "mode": "hands-free"}
    )
    await send_audio(ws, speech_corpus.encode(speech_corpus.join([pcm], rate), rate, "pcm"))
    frames = await helpers.until(ws, "reply.interrupted", within=60)
    assert frames[-1]["turn_id"] == talking["turn_id"]
    assert "speech.start" in [f["type"] for f in frames]
    llm.servicer.hold = None
    await ws.send_json({"type": "audio.end"})
    await helpers.until(ws, "reply.done", within=120)
    await ws.close()


@pytest.mark.parametrize(
    ("start", "audio", "code"),
    [
        ({"format": "wav"}, np.random.default_rng(7).bytes(64_000), "bad_audio"),
        ({"format": "wav"}, b"RIFF\x24\x00\x00\x00WAVEfmt ", "bad_audio"),
        ({"format": "webm"}, b"\x1a\x45\xdf\xa3" + bytes(5000), "bad_audio"),
        # ten minutes of 8 kHz audio: more than the stt service accepts in one go
        ({"format": "pcm_s16le", "sample_rate": 8000}, bytes(8000 * 2 * 600), "bad_audio"),
    ],
    ids=["random-bytes-as-wav", "truncated-wav-header", "garbage-webm", "ten-minutes"],
)
async def test_bad_audio(
    voice_edge: TestClient, helpers: Any, start: dict[str, Any], audio: bytes, code: str
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "audio.start", **start})
    await send_audio_in_big_chunks(ws, audio)
    await ws.send_json({"type": "audio.end"})
    err = (await helpers.until(ws, "error", within=60))[-1]
    assert err["code"] in (code, "audio_too_long"), err
    assert len(err["message"]) > 20
    await ws.send_json({"type": "text", "text": "let me type then"})
    frames = await helpers.until(ws, "reply.done", within=30)
    assert all(f["type"] != "error" for f in frames), frames
    await ws.close()


async def send_audio_in_big_chunks(ws: Any, data: bytes) -> None:
    for start in range(0, len(data), 256 * 1024):
        await ws.send_bytes(data[start : start + 256 * 1024])
