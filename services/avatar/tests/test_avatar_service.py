"""The avatar service end to end: in-process gRPC, a real nats-server, Piper and the renderer."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import av
import grpc
import nats
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from avatarchat import bus
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_avatar.app import AvatarApp, serving
from avatarchat_avatar.config import AvatarConfig
from avatarchat_avatar.rendering.rig import export_browser_rig
from avatarchat_avatar.watch import EventWatcher

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRAME_MS = 40  # one frame at 25 fps


@dataclass
class Running:
    app: AvatarApp
    stub: avatar_pb2_grpc.AvatarServiceStub
    channel: grpc.aio.Channel
    nc: NATS


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def avatar(nats_server) -> AsyncIterator[Running]:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
    )
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(serving(config, host="127.0.0.1"))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.host.port}")
        stack.push_async_callback(channel.close)
        nc = await nats.connect(nats_server.url)
        stack.push_async_callback(nc.close)
        yield Running(app, avatar_pb2_grpc.AvatarServiceStub(channel), channel, nc)


async def generate(stub, session: str, seq: int, text: str, **extra) -> str:
    response = await stub.GenerateClip(
        avatar_pb2.GenerateClipRequest(
            session_id=session, turn_id=extra.pop("turn", "t1"), seq=seq, text=text, **extra
        ),
        timeout=10,
    )
    return response.clip_id


async def fetch(nc: NATS, name: str) -> bytes:
    store = await nc.jetstream().object_store(bus.CLIPS_BUCKET)
    return (await store.get(name)).data


async def test_health_reports_serving_once_loaded(avatar: Running) -> None:
    stub = health_pb2_grpc.HealthStub(avatar.channel)
    for name in ("", "avatarchat.v1.AvatarService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_clip_end_to_end(avatar: Running) -> None:
    async with EventWatcher(avatar.nc, "e2e") as watcher:
        clip_id = await generate(avatar.stub, "e2e", 1, "Hello there! [smile] Nice to meet you.")
        terminal = await watcher.wait_terminal(clip_id)
    kinds = [r.kind for r in watcher.of_clip(clip_id)]
    assert kinds == ["speech_ready", "clip_ready"], terminal.event
    speech = watcher.of_clip(clip_id)[0].event
    assert (speech.session_id, speech.turn_id, speech.seq) == ("e2e", "t1", 1)
    ready = speech.speech_ready
    assert not ready.audio_url  # the edge decides its URLs
    assert ready.text == "Hello there! Nice to meet you."
    timeline = ready.timeline
    assert timeline.duration_ms > 500 and timeline.visemes and timeline.words
    assert "wave" in {g.gesture for g in timeline.gestures}  # a greeting gets a wave

    wav = await fetch(avatar.nc, bus.clip_object(clip_id, "wav"))
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"

    clip = terminal.event.clip_ready
    assert not clip.video_url
    assert (clip.fps, clip.width, clip.height) == (25, 512, 512)
    assert abs(clip.duration_ms - timeline.duration_ms) <= FRAME_MS

    mp4 = await fetch(avatar.nc, bus.clip_object(clip_id, "mp4"))
    with av.open(io.BytesIO(mp4)) as container:
        video = container.streams.video[0]
        assert container.streams.audio, "the MP4 has no audio track"
        assert float(video.average_rate) == 25
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames * FRAME_MS - timeline.duration_ms) <= FRAME_MS
    with av.open(io.BytesIO(mp4)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    assert abs(samples / rate * 1000 - timeline.duration_ms) <= FRAME_MS + 30  # AAC padding

    got = await avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id=clip_id), timeout=5)
    assert got.status == avatar_pb2.CLIP_STATUS_READY
    assert (got.audio_url, got.video_url) == ("", "")
    assert got.timeline == timeline and got.duration_ms == timeline.duration_ms


async def test_speech_only_publishes_speech_ready_and_no_video(avatar: Running) -> None:
    async with EventWatcher(avatar.nc, "speech-only") as watcher:
        clip_id = await generate(
            avatar.stub, "speech-only", 1, "Just the audio, please.", speech_only=True
        )
        await watcher.wait_for(lambda r: r.event.clip_id == clip_id)
        got = await avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id=clip_id), timeout=5)
    assert [r.kind for r in watcher.of_clip(clip_id)] == ["speech_ready"]
    assert got.status == avatar_pb2.CLIP_STATUS_READY and not got.video_url
    store = await avatar.nc.jetstream().object_store(bus.CLIPS_BUCKET)
    names = {info.name for info in await store.list()}
    assert f"{clip_id}.wav" in names and f"{clip_id}.mp4" not in names


async def test_rig_assets_are_in_the_object_store(avatar: Running) -> None:
    expected = export_browser_rig()
    assert "manifest.json" in expected
    for name, data in expected.items():
        assert await fetch(avatar.nc, bus.rig_object(name)) == data
    manifest = json.loads(expected["manifest.json"])
    assert manifest


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"text": ""}, "text is empty"),
        ({"text": "   \n\t "}, "text is empty"),
        ({"text": "word " * 4096}, "the limit is 1000"),  # 20 KB
        ({"text": "Hello.", "voice": "no-such-voice"}, "unknown voice 'no-such-voice'"),
        ({"text": "[smile] [nod]"}, "nothing to say"),
        ({"text": "Hello.", "session_id": ""}, "session_id is required"),
        ({"text": "Hello.", "session_id": "bad id!"}, "session_id may only contain"),
        ({"text": "Hello.", "turn_id": ""}, "turn_id is required"),
    ],
)
async def test_bad_generate_requests_are_invalid_argument(
    avatar: Running, request_fields: dict, message: str
) -> None:
    fields = {"session_id": "bad-input", "turn_id": "t1", "seq": 1, **request_fields}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await avatar.stub.GenerateClip(avatar_pb2.GenerateClipRequest(**fields), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


async def test_cancel_and_get_bad_inputs(avatar: Running) -> None:
    reply = await avatar.stub.CancelClips(
        avatar_pb2.CancelClipsRequest(session_id="never-seen"), timeout=5
    )
    assert reply.cancelled == 0
    cases = [
        (
            avatar.stub.CancelClips(avatar_pb2.CancelClipsRequest(), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id is required",
        ),
        (
            avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id="nope"), timeout=5),
            grpc.StatusCode.NOT_FOUND,
            "no clip 'nope'",
        ),
        (
            avatar.stub.GetClip(avatar_pb2.GetClipRequest(), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "clip_id is required",
        ),
    ]
    for call, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code
        assert message in (caught.value.details() or "")


async def test_service_still_works_after_bad_requests(avatar: Running) -> None:
    for text in ("", "x" * 20_000):
        with pytest.raises(grpc.aio.AioRpcError):
            await generate(avatar.stub, "after-bad", 1, text)
    async with EventWatcher(avatar.nc, "after-bad") as watcher:
        clip_id = await generate(avatar.stub, "after-bad", 1, "Still here.", speech_only=True)
        received = await watcher.wait_for(lambda r: r.event.clip_id == clip_id)
    assert received.kind == "speech_ready"


async def test_unspeakable_text_ends_in_clip_failed(avatar: Running) -> None:
    """Only the voice can tell that "..." has nothing to say: the clip fails, with a reason."""
    async with EventWatcher(avatar.nc, "unspeakable") as watcher:
        clip_id = await generate(avatar.stub, "unspeakable", 1, "...")
        failed = await watcher.wait_terminal(clip_id)
    assert [r.kind for r in watcher.of_clip(clip_id)] == ["clip_failed"]
    assert failed.event.clip_failed.code == "INVALID_ARGUMENT"
    assert "nothing speakable" in failed.event.clip_failed.reason
    got = await avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id=clip_id), timeout=5)
    assert got.status == avatar_pb2.CLIP_STATUS_FAILED and "nothing speakable" in got.error


async def test_a_broadcast_cancel_stops_the_clip_and_bad_cancels_are_dropped(
    avatar: Running,
) -> None:
    session = "broadcast-cancel"
    async with EventWatcher(avatar.nc, session) as watcher:
        clip_id = await generate(
            avatar.stub, session, 1, "This sentence is long enough to still be rendering. " * 3
        )
        subject = bus.cancel_subject(session)
        await avatar.nc.publish(subject, b"\xff\xfe not a protobuf")
        other = avatar_pb2.CancelClipsRequest(session_id="someone-else").SerializeToString()
        await avatar.nc.publish(subject, other)  # the subject and the body disagree: dropped
        await avatar.nc.publish(
            subject, avatar_pb2.CancelClipsRequest(session_id=session).SerializeToString()
        )
        terminal = await watcher.wait_terminal(clip_id)
    assert terminal.event.clip_failed.code == "CANCELLED", terminal.event
    got = await avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id=clip_id), timeout=5)
    assert got.status == avatar_pb2.CLIP_STATUS_CANCELLED
    # The bad messages cost nothing: the next clip of the session is made as usual.
    async with EventWatcher(avatar.nc, session) as watcher:
        clip_id = await generate(avatar.stub, session, 2, "Still here.", speech_only=True)
        await watcher.wait_for(lambda r: r.event.clip_id == clip_id)
    assert [r.kind for r in watcher.of_clip(clip_id)] == ["speech_ready"]
