"""A real conversation through the whole stack over a real WebSocket, with the local model."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from avatarchat.devstack import Stack


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, limit_s: float = 60
) -> list[dict[str, Any]]:
    frames = []
    while True:
        message = await ws.receive(timeout=limit_s)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        frame = message.json()
        frames.append(frame)
        assert frame["type"] != "error", frame
        if frame["type"] == kind:
            return frames


async def say(ws: aiohttp.ClientWebSocketResponse, text: str) -> str:
    await ws.send_json({"type": "text", "text": text})
    frames = await receive_until(ws, "reply.done")
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    done = frames[-1]
    assert deltas, "the reply must stream before it is done"
    assert "".join(d["text"] for d in deltas) == done["text"]
    assert {d["turn_id"] for d in deltas} == {done["turn_id"]}
    return str(done["text"])


async def test_three_turns_remember_the_name(stack: Stack, ws_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "session" and hello["protocol"] == 1
        await ws.send_json(
            {"type": "session.start", "session_id": hello["session_id"], "avatar": False}
        )
        await receive_until(ws, "session")

        first = await say(ws, "Hello! My name is Alice. Please remember my name.")
        assert first.strip()
        second = await say(ws, "What is the capital of France?")
        assert second.strip()
        third = await say(ws, "What is my name?")
        assert re.search(r"\bAlice\b", third), f"turn 3 forgot turn 1: {third!r}"


async def test_health_and_metrics(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(stack.edge_url + path) as response:
                assert response.status == 200, path
        async with http.get(stack.edge_url + "/metrics") as response:
            body = await response.text()
    assert "time_to_first_delta" in body
