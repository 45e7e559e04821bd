"""The D-ID video backend against a local fake of D-ID's talks API.

The fake follows the documented API:

- ``POST /audios`` (Basic auth, multipart/form-data with the file in field ``audio``, an audio
  or video mime type, an optional filename of up to 50 ``[A-Za-z0-9._-]`` characters) stores
  the file and answers with its ``url`` (``s3://…``), ``id`` and ``duration`` in seconds. Real
  D-ID keeps a 16 kHz WAV copy; the fake keeps the bytes it received, so a test can compare
  them with the speech we synthesised.
- ``POST /talks`` (``source_url`` and a ``script``: ``{"type": "audio", "audio_url"}`` with a
  URL from ``/audios``, or ``{"type": "text", "input"}``) answers 201 with ``{"id", "object":
  "talk", "status": "created"}``.
- ``GET /talks/{id}`` moves through ``created`` → ``started`` → ``done`` (with ``result_url``
  and ``duration``), or ends in ``error`` / ``rejected``.
- Errors are ``{"kind", "description"}`` bodies with 400, 401, 402 (insufficient credits) and
  429.
"""

from __future__ import annotations

import io
import itertools
import re
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aiohttp
import av
import grpc
import nats
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from avatarchat import bus, errors
from avatarchat.nats_server import free_port
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc, events_pb2
from avatarchat_avatar.app import serving
from avatarchat_avatar.backends.video.did import DidVideo
from avatarchat_avatar.config import AvatarConfig, DidConfig
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.watch import EventWatcher

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "dGVzdEBleGFtcGxlLm9yZw==:s3cret"
SOURCE = "https://example.org/presenter.png"


def _talking_head_mp4(seconds: float = 1.2) -> bytes:
    """A small real MP4 (H.264 + AAC), like the one D-ID's result_url serves."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(round(seconds * 25)):
            image = np.full((64, 64, 3), (i * 7) % 255, dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        tone = (np.sin(np.arange(int(16000 * seconds)) / 10) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return out.getvalue()


MP4 = _talking_head_mp4()


@dataclass
class FakeDid:
    base_url: str = ""
    # ok | error | rejected | stuck | 401 | 402 | 429 | poll-429-once | upload-400 | upload-no-url
    mode: str = "ok"
    talks: dict[str, dict] = field(default_factory=dict)
    created: list[dict] = field(default_factory=list)
    audios: dict[str, bytes] = field(default_factory=dict)  # url -> the bytes uploaded
    polls: int = 0
    download_auth: list[str | None] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/audios", self.upload)
        app.router.add_post("/talks", self.create)
        app.router.add_get("/talks/{talk_id}", self.get)
        app.router.add_get("/results/{name}", self.result)
        return app

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Basic {KEY}"

    async def upload(self, request: web.Request) -> web.Response:
        if not self._authorised(request) or self.mode == "401":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if not request.content_type.startswith("multipart/form-data"):
            return _validation_error("the audio must be sent as multipart/form-data")
        form = await request.post()
        audio = form.get("audio")
        if not isinstance(audio, web.FileField):
            return _validation_error("the form has no audio file")
        if not audio.content_type.startswith(("audio/", "video/")):
            return _validation_error(f"unsupported mime type {audio.content_type}")
        if audio.filename and not re.fullmatch(r"[A-Za-z0-9._-]{1,50}", audio.filename):
            return _validation_error("invalid filename")
        if self.mode == "upload-400":
            return _validation_error("the audio is too long")
        data = audio.file.read()
        with wave.open(io.BytesIO(data)) as wav:
            duration = wav.getnframes() / wav.getframerate()
        audio_id = f"aud_{next(self._ids)}"
        url = f"s3://d-id-audios-prod/test/{audio_id}/{audio.filename or 'audio.wav'}"
        self.audios[url] = data
        answer = {"id": audio_id, "duration": duration, "moderation_metadata": {}}
        if self.mode != "upload-no-url":
            answer["url"] = url
        return web.json_response(answer, status=201)

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorised(request) or self.mode == "401":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if self.mode == "402":
            return web.json_response(
                {"kind": "InsufficientCreditsError", "description": "not enough credits"},
                status=402,
            )
        if self.mode == "429":
            return web.json_response(
                {"kind": "TooManyRequestsError", "description": "Too many requests"},
                status=429,
            )
        body = await request.json()
        script = body.get("script", {})
        if script.get("type") == "audio":
            valid = script.get("audio_url") in self.audios
        else:
            valid = script.get("type") == "text" and bool(script.get("input"))
        if not body.get("source_url") or not valid:
            return _validation_error("Failed to validate script")
        self.created.append(body)
        talk_id = f"tlk_{next(self._ids)}"
        self.talks[talk_id] = {"id": talk_id, "object": "talk", "status": "created", "polls": 0}
        return web.json_response(
            {
                "id": talk_id,
                "object": "talk",
                "created_at": "2026-11-24T10:00:00.000Z",
                "created_by": "test",
                "status": "created",
            },
            status=201,
        )

    async def get(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"message": "Unauthorized"}, status=401)
        talk = self.talks.get(request.match_info["talk_id"])
        if talk is None:
            return web.json_response(
                {"kind": "NotFoundError", "description": "talk not found"}, status=404
            )
        self.polls += 1
        talk["polls"] += 1
        if self.mode == "poll-429-once" and talk["polls"] == 1:
            return web.json_response({"kind": "TooManyRequestsError"}, status=429)
        state = {1: "created", 2: "started"}.get(talk["polls"], "final")
        if state == "final":
            state = {"error": "error", "rejected": "rejected", "stuck": "started"}.get(
                self.mode, "done"
            )
        answer = {"id": talk["id"], "object": "talk", "status": state, "source_url": SOURCE}
        if state == "done":
            answer |= {"result_url": f"{self.base_url}/results/{talk['id']}.mp4", "duration": 1.2}
        elif state in ("error", "rejected"):
            answer["error"] = {"kind": "FaceError", "description": "no face detected"}
        return web.json_response(answer)

    async def result(self, request: web.Request) -> web.Response:
        self.download_auth.append(request.headers.get("Authorization"))
        return web.Response(body=MP4, content_type="video/mp4")


def _validation_error(description: str) -> web.Response:
    return web.json_response({"kind": "ValidationError", "description": description}, status=400)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeDid]:
    fake = FakeDid()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture(autouse=True)
def reset(fake: FakeDid) -> None:
    fake.mode = "ok"
    fake.created.clear()
    fake.audios.clear()
    fake.download_auth.clear()
    fake.polls = 0


def did_config(base_url: str, **overrides) -> DidConfig:
    values = {
        "api_key": KEY,
        "base_url": base_url,
        "source_url": SOURCE,
        "poll_initial_s": 0.01,
        "poll_max_s": 0.05,
        "timeout_s": 10.0,
        **overrides,
    }
    return DidConfig(**values)


def _speech(text: str = "Hello from D-ID.") -> Speech:
    """Half a second of a gliding tone: distinct samples, so a changed byte would show."""
    t = np.arange(11025) / 22050
    pcm = (np.sin(2 * np.pi * (220 + 200 * t) * t) * 12000).astype(np.int16)
    return Speech(pcm=pcm, sample_rate=22050, text=text)


async def render(cfg: DidConfig, speech: Speech | None = None):
    async with aiohttp.ClientSession() as session:
        return await DidVideo(cfg, session).render(speech or _speech(), events_pb2.Timeline())


def _samples(wav_bytes: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


async def test_talk_speaks_our_audio_and_is_polled_and_downloaded(fake: FakeDid) -> None:
    speech = _speech()
    video = await render(did_config(fake.base_url), speech)
    assert video.mp4 == MP4
    assert (video.fps, video.width, video.height) == (25, 64, 64)
    assert video.duration_ms == pytest.approx(1200, abs=40)
    [(audio_url, uploaded)] = fake.audios.items()
    assert fake.created == [
        {
            "source_url": SOURCE,
            "script": {"type": "audio", "audio_url": audio_url},
            "config": {"result_format": "mp4"},
        }
    ]
    assert uploaded == speech.wav_bytes()  # our voice, byte for byte
    rate, samples = _samples(uploaded)
    assert rate == speech.sample_rate and np.array_equal(samples, speech.pcm)
    assert fake.polls == 3  # created, started, done
    assert fake.download_auth == [None]  # the key never goes to the result URL


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("upload-400", errors.InvalidArgument, "uploading the audio: ValidationError"),
        ("upload-no-url", errors.Unavailable, "has no url"),
    ],
)
async def test_a_failed_upload_creates_no_talk(fake: FakeDid, mode, error, message) -> None:
    fake.mode = mode
    with pytest.raises(error, match=message):
        await render(did_config(fake.base_url))
    assert fake.created == []


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("401", errors.Unauthenticated, "DID_API_KEY"),
        ("402", errors.ResourceExhausted, "run out of credits"),
        ("429", errors.ResourceExhausted, "rate limit"),
        ("error", errors.Unavailable, "FaceError: no face detected"),
        ("rejected", errors.InvalidArgument, "rejected the talk"),
    ],
)
async def test_failures_map_to_status_codes(fake: FakeDid, mode, error, message) -> None:
    fake.mode = mode
    with pytest.raises(error, match=message) as caught:
        await render(did_config(fake.base_url))
    assert KEY not in caught.value.message and "s3cret" not in caught.value.message


async def test_rate_limited_poll_is_retried(fake: FakeDid) -> None:
    fake.mode = "poll-429-once"
    video = await render(did_config(fake.base_url))
    assert video.mp4 == MP4


async def test_a_talk_that_never_finishes_times_out(fake: FakeDid) -> None:
    fake.mode = "stuck"
    with pytest.raises(errors.DeadlineExceeded, match="AVATARCHAT_DID_TIMEOUT_S"):
        await render(did_config(fake.base_url, timeout_s=0.3))
    assert fake.polls >= 3


async def test_unreachable_api_is_unavailable() -> None:
    with pytest.raises(errors.Unavailable, match="could not reach D-ID"):
        await render(did_config(f"http://127.0.0.1:{free_port()}"))


async def test_service_with_did_video(fake: FakeDid, nats_server) -> None:
    """Through the service: speech-ready from Piper first, then clip-ready with D-ID's video
    copied into the object store; with no credits left, clip-failed follows speech-ready."""
    cfg = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_AVATAR_VIDEO": "did",
            "DID_API_KEY": KEY,
            "AVATARCHAT_DID_BASE_URL": fake.base_url,
            "AVATARCHAT_DID_SOURCE_URL": SOURCE,
            "AVATARCHAT_DID_POLL_INITIAL_S": "0.02",
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
        async with EventWatcher(nc, "did") as watcher:
            ok = await stub.GenerateClip(
                avatar_pb2.GenerateClipRequest(
                    session_id="did", turn_id="t", seq=1, text="Nice to meet you."
                ),
                timeout=5,
            )
            done = await watcher.wait_terminal(ok.clip_id, timeout_s=60)
            fake.mode = "402"
            broke = await stub.GenerateClip(
                avatar_pb2.GenerateClipRequest(
                    session_id="did", turn_id="t", seq=2, text="One more thing."
                ),
                timeout=5,
            )
            failed = await watcher.wait_terminal(broke.clip_id, timeout_s=60)
        store = await nc.jetstream().object_store(bus.CLIPS_BUCKET)
        stored = (await store.get(bus.clip_object(ok.clip_id, "mp4"))).data
        wav = (await store.get(bus.clip_object(ok.clip_id, "wav"))).data

    assert [r.kind for r in watcher.of_clip(ok.clip_id)] == ["speech_ready", "clip_ready"]
    assert done.event.clip_ready.fps == 25
    assert stored == MP4
    # D-ID was given the very audio that speech-ready announced (clip.speech at the edge).
    assert fake.audios[fake.created[0]["script"]["audio_url"]] == wav
    assert [r.kind for r in watcher.of_clip(broke.clip_id)] == ["speech_ready", "clip_failed"]
    assert failed.event.clip_failed.code == "RESOURCE_EXHAUSTED"
    assert "credits" in failed.event.clip_failed.reason
