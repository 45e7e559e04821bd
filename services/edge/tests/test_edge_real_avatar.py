"""The edge with the real avatar service (Piper, lip-sync, renderer) and a real nats-server:
sentences become clips, their events become clip frames, and the media is served by the edge."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import av
import pytest

from avatarchat_avatar.app import serving
from avatarchat_avatar.config import AvatarConfig


@pytest.fixture
async def real_avatar(nats_server: Any) -> AsyncIterator[str]:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
    )
    async with serving(config, host="127.0.0.1") as app:
        yield f"127.0.0.1:{app.host.port}"


async def test_a_turn_with_the_real_avatar(
    make_edge: Any, llm: Any, real_avatar: str, nats_server: Any, helpers: Any
) -> None:
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": real_avatar,
            "AVATARCHAT_NATS_URL": nats_server.url,
        }
    )
    ws, hello = await helpers.connect(edge)
    assert hello["avatar"] is True
    await ws.send_json({"type": "text", "text": "hi"})
    frames = await helpers.until(ws, "reply.done", within=60)
    done = frames[-1]
    assert done["clips"] == 2  # "Hello there." and "Nice to meet you!"
    clip_frames = [f for f in frames if f["type"].startswith("clip.")]
    while sum(f["type"] in ("clip.ready", "clip.failed") for f in clip_frames) < 2:
        clip_frames.append(await helpers.receive(ws, within=60))
    assert [f["type"] for f in clip_frames if f["type"] == "clip.failed"] == []
    speech = [f for f in clip_frames if f["type"] == "clip.speech"]
    ready = [f for f in clip_frames if f["type"] == "clip.ready"]
    assert [f["seq"] for f in speech] == [1, 2] and [f["seq"] for f in ready] == [1, 2]
    assert {f["turn_id"] for f in clip_frames} == {done["turn_id"]}
    first = speech[0]
    assert first["text"] == "Hello there."
    timeline = first["timeline"]
    assert timeline["duration_ms"] > 300 and timeline["visemes"] and timeline["words"]
    assert {"start_ms", "end_ms", "viseme", "weight"} <= set(timeline["visemes"][0])

    audio = await edge.get(first["audio_url"])
    assert audio.status == 200 and audio.headers["Content-Type"] == "audio/wav"
    wav = await audio.read()
    assert wav[:4] == b"RIFF"
    head = await edge.get(first["audio_url"], headers={"Range": "bytes=0-3"})
    assert head.status == 206 and await head.read() == b"RIFF"

    video = await edge.get(ready[0]["video_url"])
    assert video.status == 200 and video.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(await video.read())) as container:
        assert container.streams.video and container.streams.audio
        seconds = float(container.duration or 0) / av.time_base
    assert abs(seconds * 1000 - ready[0]["duration_ms"]) < 200

    manifest = await edge.get("/rig/manifest.json")
    assert manifest.status == 200
    assert await manifest.json()
    await ws.close()
