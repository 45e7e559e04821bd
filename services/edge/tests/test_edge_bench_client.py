"""bench/edge_ws.py, the client the bench measures the edge with, against a served edge."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import nats
import pytest

from avatarchat import bus
from avatarchat.v1 import avatar_pb2, events_pb2

BENCH_CLIENT = Path(__file__).parents[3] / "bench" / "edge_ws.py"


@pytest.fixture(scope="module")
def edge_ws() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_edge_ws", BENCH_CLIENT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_text_turns(edge_ws: ModuleType, text_edge: Any) -> None:
    url = f"ws://{text_edge.host}:{text_edge.port}/ws"
    results = await edge_ws.run_ws(url, ["one", "two", "three"])
    assert len(results) == 3
    for turn in results:
        assert 0 < turn["ttfd_ms"] <= turn["done_ms"]
        assert turn["first_clip_speech_ms"] is None and turn["first_clip_ready_ms"] is None


async def test_turns_with_clips(
    edge_ws: ModuleType, make_edge: Any, llm: Any, avatar: Any, nats_server: Any
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_events_stream(js, bus.Retention())

    async def produce(request: avatar_pb2.GenerateClipRequest, clip_id: str) -> None:
        # Like the avatar service: a speech-only clip is finished once its speech is ready.
        ids = {
            "clip_id": clip_id,
            "session_id": request.session_id,
            "turn_id": request.turn_id,
            "seq": request.seq,
        }
        speech = events_pb2.AvatarEvent(**ids)
        speech.speech_ready.audio_url = f"/clips/{clip_id}.wav"
        await js.publish(bus.events_subject(request.session_id), speech.SerializeToString())
        if request.speech_only:
            return
        await asyncio.sleep(0.05)
        ready = events_pb2.AvatarEvent(**ids)
        ready.clip_ready.video_url = f"/clips/{clip_id}.mp4"
        await js.publish(bus.events_subject(request.session_id), ready.SerializeToString())

    avatar.servicer.produce = produce
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_AVATAR_ADDR": avatar.addr,
            "AVATARCHAT_NATS_URL": nats_server.url,
        }
    )
    url = f"ws://{edge.host}:{edge.port}/ws"
    results = await edge_ws.run_ws(url, ["a", "b"], avatar=True)
    for turn in results:
        assert turn["clips"] == turn["clips_finished"] == 2
        assert turn["ttfd_ms"] <= turn["first_clip_speech_ms"] < turn["first_clip_ready_ms"]
    # The live rig's mode: speech only, each clip finished at its clip.speech; a client that
    # waited for clip.ready would give up after clips_timeout_s with no clip finished.
    results = await edge_ws.run_ws(url, ["c", "d"], avatar=True, video=False, clips_timeout_s=5)
    for turn in results:
        assert turn["clips"] == turn["clips_finished"] == 2
        assert turn["ttfd_ms"] <= turn["first_clip_speech_ms"]
        assert turn["first_clip_ready_ms"] is None
    await nc.drain()


async def test_errors_are_raised(edge_ws: ModuleType, make_edge: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": ""})
    with pytest.raises(edge_ws.TurnFailed, match="llm_unavailable"):
        await edge_ws.run_ws(f"ws://{edge.host}:{edge.port}/ws", ["hello"])
