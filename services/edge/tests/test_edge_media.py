"""/clips and /rig served from the NATS object store, with HTTP range requests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient
from nats.js.api import ObjectMeta
from nats.js.object_store import ObjectStore

from avatarchat import bus

WAV = b"RIFF" + os.urandom(300_000)  # bigger than one object-store chunk
MP4 = os.urandom(5000)


@pytest.fixture
async def store(nats_server: Any) -> AsyncIterator[ObjectStore]:
    nc = await nats.connect(nats_server.url)
    obs = await bus.ensure_clips_store(nc.jetstream(), bus.Retention())
    await obs.put(
        "clip42.wav",
        WAV,
        meta=ObjectMeta(name="clip42.wav", headers={"Content-Type": ["audio/wav"]}),
    )
    await obs.put("clip42.mp4", MP4)
    await obs.put("rig/manifest.json", b'{"layers": []}')
    await obs.put("rig/mouth/aa.png", b"\x89PNG...")
    yield obs
    await nc.drain()


@pytest.fixture
async def media_edge(make_edge: Any, nats_server: Any, store: ObjectStore) -> TestClient:
    edge = await make_edge({"AVATARCHAT_EDGE_NATS": "on", "AVATARCHAT_NATS_URL": nats_server.url})
    for _ in range(200):  # until NATS is connected
        if (await edge.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    return edge


async def test_whole_clip(media_edge: TestClient) -> None:
    response = await media_edge.get("/clips/clip42.wav")
    assert response.status == 200
    assert await response.read() == WAV
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(WAV))
    assert response.headers["ETag"].startswith('"SHA-256=')
    video = await media_edge.get("/clips/clip42.mp4")
    assert video.headers["Content-Type"] == "video/mp4"
    assert await video.read() == MP4


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, len(WAV) - 1),
        ("bytes=-500", len(WAV) - 500, len(WAV) - 1),
    ],
)
async def test_range_requests(media_edge: TestClient, header: str, start: int, end: int) -> None:
    response = await media_edge.get("/clips/clip42.wav", headers={"Range": header})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(WAV)}"
    assert await response.read() == WAV[start : end + 1]


async def test_unsatisfiable_range(media_edge: TestClient) -> None:
    response = await media_edge.get("/clips/clip42.mp4", headers={"Range": "bytes=99999-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(MP4)}"


async def test_conditional_requests(media_edge: TestClient) -> None:
    etag = (await media_edge.get("/clips/clip42.mp4")).headers["ETag"]
    cached = await media_edge.get("/clips/clip42.mp4", headers={"If-None-Match": etag})
    assert cached.status == 304
    stale = await media_edge.get(
        "/clips/clip42.mp4", headers={"Range": "bytes=0-9", "If-Range": '"old"'}
    )
    assert stale.status == 200 and await stale.read() == MP4


async def test_head(media_edge: TestClient) -> None:
    response = await media_edge.head("/clips/clip42.wav")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(WAV))


async def test_rig_assets(media_edge: TestClient) -> None:
    manifest = await media_edge.get("/rig/manifest.json")
    assert manifest.status == 200 and await manifest.json() == {"layers": []}
    assert manifest.headers["Content-Type"] == "application/json"
    png = await media_edge.get("/rig/mouth/aa.png")
    assert png.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/clips/nope.wav",
        "/clips/clip42.exe",
        "/clips/..%2Fsecret.wav",
        "/clips/a.b.wav",
        "/rig/nope.png",
        "/rig/../clip42.wav",
        "/rig/.hidden",
        "/rig/a//b",
    ],
)
async def test_missing_or_invalid_names(media_edge: TestClient, path: str) -> None:
    response = await media_edge.get(path)
    assert response.status == 404


async def test_store_unreachable(make_edge: Any) -> None:
    from avatarchat.nats_server import free_port

    edge = await make_edge(
        {"AVATARCHAT_EDGE_NATS": "on", "AVATARCHAT_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    )
    response = await edge.get("/clips/clip42.wav")
    assert response.status == 503


async def test_without_nats(make_edge: Any) -> None:
    edge = await make_edge({"AVATARCHAT_EDGE_NATS": "off"})
    assert (await edge.get("/clips/clip42.wav")).status == 404
