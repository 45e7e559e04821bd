"""Clip media and events survive a NATS restart: retried, stored once, never lost."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest

from avatarchat import bus, errors
from avatarchat.v1 import events_pb2
from avatarchat_avatar import publisher as ev
from avatarchat_avatar.publisher import ClipIdentity, Publisher
from avatarchat_avatar.watch import EventWatcher


async def test_publish_and_put_wait_out_a_nats_restart(fresh_nats_server) -> None:
    nc = await nats.connect(
        fresh_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, bus.Retention())
        store = await bus.ensure_clips_store(js, bus.Retention())
        publisher = Publisher(js, store, retry_for_s=20, ack_timeout_s=1)
        clip = ClipIdentity("clip-restart", "sess-restart", "t1", 1)

        await asyncio.to_thread(fresh_nats_server.stop)
        put = asyncio.create_task(publisher.put("clip-restart.wav", b"RIFF" + b"\0" * 5000))
        publish = asyncio.create_task(
            publisher.publish(ev.speech_ready(clip, "hello", events_pb2.Timeline(duration_ms=5)))
        )
        await asyncio.sleep(1.5)
        assert not put.done() and not publish.done()
        await asyncio.to_thread(fresh_nats_server.start)
        await asyncio.wait_for(asyncio.gather(put, publish), timeout=30)

        async with EventWatcher(nc, "sess-restart", replay=True) as watcher:
            await watcher.wait_for(lambda r: r.event.clip_id == "clip-restart", timeout_s=10)
            await asyncio.sleep(0.5)
        assert [r.kind for r in watcher.received] == ["speech_ready"]  # exactly once
        assert watcher.received[0].event.emitted_unix_ms > 0
        info = await store.get_info("clip-restart.wav")
        assert info.size == 5004
        assert info.headers == {"Content-Type": ["audio/wav"]}
    finally:
        await nc.close()


async def test_gives_up_with_unavailable_when_nats_stays_down(fresh_nats_server) -> None:
    nc = await nats.connect(
        fresh_nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, bus.Retention())
        store = await bus.ensure_clips_store(js, bus.Retention())
        publisher = Publisher(js, store, retry_for_s=1.0, ack_timeout_s=0.3)
        await asyncio.to_thread(fresh_nats_server.stop)
        clip = ClipIdentity("clip-down", "sess-down", "t1", 1)
        with pytest.raises(errors.Unavailable, match="NATS did not answer"):
            await publisher.publish(ev.clip_failed(clip, reason="x", code="INTERNAL"))
    finally:
        with contextlib.suppress(OSError):  # nats-py's close flushes into the dead socket
            await nc.close()
