"""/clips and /rig served from the NATS object store, with HTTP range and conditional requests.

How many bytes a request reads from the store is measured at the edge's own NATS connection
(``stats["in_bytes"]``), so "a range reads only its chunks" is checked on the wire.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient
from nats.js.api import ObjectMeta
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE as CHUNK
from nats.js.object_store import ObjectStore

from avatarchat import bus
from avatarchat_edge.app import NATS

WAV = b"RIFF" + os.urandom(300_000)  # bigger than one object-store chunk
MP4 = os.urandom(5000)
LONG = os.urandom(8 * CHUNK + 1000)  # nine chunks
OVERHEAD = 8 * 1024  # metadata, consumer set-up and API replies: a small part of one chunk


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
    await obs.put("long.mp4", LONG)
    await obs.put("rig/manifest.json", b'{"layers": []}')
    await obs.put("rig/mouth/aa.png", b"\x89PNG...")
    yield obs
    await nc.drain()


async def connected_edge(make_edge: Any, nats_url: str, **overrides: Any) -> TestClient:
    edge = await make_edge(
        {"AVATARCHAT_EDGE_NATS": "on", "AVATARCHAT_NATS_URL": nats_url}, **overrides
    )
    async with asyncio.timeout(10):
        await edge.app[NATS].client()  # returns once the edge is connected
    return edge


@pytest.fixture
async def media_edge(make_edge: Any, nats_server: Any, store: ObjectStore) -> TestClient:
    return await connected_edge(make_edge, nats_server.url)


@pytest.fixture
async def uncached_edge(make_edge: Any, nats_server: Any, store: ObjectStore) -> TestClient:
    """An edge that keeps nothing in its media cache, so every request reads the store."""
    return await connected_edge(make_edge, nats_server.url, media_cache_bytes=0)


def received(edge: TestClient) -> int:
    """Bytes the edge has read from NATS so far."""
    return int(edge.app[NATS].client_now().stats["in_bytes"])


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
        ("bytes=-999999", 0, len(WAV) - 1),  # a suffix longer than the object: all of it
        ("bytes=200000-999999", 200000, len(WAV) - 1),  # an end past the object: up to its end
        ("BYTES=5-5", 5, 5),
        (f"bytes={CHUNK - 2}-{CHUNK + 1}", CHUNK - 2, CHUNK + 1),  # across two chunks
    ],
)
async def test_range_requests(media_edge: TestClient, header: str, start: int, end: int) -> None:
    response = await media_edge.get("/clips/clip42.wav", headers={"Range": header})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(WAV)}"
    assert await response.read() == WAV[start : end + 1]


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",  # several ranges
        "items=0-1",  # another unit
        "bytes=5-1",  # malformed
        "bytes=a-b",
        "bytes=-",
        "bytes",
    ],
)
async def test_ranges_it_cannot_serve_get_the_whole_clip(
    media_edge: TestClient, header: str
) -> None:
    response = await media_edge.get("/clips/clip42.mp4", headers={"Range": header})
    assert response.status == 200
    assert "Content-Range" not in response.headers
    assert await response.read() == MP4


@pytest.mark.parametrize("header", ["bytes=99999-", f"bytes={len(MP4)}-"])
async def test_unsatisfiable_range(media_edge: TestClient, header: str) -> None:
    response = await media_edge.get("/clips/clip42.mp4", headers={"Range": header})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(MP4)}"


async def test_conditional_requests(media_edge: TestClient) -> None:
    etag = (await media_edge.get("/clips/clip42.mp4")).headers["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await media_edge.get("/clips/clip42.mp4", headers={"If-None-Match": header})
        assert cached.status == 304, header
        assert cached.headers["ETag"] == etag and await cached.read() == b""
    changed = await media_edge.get("/clips/clip42.mp4", headers={"If-None-Match": '"other"'})
    assert changed.status == 200 and await changed.read() == MP4
    stale = await media_edge.get(
        "/clips/clip42.mp4", headers={"Range": "bytes=0-9", "If-Range": '"old"'}
    )
    assert stale.status == 200 and await stale.read() == MP4
    fresh = await media_edge.get(
        "/clips/clip42.mp4", headers={"Range": "bytes=0-9", "If-Range": etag}
    )
    assert fresh.status == 206 and await fresh.read() == MP4[:10]


async def test_head(media_edge: TestClient) -> None:
    response = await media_edge.head("/clips/clip42.wav")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(WAV))
    ranged = await media_edge.head("/clips/clip42.wav", headers={"Range": "bytes=10-19"})
    assert ranged.status == 206
    assert ranged.headers["Content-Length"] == "10"
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(WAV)}"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=-500", len(LONG) - 500, len(LONG) - 1),
        (f"bytes={4 * CHUNK + 10}-{4 * CHUNK + 20}", 4 * CHUNK + 10, 4 * CHUNK + 20),
    ],
)
async def test_a_range_reads_only_the_chunk_that_holds_it(
    uncached_edge: TestClient, header: str, start: int, end: int
) -> None:
    before = received(uncached_edge)
    response = await uncached_edge.get("/clips/long.mp4", headers={"Range": header})
    assert response.status == 206
    assert await response.read() == LONG[start : end + 1]
    read = received(uncached_edge) - before
    assert end - start < read < CHUNK + OVERHEAD  # one chunk of nine, and the overhead


async def test_a_range_across_chunks_reads_those_chunks(uncached_edge: TestClient) -> None:
    start, end = 2 * CHUNK - 1, 3 * CHUNK  # the last byte of chunk 2 to the first of chunk 4
    before = received(uncached_edge)
    response = await uncached_edge.get("/clips/long.mp4", headers={"Range": f"bytes={start}-{end}"})
    assert await response.read() == LONG[start : end + 1]
    assert 3 * CHUNK - 2 < received(uncached_edge) - before < 3 * CHUNK + OVERHEAD


async def test_the_whole_object_is_read_once_then_served_from_the_cache(
    media_edge: TestClient,
) -> None:
    before = received(media_edge)
    assert await (await media_edge.get("/clips/long.mp4")).read() == LONG
    assert received(media_edge) - before > len(LONG)
    before = received(media_edge)
    again = await media_edge.get("/clips/long.mp4")
    part = await media_edge.get("/clips/long.mp4", headers={"Range": "bytes=-10"})
    assert await again.read() == LONG and await part.read() == LONG[-10:]
    assert received(media_edge) - before < 2 * OVERHEAD  # no chunk, only metadata


async def test_a_range_of_the_whole_object_is_read_whole_and_cached(
    media_edge: TestClient,
) -> None:
    """What a media element asks first ("bytes=0-") fills the cache, so its seeks cost nothing."""
    whole = await media_edge.get("/clips/long.mp4", headers={"Range": "bytes=0-"})
    assert whole.status == 206 and await whole.read() == LONG
    assert whole.headers["Content-Range"] == f"bytes 0-{len(LONG) - 1}/{len(LONG)}"
    before = received(media_edge)
    seek = await media_edge.get("/clips/long.mp4", headers={"Range": "bytes=500000-500009"})
    assert await seek.read() == LONG[500000:500010]
    assert received(media_edge) - before < OVERHEAD


async def test_head_and_not_modified_read_no_chunk(uncached_edge: TestClient) -> None:
    etag = (await uncached_edge.head("/clips/long.mp4")).headers["ETag"]
    before = received(uncached_edge)
    head = await uncached_edge.head("/clips/long.mp4")
    cached = await uncached_edge.get("/clips/long.mp4", headers={"If-None-Match": etag})
    assert head.headers["Content-Length"] == str(len(LONG)) and cached.status == 304
    assert received(uncached_edge) - before < 2 * OVERHEAD


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
