"""The ElevenLabs speech backend against a local fake of its ``with-timestamps`` endpoint.

The fake speaks the documented API: ``xi-api-key`` header, ``output_format`` query parameter,
a JSON body with ``text`` and ``model_id``, and an ``AudioWithTimestampsResponseModel`` answer
(``audio_base64`` + ``alignment`` with ``characters`` and their start and end times in
seconds), or ElevenLabs' ``{"detail": ...}`` error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import av
import grpc
import nats
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from avatarchat import errors
from avatarchat.nats_server import free_port
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_avatar.app import serving
from avatarchat_avatar.backends.speech.elevenlabs import ElevenLabsSpeech
from avatarchat_avatar.config import AvatarConfig, ElevenLabsConfig
from avatarchat_avatar.watch import EventWatcher

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "xi-test-key"
VOICE = "voice-george"
RATE = 22050
CHAR_S = 0.065


def _voice(text: str) -> tuple[np.ndarray, list[float], list[float]]:
    """Audio in which vowels are loud tones, consonants soft noise and spaces silence."""
    rng = np.random.default_rng(len(text))
    chunks, starts, ends = [], [], []
    t = 0.0
    for char in text:
        n = int(CHAR_S * RATE)
        x = np.arange(n) / RATE
        if char.lower() in "aeiou":
            chunk = 0.5 * np.sin(2 * np.pi * 180 * x) * np.hanning(n)
        elif char.isalpha():
            chunk = 0.08 * rng.standard_normal(n)
        else:
            chunk = np.zeros(n)
        chunks.append(chunk)
        starts.append(round(t, 3))
        t += CHAR_S
        ends.append(round(t, 3))
    pcm = (np.concatenate(chunks) * 32767).astype("<i2")
    return pcm, starts, ends


def _mp3(pcm: np.ndarray) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            pcm.reshape(1, -1).astype(np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@dataclass
class FakeElevenLabs:
    api_key: str = KEY
    status_override: tuple[int, dict, dict] | None = None
    delay_s: float = 0.0
    requests: list[dict] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/with-timestamps", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(
            {
                "voice": request.match_info["voice_id"],
                "query": dict(request.query),
                "body": body,
                "key": request.headers.get("xi-api-key"),
            }
        )
        if request.headers.get("xi-api-key") != self.api_key:
            return web.json_response(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                status=401,
            )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status_override:
            status, payload, headers = self.status_override
            return web.json_response(payload, status=status, headers=headers)
        if request.match_info["voice_id"] != VOICE:
            return web.json_response(
                {
                    "detail": {
                        "status": "voice_not_found",
                        "message": "A voice with the voice_id was not found.",
                    }
                },
                status=400,
            )
        text = body.get("text")
        if not isinstance(text, str) or not text:
            return web.json_response(
                {
                    "detail": [
                        {
                            "loc": ["body", "text"],
                            "msg": "field required",
                            "type": "value_error.missing",
                        }
                    ]
                },
                status=422,
            )
        pcm, starts, ends = _voice(text)
        fmt = request.query.get("output_format", "mp3_44100_128")
        audio = pcm.tobytes() if fmt == "pcm_22050" else _mp3(pcm)
        return web.json_response(
            {
                "audio_base64": base64.b64encode(audio).decode(),
                "alignment": {
                    "characters": list(text),
                    "character_start_times_seconds": starts,
                    "character_end_times_seconds": ends,
                },
                "normalized_alignment": {
                    "characters": list(text),
                    "character_start_times_seconds": starts,
                    "character_end_times_seconds": ends,
                },
            }
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[tuple[FakeElevenLabs, str]]:
    fake = FakeElevenLabs()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture(autouse=True)
def reset(fake) -> None:
    fake[0].api_key = KEY
    fake[0].status_override = None
    fake[0].delay_s = 0.0
    fake[0].requests.clear()


def config(base_url: str, **overrides) -> ElevenLabsConfig:
    values = {
        "api_key": KEY,
        "base_url": base_url,
        "voices": (VOICE,),
        "model_id": "eleven_flash_v2_5",
        "output_format": "pcm_22050",
        "timeout_s": 10.0,
        **overrides,
    }
    return ElevenLabsConfig(**values)


async def synthesize(cfg: ElevenLabsConfig, text: str, voice: str | None = None):
    async with aiohttp.ClientSession() as session:
        return await ElevenLabsSpeech(cfg, session).synthesize(text, voice)


async def test_pcm_speech_with_character_alignment(fake) -> None:
    server, url = fake
    speech = await synthesize(config(url), "Hi there!")
    assert speech.sample_rate == RATE and speech.pcm.dtype == np.int16
    assert "".join(c.char for c in speech.chars) == "Hi there!"
    assert speech.chars[1].start_ms == pytest.approx(65.0)
    assert speech.chars[-1].end_ms == pytest.approx(9 * 65.0)
    assert speech.duration_ms == pytest.approx(9 * 65, abs=1)
    request = server.requests[-1]
    assert request["voice"] == VOICE and request["key"] == KEY
    assert request["query"] == {"output_format": "pcm_22050"}
    assert request["body"] == {"text": "Hi there!", "model_id": "eleven_flash_v2_5"}


async def test_mp3_speech_is_decoded_with_pyav(fake) -> None:
    _, url = fake
    speech = await synthesize(config(url, output_format="mp3_22050_32"), "Hello again")
    assert speech.sample_rate == RATE and speech.pcm.dtype == np.int16
    # MP3 adds encoder delay and padding, less than ~3 frames of 1152 samples
    assert abs(speech.duration_ms - 11 * 65) < 3 * 1152 / RATE * 1000
    assert np.abs(speech.pcm.astype(np.float32)).max() > 5000  # real signal, not silence


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        (
            (
                429,
                {
                    "detail": {
                        "status": "too_many_concurrent_requests",
                        "message": "Too many concurrent requests",
                    }
                },
                {"Retry-After": "3"},
            ),
            errors.ResourceExhausted,
            "Too many concurrent requests",
        ),
        (
            (
                422,
                {
                    "detail": [
                        {"loc": ["body", "model_id"], "msg": "invalid model", "type": "value_error"}
                    ]
                },
                {},
            ),
            errors.InvalidArgument,
            "invalid model",
        ),
        ((500, {"detail": "internal"}, {}), errors.Unavailable, "HTTP 500"),
        ((200, {"no_audio": True}, {}), errors.Unavailable, "no audio_base64"),
        ((200, {"audio_base64": "***"}, {}), errors.Unavailable, "not valid base64"),
        (
            (
                200,
                {
                    "audio_base64": base64.b64encode(b"\x00\x01" * 100).decode(),
                    "alignment": {
                        "characters": ["a"],
                        "character_start_times_seconds": [],
                        "character_end_times_seconds": [0.1],
                    },
                },
                {},
            ),
            errors.Unavailable,
            "alignment is malformed",
        ),
    ],
)
async def test_errors_map_to_status_codes(fake, override, error, message) -> None:
    server, url = fake
    server.status_override = override
    with pytest.raises(error, match=message) as caught:
        await synthesize(config(url), "Hello")
    if isinstance(caught.value, errors.ResourceExhausted):
        assert caught.value.retry_after_s == 3


async def test_a_rate_limit_may_ask_to_wait_until_a_date(fake) -> None:
    server, url = fake
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.status_override = (429, {"detail": {"status": "system_busy"}}, {"Retry-After": later})
    with pytest.raises(errors.ResourceExhausted, match="system_busy") as caught:
        await synthesize(config(url), "Hello")
    assert caught.value.retry_after_s is not None and 25 < caught.value.retry_after_s <= 30


async def test_no_answer_in_time_is_deadline_exceeded(fake) -> None:
    server, url = fake
    server.delay_s = 2.0
    with pytest.raises(
        errors.DeadlineExceeded, match=r"within 0.2 s \(AVATARCHAT_ELEVENLABS_TIMEOUT_S"
    ):
        await synthesize(config(url, timeout_s=0.2), "Hello")


async def test_rejected_key_is_unauthenticated_and_not_echoed(fake) -> None:
    _, url = fake
    with pytest.raises(errors.Unauthenticated, match="ELEVENLABS_API_KEY") as caught:
        await synthesize(config(url, api_key="wrong-secret"), "Hello")
    assert "wrong-secret" not in caught.value.message


async def test_unknown_voice_and_unreachable_api(fake) -> None:
    _, url = fake
    with pytest.raises(errors.InvalidArgument, match="unknown ElevenLabs voice"):
        await synthesize(config(url), "Hello", voice="someone-else")
    with pytest.raises(errors.Unavailable, match="could not reach ElevenLabs"):
        await synthesize(config(f"http://127.0.0.1:{free_port()}"), "Hello")


async def test_service_with_elevenlabs_speech(fake, nats_server) -> None:
    """Through the service: speech-ready with visemes from the character alignment, then a
    revoked key turns the next clip into a clip-failed event."""
    server, url = fake
    cfg = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_AVATAR_TTS": "elevenlabs",
            "ELEVENLABS_API_KEY": KEY,
            "AVATARCHAT_ELEVENLABS_VOICE": VOICE,
            "AVATARCHAT_ELEVENLABS_BASE_URL": url,
            "AVATARCHAT_SHUTDOWN_GRACE_S": "1",
        }
    )
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(serving(cfg, host="127.0.0.1"))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.host.port}")
        stack.push_async_callback(channel.close)
        stub = avatar_pb2_grpc.AvatarServiceStub(channel)
        nc = await nats.connect(nats_server.url)
        stack.push_async_callback(nc.close)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GenerateClip(
                avatar_pb2.GenerateClipRequest(
                    session_id="el", turn_id="t", seq=1, text="Hi", voice="joe"
                ),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        async with EventWatcher(nc, "el") as watcher:
            ok = await stub.GenerateClip(
                avatar_pb2.GenerateClipRequest(
                    session_id="el", turn_id="t", seq=1, text="Hello, how are you today?"
                ),
                timeout=5,
            )
            done = await watcher.wait_terminal(ok.clip_id, timeout_s=60)
            server.api_key = "rotated"
            bad = await stub.GenerateClip(
                avatar_pb2.GenerateClipRequest(
                    session_id="el", turn_id="t", seq=2, text="Are you there?"
                ),
                timeout=5,
            )
            failed = await watcher.wait_terminal(bad.clip_id, timeout_s=60)

    speech = watcher.of_clip(ok.clip_id)[0].event.speech_ready
    assert speech.text == "Hello, how are you today?"
    assert speech.timeline.duration_ms == pytest.approx(25 * 65, abs=1)
    assert {v.viseme for v in speech.timeline.visemes} - {"sil"}, "no mouth shapes"
    assert done.kind == "clip_ready"
    assert failed.kind == "clip_failed"
    assert failed.event.clip_failed.code == "UNAUTHENTICATED"
    assert "ELEVENLABS_API_KEY" in failed.event.clip_failed.reason
    assert [r.kind for r in watcher.of_clip(bad.clip_id)] == ["clip_failed"]
