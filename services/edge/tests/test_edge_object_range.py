"""object_range: byte ranges of NATS objects, against a real nats-server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE as CHUNK

from avatarchat import bus
from avatarchat_edge.object_range import ObjectChanged, read_range

DATA = os.urandom(3 * CHUNK + 77)  # three full chunks and a short one


@pytest.fixture
async def nc(nats_server: Any) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        (0, 1),
        (0, CHUNK),
        (CHUNK - 1, CHUNK + 1),
        (CHUNK, 2 * CHUNK),
        (5, 3 * CHUNK + 10),
        (3 * CHUNK, len(DATA)),
        (len(DATA) - 1, len(DATA)),
        (0, len(DATA)),
    ],
)
async def test_reads_exactly_the_range(nc: Client, start: int, stop: int) -> None:
    js = nc.jetstream()
    store = await bus.ensure_clips_store(js, bus.Retention())
    info = await store.put("range.bin", DATA)
    assert await read_range(js, info, start, stop) == DATA[start:stop]


async def test_reads_only_the_chunks_of_the_range(nc: Client) -> None:
    js = nc.jetstream()
    store = await bus.ensure_clips_store(js, bus.Retention())
    info = await store.put("range.bin", DATA)
    before = nc.stats["in_bytes"]
    await read_range(js, info, 2 * CHUNK + 5, 2 * CHUNK + 6)
    assert nc.stats["in_bytes"] - before < CHUNK + 8 * 1024


async def test_a_replaced_object_is_reported(nc: Client) -> None:
    js = nc.jetstream()
    store = await bus.ensure_clips_store(js, bus.Retention())
    old = await store.put("replaced.bin", DATA)
    await store.put("replaced.bin", b"short")  # a new nuid; the old chunks are purged
    with pytest.raises(ObjectChanged):
        await read_range(js, old, CHUNK, CHUNK + 10)


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (10, 5), (-1, 5), (0, len(DATA) + 1)])
async def test_refuses_a_range_outside_the_object(nc: Client, start: int, stop: int) -> None:
    js = nc.jetstream()
    store = await bus.ensure_clips_store(js, bus.Retention())
    info = await store.put("range.bin", DATA)
    with pytest.raises(ValueError, match="outside"):
        await read_range(js, info, start, stop)
