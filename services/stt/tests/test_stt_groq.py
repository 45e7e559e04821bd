"""The groq backend through the real ``groq`` SDK against a local fake Groq.

The fake implements Groq's OpenAI-compatible multipart ``POST /openai/v1/audio/transcriptions``
(fields ``file``, ``model``, ``language``, ``response_format``, ``temperature``; JSON answer
``{"text": …, "x_groq": {"id": …}}``) and its error bodies ``{"error": {"message", "type",
"code"}}``. Instead of recognising speech it describes the WAV it received, so the tests can
check exactly what the service uploaded.
"""

from __future__ import annotations

import asyncio
import io
import socket
import warnings
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web

from avatarchat.config import ConfigError
from avatarchat_stt.config import GroqConfig, SttConfig
from tests import speech_corpus

GOOD_KEY = "gsk_test_key"


@dataclass
class FakeGroq:
    url: str = ""
    max_bytes: int = 25 * 1024 * 1024
    requests: list[dict[str, Any]] = field(default_factory=list)


FAKE = web.AppKey("fake", FakeGroq)


def _error(status: int, message: str, kind: str, code: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def transcriptions(request: web.Request) -> web.Response:
    try:
        return await _transcriptions(request)
    except Exception as exc:  # say what broke, instead of aiohttp's bare 500 page
        return _error(500, f"fake failed: {exc!r}", "internal_server_error", "fake_error")


async def _transcriptions(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
        return _error(401, "Invalid API Key", "invalid_request_error", "invalid_api_key")
    if request.content_length and request.content_length > fake.max_bytes:
        return _error(413, "Request Entity Too Large", "invalid_request_error", "request_too_large")
    with warnings.catch_warnings():
        # aiohttp's own multipart reader calls its deprecated unread_data() when a TCP chunk
        # splits the boundary; that is aiohttp's business, not the code under test
        warnings.filterwarnings("ignore", "unread_data", DeprecationWarning)
        form = await request.post()
    upload = form["file"]
    assert isinstance(upload, web.FileField)
    with upload.file:
        audio = upload.file.read()
    fields = {k: str(v) for k, v in form.items() if k != "file"}
    with wave.open(io.BytesIO(audio)) as wav:
        described = {
            "rate": wav.getframerate(),
            "channels": wav.getnchannels(),
            "ms": wav.getnframes() * 1000 // wav.getframerate(),
        }
    fake.requests.append(
        {**fields, **described, "filename": upload.filename, "content_type": upload.content_type}
    )
    model = fields["model"]
    if model.startswith("limited"):
        return _error(
            429,
            f"Rate limit reached for model `{model}` on audio seconds per hour (ASH).",
            "audio_seconds",
            "rate_limit_exceeded",
            **{"retry-after": "7"},
        )
    if model.startswith("broken"):
        return _error(500, "Internal Server Error", "internal_server_error", "internal_error")
    if model.startswith("refused"):
        return _error(400, "file is empty", "invalid_request_error", "invalid_file")
    if model.startswith("slow"):
        await asyncio.sleep(5)
    text = f" Heard {described['ms'] // 100 / 10} seconds in {fields.get('language', '?')}."
    return web.json_response({"text": text, "x_groq": {"id": "req_fake"}})


@pytest.fixture
async def fake_groq() -> AsyncIterator[FakeGroq]:
    fake = FakeGroq()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[FAKE] = fake
    app.router.add_post("/openai/v1/audio/transcriptions", transcriptions)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def groq(
    fake: FakeGroq,
    model: str = "whisper-large-v3-turbo",
    key: str = GOOD_KEY,
    timeout_s: float = 2.0,
) -> dict[str, Any]:
    config = GroqConfig(
        api_key=key, base_url=fake.url, model=model, timeout_s=timeout_s, max_retries=0
    )
    return {"backend": "groq", "groq": config}


@pytest.fixture
def speech(corpus) -> tuple[np.ndarray, int]:
    _, pcm, rate = corpus[0]
    return pcm, rate


async def test_transcribe_uploads_16khz_mono_wav_with_the_language(
    start_stt, fake_groq, speech
) -> None:
    client = await start_stt(**groq(fake_groq))
    pcm, rate = speech
    response = await client.transcribe(
        "webm", speech_corpus.encode(pcm, rate, "webm"), language="en-GB"
    )
    seconds = len(pcm) / rate
    assert response.model == "whisper-large-v3-turbo"
    assert response.text == f"Heard {int(seconds * 10) / 10} seconds in en."
    [sent] = fake_groq.requests
    assert (sent["rate"], sent["channels"]) == (16000, 1)
    assert abs(sent["ms"] - seconds * 1000) < 60
    assert sent["model"] == "whisper-large-v3-turbo"
    assert sent["language"] == "en" and sent["response_format"] == "json"
    assert (sent["filename"], sent["content_type"]) == ("audio.wav", "audio/wav")


async def test_other_languages_are_passed_on(start_stt, fake_groq, speech) -> None:
    client = await start_stt(**groq(fake_groq))
    pcm, rate = speech
    response = await client.transcribe("pcm", pcm.tobytes(), rate, language="fr")
    assert response.text.endswith("in fr.")


async def test_silence_is_not_sent_to_groq(start_stt, fake_groq) -> None:
    client = await start_stt(**groq(fake_groq))
    silence = np.zeros(32000, dtype=np.int16).tobytes()
    assert (await client.transcribe("pcm", silence, 16000)).text == ""
    events = await client.stream(client.requests("pcm", silence, rate=16000))
    assert client.finals(events) == [""]
    assert fake_groq.requests == []


async def test_streaming_buffers_the_utterance_and_transcribes_at_the_end(
    start_stt, fake_groq, speech
) -> None:
    client = await start_stt(**groq(fake_groq))
    pcm, rate = speech
    events = await client.stream(
        client.requests("webm", speech_corpus.encode(pcm, rate, "webm"), chunk=2000)
    )
    assert client.kinds(events) == ["final"]
    assert events[0].final.text.startswith("Heard ")
    assert len(fake_groq.requests) == 1


async def test_hands_free_sends_one_request_per_utterance(start_stt, fake_groq, corpus) -> None:
    client = await start_stt(**groq(fake_groq))
    clips = [speech_corpus.resample(pcm, rate, 16000) for _, pcm, rate in corpus[:2]]
    audio = speech_corpus.join(clips, 16000, gap_s=1.5, pad_s=0.5)
    events = await client.stream(client.requests("pcm", audio.tobytes(), rate=16000, vad=True))
    assert [k for k in client.kinds(events)] == [
        "speech_started",
        "speech_ended",
        "final",
        "speech_started",
        "speech_ended",
        "final",
    ]
    assert [e.utterance for e in events if e.HasField("final")] == [0, 1]
    assert len(fake_groq.requests) == 2
    for clip, sent in zip(clips, fake_groq.requests, strict=True):
        # the utterance, its pre-roll and the trailing silence that ended it
        assert len(clip) / 16 - 300 < sent["ms"] < len(clip) / 16 + 1200


@pytest.mark.parametrize(
    ("settings", "code", "message"),
    [
        ({"key": "gsk_wrong"}, grpc.StatusCode.UNAUTHENTICATED, "Invalid API Key"),
        ({"model": "limited-whisper"}, grpc.StatusCode.RESOURCE_EXHAUSTED, "Rate limit reached"),
        ({"model": "broken-whisper"}, grpc.StatusCode.UNAVAILABLE, "HTTP 500"),
        (
            {"model": "slow-whisper", "timeout_s": 1.0},
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "did not answer in time",
        ),
    ],
    ids=["401", "429", "500", "timeout"],
)
async def test_provider_errors_become_status_codes(
    start_stt, fake_groq, speech, settings: dict[str, Any], code: grpc.StatusCode, message: str
) -> None:
    client = await start_stt(**groq(fake_groq, **settings))
    pcm, rate = speech
    for attempt in ("unary", "stream"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if attempt == "unary":
                await client.transcribe("pcm", pcm.tobytes(), rate)
            else:
                await client.stream(client.requests("pcm", pcm.tobytes(), rate=rate))
        assert caught.value.code() == code, attempt
        assert message in (caught.value.details() or ""), attempt
        assert GOOD_KEY not in (caught.value.details() or "")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert dict(caught.value.trailing_metadata() or ()).get("retry-after") == "7"


async def test_too_large_for_groq_is_invalid_argument(start_stt, fake_groq, speech) -> None:
    fake_groq.max_bytes = 20_000
    client = await start_stt(**groq(fake_groq))
    pcm, rate = speech
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.transcribe("pcm", pcm.tobytes(), rate)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "too large for Groq: Request Entity Too Large" in (caught.value.details() or "")


async def test_a_refused_recording_is_invalid_and_an_unreachable_groq_unavailable(
    start_stt, fake_groq, speech
) -> None:
    pcm, rate = speech
    client = await start_stt(**groq(fake_groq, model="refused-whisper"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.transcribe("pcm", pcm.tobytes(), rate)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Groq could not transcribe the audio: file is empty" in (caught.value.details() or "")

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = GroqConfig(api_key=GOOD_KEY, base_url=dead, model="m", timeout_s=2, max_retries=0)
    client = await start_stt(backend="groq", groq=config)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.transcribe("pcm", pcm.tobytes(), rate)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    details = caught.value.details() or ""
    assert f"could not reach Groq at {dead}" in details
    assert "AVATARCHAT_GROQ_BASE_URL" in details


def test_groq_needs_a_key_and_an_http_url() -> None:
    with pytest.raises(ConfigError, match="GROQ_API_KEY is required"):
        SttConfig.from_env({"AVATARCHAT_STT_BACKEND": "groq"})
    with pytest.raises(ConfigError, match="AVATARCHAT_GROQ_BASE_URL"):
        SttConfig.from_env(
            {
                "AVATARCHAT_STT_BACKEND": "groq",
                "GROQ_API_KEY": "k",
                "AVATARCHAT_GROQ_BASE_URL": "api.groq.com",
            }
        )
    config = SttConfig.from_env({"AVATARCHAT_STT_BACKEND": "groq", "GROQ_API_KEY": "gsk_secret"})
    assert config.groq is not None and config.groq.model == "whisper-large-v3-turbo"
    assert "gsk_secret" not in repr(config)
