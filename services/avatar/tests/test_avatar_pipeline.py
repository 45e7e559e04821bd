"""The clip pool with real Piper and the renderer: seq order, cancellation and a full queue.

Cancelled clips end with a clip-failed event whose code is CANCELLED, and never publish a
speech-ready or clip-ready after the cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from avatarchat import bus
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_avatar.app import AvatarApp, serving
from avatarchat_avatar.config import AvatarConfig
from avatarchat_avatar.watch import EventWatcher, Received

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = (
    "Once upon a time, in a quiet village by the sea, there lived an old clockmaker who "
    "repaired every clock in town, and he never once complained about the salty wind."
)
SENTENCES = [LONG, "Yes.", "That is a medium sized sentence for the test.", "Okay!"]
QUEUE_SIZE = 4


@dataclass
class Running:
    app: AvatarApp
    stub: avatar_pb2_grpc.AvatarServiceStub
    nc: NATS


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def avatar(nats_server) -> AsyncIterator[Running]:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_AVATAR_WORKERS": "2",
            "AVATARCHAT_AVATAR_QUEUE_SIZE": str(QUEUE_SIZE),
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
    )
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(serving(config, host="127.0.0.1"))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.host.port}")
        stack.push_async_callback(channel.close)
        nc = await nats.connect(nats_server.url)
        stack.push_async_callback(nc.close)
        yield Running(app, avatar_pb2_grpc.AvatarServiceStub(channel), nc)


async def generate(stub, session: str, seq: int, text: str, turn: str = "t1") -> str:
    reply = await stub.GenerateClip(
        avatar_pb2.GenerateClipRequest(session_id=session, turn_id=turn, seq=seq, text=text),
        timeout=10,
    )
    return reply.clip_id


def stage(received: list[Received], *kinds: str) -> list[int]:
    return [r.event.seq for r in received if r.kind in kinds]


async def test_events_follow_seq_order(avatar: Running) -> None:
    async with EventWatcher(avatar.nc, "order") as watcher:
        ids = [
            await generate(avatar.stub, "order", seq, text)
            for seq, text in enumerate(SENTENCES, start=1)
        ]
        for clip_id in ids:
            await watcher.wait_terminal(clip_id, timeout_s=120)
    received = watcher.received
    assert stage(received, "speech_ready") == [1, 2, 3, 4]
    assert stage(received, "clip_ready", "clip_failed") == [1, 2, 3, 4]
    assert {r.kind for r in received} == {"speech_ready", "clip_ready"}
    for clip_id in ids:  # each clip's own speech-ready comes before its clip-ready
        assert [r.kind for r in watcher.of_clip(clip_id)] == ["speech_ready", "clip_ready"]


async def test_cancelling_a_turn_ends_its_clips_and_does_not_block_the_next(
    avatar: Running,
) -> None:
    async with EventWatcher(avatar.nc, "barge") as watcher:
        first = [await generate(avatar.stub, "barge", seq, LONG, turn="t1") for seq in (1, 2, 3)]
        reply = await avatar.stub.CancelClips(
            avatar_pb2.CancelClipsRequest(session_id="barge", turn_id="t1"), timeout=5
        )
        assert reply.cancelled == 3
        after = await generate(avatar.stub, "barge", 4, "Sure, what next?", turn="t2")
        done = await watcher.wait_terminal(after, timeout_s=120)
        for clip_id in first:
            await watcher.wait_terminal(clip_id, timeout_s=30)
        await asyncio.sleep(0.5)  # give a wrongly surviving clip the chance to publish
    assert done.kind == "clip_ready"
    for clip_id in first:
        events = [r.event for r in watcher.of_clip(clip_id)]
        assert [e.WhichOneof("event") for e in events] == ["clip_failed"], events
        assert events[0].clip_failed.code == "CANCELLED"
        got = await avatar.stub.GetClip(avatar_pb2.GetClipRequest(clip_id=clip_id), timeout=5)
        assert got.status == avatar_pb2.CLIP_STATUS_CANCELLED
    again = await avatar.stub.CancelClips(
        avatar_pb2.CancelClipsRequest(session_id="barge"), timeout=5
    )
    assert again.cancelled == 0


async def test_cancelling_one_turn_leaves_the_others(avatar: Running) -> None:
    async with EventWatcher(avatar.nc, "turns") as watcher:
        keep = await generate(avatar.stub, "turns", 1, "I stay.", turn="a")
        drop = [await generate(avatar.stub, "turns", seq, LONG, turn="b") for seq in (2, 3)]
        reply = await avatar.stub.CancelClips(
            avatar_pb2.CancelClipsRequest(session_id="turns", turn_id="b"), timeout=5
        )
        kept = await watcher.wait_terminal(keep, timeout_s=120)
        dropped = [await watcher.wait_terminal(c, timeout_s=30) for c in drop]
    assert reply.cancelled == 2
    assert kept.kind == "clip_ready"
    assert [d.event.clip_failed.code for d in dropped] == ["CANCELLED", "CANCELLED"]


async def test_full_queue_is_resource_exhausted(avatar: Running) -> None:
    calls = [
        avatar.stub.GenerateClip(
            avatar_pb2.GenerateClipRequest(session_id="flood", turn_id="t1", seq=seq, text=LONG),
            timeout=10,
        )
        for seq in range(1, QUEUE_SIZE + 6)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert rejected, "a full queue must reject"
    for error in rejected:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in (error.details() or "")
        assert ("retry-after", "1") in tuple(error.trailing_metadata() or ())
    assert QUEUE_SIZE <= len(accepted) <= QUEUE_SIZE + 2  # the queue plus the busy workers
    reply = await avatar.stub.CancelClips(
        avatar_pb2.CancelClipsRequest(session_id="flood"), timeout=5
    )
    assert reply.cancelled >= QUEUE_SIZE
    # cancelling freed the queue
    await generate(avatar.stub, "flood", 100, "Room again.")


async def test_a_seq_in_progress_cannot_be_reused(avatar: Running) -> None:
    await generate(avatar.stub, "dup", 7, LONG)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generate(avatar.stub, "dup", 7, "Again?")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "seq 7" in (caught.value.details() or "")
    await avatar.stub.CancelClips(avatar_pb2.CancelClipsRequest(session_id="dup"), timeout=5)


async def test_a_nats_restart_mid_clip_delays_events_but_loses_none(fresh_nats_server) -> None:
    """NATS goes away while the video renders: the MP4 and clip-ready wait for it, once each."""
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": fresh_nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
    )
    async with serving(config, host="127.0.0.1") as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.host.port}") as channel:
            stub = avatar_pb2_grpc.AvatarServiceStub(channel)
            nc = await nats.connect(fresh_nats_server.url, max_reconnect_attempts=-1)
            try:
                async with EventWatcher(nc, "restart") as live:
                    clip_id = await generate(stub, "restart", 1, LONG + " " + LONG)
                    await live.wait_for(lambda r: r.kind == "speech_ready", timeout_s=120)
                    await asyncio.to_thread(fresh_nats_server.stop)
                    await asyncio.sleep(2)
                    await asyncio.to_thread(fresh_nats_server.start)
                async with EventWatcher(nc, "restart", replay=True) as watcher:
                    done = await watcher.wait_terminal(clip_id, timeout_s=120)
                    await asyncio.sleep(0.5)  # a duplicate would arrive right behind
                store = await nc.jetstream().object_store(bus.CLIPS_BUCKET)
                mp4 = (await store.get(f"{clip_id}.mp4")).data
            finally:
                await nc.close()
    assert done.kind == "clip_ready", done.event
    assert [r.kind for r in watcher.of_clip(clip_id)] == ["speech_ready", "clip_ready"]
    assert mp4[4:8] == b"ftyp"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def one_renderer(nats_server) -> AsyncIterator[Running]:
    """One speech worker and one renderer: a long render holds the only renderer."""
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_NATS_URL": nats_server.url,
            "AVATARCHAT_AVATAR_PORT": "0",
            "AVATARCHAT_AVATAR_WORKERS": "1",
            "AVATARCHAT_AVATAR_SPEECH_WORKERS": "1",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        }
    )
    async with AsyncExitStack() as stack:
        app = await stack.enter_async_context(serving(config, host="127.0.0.1"))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.host.port}")
        stack.push_async_callback(channel.close)
        nc = await nats.connect(nats_server.url)
        stack.push_async_callback(nc.close)
        yield Running(app, avatar_pb2_grpc.AvatarServiceStub(channel), nc)


async def test_speech_does_not_wait_for_the_renders_before_it(one_renderer: Running) -> None:
    """Another session's short sentence is spoken while the only renderer draws a long clip."""
    stub = one_renderer.stub
    async with EventWatcher(one_renderer.nc) as watcher:
        long = await generate(stub, "drawing", 1, LONG + " " + LONG)
        short = await generate(stub, "waiting", 1, "Yes.")
        spoken = await watcher.wait_for(
            lambda r: r.event.clip_id == short and r.kind == "speech_ready", timeout_s=120
        )
        drawn = await watcher.wait_terminal(long, timeout_s=120)
        assert (await watcher.wait_terminal(short, timeout_s=120)).kind == "clip_ready"
    assert drawn.kind == "clip_ready"
    assert spoken.at < drawn.at, "the short clip's speech waited for the long clip's video"


async def test_a_clip_waiting_for_a_renderer_is_cancelled_at_once(one_renderer: Running) -> None:
    stub = one_renderer.stub
    async with EventWatcher(one_renderer.nc) as watcher:
        long = await generate(stub, "busy", 1, LONG + " " + LONG)
        waiting = await generate(stub, "barge-in", 1, "That is a medium sized sentence.")
        await watcher.wait_for(
            lambda r: r.event.clip_id == waiting and r.kind == "speech_ready", timeout_s=120
        )
        status = await stub.GetClip(avatar_pb2.GetClipRequest(clip_id=waiting), timeout=5)
        reply = await stub.CancelClips(
            avatar_pb2.CancelClipsRequest(session_id="barge-in"), timeout=5
        )
        cancelled = await watcher.wait_terminal(waiting, timeout_s=5)
        assert (await watcher.wait_terminal(long, timeout_s=120)).kind == "clip_ready"
        await asyncio.sleep(0.5)  # give a wrongly surviving render the chance to publish
    assert status.status == avatar_pb2.CLIP_STATUS_RENDERING  # spoken, waiting for the renderer
    assert reply.cancelled == 1
    assert cancelled.event.clip_failed.code == "CANCELLED"
    assert [r.kind for r in watcher.of_clip(waiting)] == ["speech_ready", "clip_failed"]
    got = await stub.GetClip(avatar_pb2.GetClipRequest(clip_id=waiting), timeout=5)
    assert got.status == avatar_pb2.CLIP_STATUS_CANCELLED
