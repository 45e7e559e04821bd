"""JetStream resources against a real nats-server."""

import asyncio

from nats.aio.client import Client as NATS

from avatarchat import bus
from avatarchat.nats_server import NatsServer


async def test_ensure_resources_is_idempotent_and_updates(nats_server: NatsServer) -> None:
    nc = await bus.connect(nats_server.url, "test")
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, bus.Retention(events_max_age_s=60))
        await bus.ensure_events_stream(js, bus.Retention(events_max_age_s=120))
        info = await js.stream_info(bus.EVENTS_STREAM)
        assert info.config.max_age == 120
        ack = await js.publish(bus.events_subject("s-1"), b"x")
        assert ack.stream == bus.EVENTS_STREAM

        store = await bus.ensure_clips_store(js, bus.Retention())
        await store.put("c1.wav", b"RIFF")
        assert (await store.get("c1.wav")).data == b"RIFF"
        store = await bus.ensure_clips_store(js, bus.Retention(clips_ttl_s=600))  # a new TTL
        assert (await store.status()).ttl == 600
        assert (await store.get("c1.wav")).data == b"RIFF"

        kv = await bus.ensure_history_kv(js, bus.Retention())
        await kv.put("s-1", b"[]")
        assert (await kv.get("s-1")).value == b"[]"

        sessions = await bus.ensure_sessions_kv(js, 300, bus.Retention())
        await bus.ensure_sessions_kv(js, 300, bus.Retention())
        status = await sessions.status()
        assert status.bucket == bus.SESSIONS_BUCKET and status.ttl == 300
        await sessions.put("s-1", b"{}")
        # A new TTL (the operator changed it) updates the bucket and keeps what it holds, even
        # one shorter than the duplicate window it was created with.
        sessions = await bus.ensure_sessions_kv(js, 30, bus.Retention())
        assert (await sessions.status()).ttl == 30
        assert (await sessions.get("s-1")).value == b"{}"
    finally:
        await nc.drain()


def test_retention_from_env() -> None:
    import pytest

    from avatarchat.config import ConfigError

    r = bus.Retention.from_env({"AVATARCHAT_CLIPS_TTL_S": "60", "AVATARCHAT_NATS_REPLICAS": "3"})
    assert (r.clips_ttl_s, r.replicas, r.events_max_age_s) == (60, 3, 600)
    with pytest.raises(ConfigError, match="AVATARCHAT_NATS_REPLICAS"):
        bus.Retention.from_env({"AVATARCHAT_NATS_REPLICAS": "0"})


def test_object_names_and_subjects() -> None:
    import pytest

    assert bus.clip_object("c1", "wav") == "c1.wav"
    assert bus.rig_object("mouth/aa.png") == "rig/mouth/aa.png"
    assert bus.cancel_subject("s-1") == "avatar.cancel.s-1"
    assert not bus.cancel_subject("s-1").startswith(bus.EVENTS_SUBJECT_PREFIX)  # no stream
    with pytest.raises(ValueError, match="wav"):
        bus.clip_object("c1", "exe")


async def _stop_and_wait_for_the_reconnect_loop(nc: NATS, server: NatsServer) -> None:
    disconnected = asyncio.Event()
    callback = nc._disconnected_cb

    async def on_disconnected() -> None:  # called by the reconnect loop as it starts
        disconnected.set()
        if callback is not None:
            await callback()

    nc._disconnected_cb = on_disconnected
    server.stop()
    async with asyncio.timeout(10):
        await disconnected.wait()


async def test_close_ends_the_reconnect_loop_while_the_server_is_gone(
    fresh_nats_server: NatsServer,
) -> None:
    nc = await bus.connect(fresh_nats_server.url, "test")
    await _stop_and_wait_for_the_reconnect_loop(nc, fresh_nats_server)
    task = nc._reconnection_task
    assert task is not None and not task.done()
    await bus.close(nc)
    assert nc.is_closed and task.done()


async def test_close_ends_a_reconnect_loop_that_swallowed_the_cancel(
    fresh_nats_server: NatsServer,
) -> None:
    """Python 3.11's wait_for can swallow the cancel of a connect that fails at that instant;
    the loop then carries on as though nothing happened, and close must still end it."""
    nc = await bus.connect(fresh_nats_server.url, "test")
    select_next_server = nc._select_next_server
    swallowed: list[bool] = []

    async def swallowing_once() -> None:
        while True:
            try:
                await select_next_server()
                return
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # as wait_for does: the cancel is lost

    nc._select_next_server = swallowing_once  # type: ignore[method-assign]
    await _stop_and_wait_for_the_reconnect_loop(nc, fresh_nats_server)
    task = nc._reconnection_task
    assert task is not None
    await bus.close(nc)
    assert swallowed and task.done()
