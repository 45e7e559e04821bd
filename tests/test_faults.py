"""Faults with real processes: a service killed mid-turn, nats-server restarted, the edge restarted.

One stack of real processes (started like ``make run``) for the module. After each fault the
client must get an error frame, or the turn must carry on transparently, within
``FAULT_BUDGET_S``; the supervisor's restart path (``Stack.supervise``) brings the process
back, and the next turn must work. Figures from these runs are in the README ("Reliability").
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from avatarchat.devstack import Stack
from avatarchat.nats_server import free_port
from tests.speech_corpus import resample, sentences, synthesize

FAULT_BUDGET_S = 2.0
LONG_PROMPT = "Please tell me a long story about a lighthouse keeper and a whale, in detail."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = {name: free_port() for name in ("stt", "llm", "avatar", "edge")}
    env = {"AVATARCHAT_LLM_TEMPERATURE": "0", "AVATARCHAT_LLM_MAX_TOKENS": "200"}
    state: Path = tmp_path_factory.mktemp("faults")
    with Stack(state_dir=state, ports=ports, log_prefix=False, env=env) as running:
        yield running


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def frame(self, within_s: float = 60.0) -> dict[str, Any]:
        while True:
            message = await self.ws.receive(timeout=within_s)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame: dict[str, Any] = message.json()
            if frame["type"] != "pong":
                return frame

    async def until(self, *kinds: str, within_s: float = 60.0) -> list[dict[str, Any]]:
        frames = []
        deadline = time.monotonic() + within_s
        while True:
            frame = await self.frame(max(0.01, deadline - time.monotonic()))
            frames.append(frame)
            if frame["type"] in kinds:
                return frames

    async def turn(self, text: str) -> dict[str, Any]:
        await self.ws.send_json({"type": "text", "text": text})
        frames = await self.until("reply.done", "error", within_s=90)
        assert frames[-1]["type"] == "reply.done", frames[-1]
        return frames[-1]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    url = stack.edge_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        c = Client(ws)
        hello = await c.frame()
        await ws.send_json(
            {
                "type": "session.start",
                "session_id": hello["session_id"],
                "avatar": True,
                "video": True,
            }
        )
        await c.until("session")
        yield c


def kill(stack: Stack, name: str) -> float:
    """SIGKILLs the service; returns when, once the process is gone."""
    process = stack.processes[name]
    os.kill(process.pid, signal.SIGKILL)
    killed = time.monotonic()
    process.wait(10)
    return killed


async def bring_back(stack: Stack) -> None:
    """What `make run`'s supervisor does when a child dies."""
    assert await asyncio.to_thread(stack.supervise, {}) is None


async def test_llm_killed_mid_reply(stack: Stack, client: Client) -> None:
    await client.ws.send_json({"type": "text", "text": LONG_PROMPT})
    await client.until("reply.delta")
    killed = kill(stack, "llm")
    frames = await client.until("error", "reply.done", within_s=10)
    waited = time.monotonic() - killed
    assert frames[-1]["type"] == "error", frames[-1]
    print(f"fault llm-kill: error frame after {waited:.3f} s")
    assert waited <= FAULT_BUDGET_S, f"error frame {waited:.2f} s after the kill"
    await bring_back(stack)
    assert (await client.turn("What is two plus two?"))["text"].strip()


async def test_avatar_killed_mid_clip(stack: Stack, client: Client) -> None:
    await client.ws.send_json({"type": "text", "text": LONG_PROMPT})
    frames = await client.until("clip.speech", "error", within_s=60)
    assert frames[-1]["type"] == "clip.speech", frames[-1]  # its video is being rendered now
    killed = kill(stack, "avatar")
    # Every clip the avatar took along ends with clip.failed, soon.
    frames = await client.until("clip.failed", within_s=10)
    waited = time.monotonic() - killed
    print(f"fault avatar-kill: clip.failed after {waited:.3f} s")
    assert waited <= FAULT_BUDGET_S, f"clip.failed {waited:.2f} s after the kill: {frames}"
    await client.until("reply.done", within_s=90)
    await bring_back(stack)
    await client.ws.send_json({"type": "text", "text": "Say hello."})
    turn = (await client.until("reply.delta", within_s=60))[-1]["turn_id"]
    while True:  # clips of the interrupted turn may still be failing: look at this turn's
        frame = (await client.until("clip.ready", "clip.failed", "error", within_s=90))[-1]
        if frame.get("turn_id") == turn or frame["type"] == "error":
            break
    assert frame["type"] == "clip.ready", frame


async def test_stt_killed_mid_utterance(stack: Stack, client: Client) -> None:
    pcm, rate = synthesize(sentences()[0])
    pcm16 = resample(pcm, rate, 16000).tobytes()
    await client.ws.send_json(
        {"type": "audio.start", "format": "pcm_s16le", "sample_rate": 16000, "mode": "push-to-talk"}
    )
    half = len(pcm16) // 2 // 640 * 640
    for i in range(0, half, 640):
        await client.ws.send_bytes(pcm16[i : i + 640])
    # A partial transcript shows the stream is open at the stt service and decoding.
    await client.until("transcript.partial", within_s=30)
    killed = kill(stack, "stt")
    frames = await client.until("error", within_s=10)
    waited = time.monotonic() - killed
    print(f"fault stt-kill: error frame after {waited:.3f} s")
    assert waited <= FAULT_BUDGET_S, f"error frame {waited:.2f} s after the kill: {frames}"
    await bring_back(stack)
    # The socket is still usable: a whole utterance now gets a transcript and a reply.
    await client.ws.send_json(
        {"type": "audio.start", "format": "pcm_s16le", "sample_rate": 16000, "mode": "push-to-talk"}
    )
    for i in range(0, len(pcm16), 3200):
        await client.ws.send_bytes(pcm16[i : i + 3200])
    await client.ws.send_json({"type": "audio.end"})
    frames = await client.until("transcript.final", "error", within_s=30)
    assert frames[-1]["type"] == "transcript.final", frames[-1]
    await client.until("reply.done", within_s=90)


async def test_nats_restart_mid_conversation_loses_no_event(stack: Stack, client: Client) -> None:
    await client.ws.send_json({"type": "text", "text": "Tell me two short facts about the moon."})
    frames = await client.until("reply.done", within_s=90)
    done = frames[-1]
    assert stack.nats is not None
    stopped = time.monotonic()
    await asyncio.to_thread(stack.nats.stop)  # clips of that turn are still being made
    await asyncio.to_thread(stack.nats.start)
    restart_s = time.monotonic() - stopped
    # Every clip of the turn still reaches its end, exactly once.
    finished: dict[int, str] = {}
    seen = [f for f in frames if f["type"] in ("clip.ready", "clip.failed")]
    for frame in seen:
        finished[frame["seq"]] = frame["type"]
    while len(finished) < done["clips"]:
        frame = (await client.until("clip.ready", "clip.failed", within_s=60))[-1]
        assert frame["seq"] not in finished, f"duplicate {frame}"
        finished[frame["seq"]] = frame["type"]
    print(f"fault nats-restart: {done['clips']} clips all ready, restart took {restart_s:.3f} s")
    assert set(finished.values()) == {"clip.ready"}, finished
    assert restart_s < 10
    after = await client.turn("And one about the sun.")
    assert after["text"].strip()


async def test_edge_restarted_mid_conversation_resumes(stack: Stack) -> None:
    url = stack.edge_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            c = Client(ws)
            session_id = (await c.frame())["session_id"]
            await ws.send_json({"type": "session.start", "session_id": session_id})
            await c.until("session")
            await c.turn("Hello, my name is Alice.")
            restarted = time.monotonic()
            stack.restart_service("edge")  # SIGTERM: the edge saves the session and closes
            closed = await ws.receive(timeout=10)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
        back_s = time.monotonic() - restarted
        async with http.ws_connect(url) as ws:
            c = Client(ws)
            await c.frame()
            await ws.send_json({"type": "session.start", "session_id": session_id})
            frame = (await c.until("session", "error"))[-1]
            assert frame["type"] == "session" and frame["resumed"] is True, frame
            assert (await c.turn("What is two plus two?"))["text"].strip()
    print(f"fault edge-restart: back and resumed after {back_s:.3f} s")
    assert back_s < 30
    async with aiohttp.ClientSession() as http:  # the llm kept the history across the restart
        async with http.get(stack.edge_url + "/healthz") as response:
            assert response.status == 200
