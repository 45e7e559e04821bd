"""Bench scenario client: sequential text turns through the edge's ``/ws``.

``run_ws(url, prompts)`` opens one socket, turns the avatar on or off (and with it on, asks for
rendered videos or, like the web page's live rig, for speech only), then for each prompt sends a
``text`` frame and measures at the client, from that send:

- ``ttfd_ms``: to the first ``reply.delta``;
- ``done_ms``: to ``reply.done``;
- ``first_clip_speech_ms`` / ``first_clip_ready_ms``: to the turn's first ``clip.speech`` /
  ``clip.ready`` (None when no such frame came, e.g. with the avatar off).

With the avatar on, a turn ends only once each of its clips is finished (``reply.done`` says how
many there are): ``clip.ready`` with videos, ``clip.speech`` without, or ``clip.failed``; so clips
of one turn do not load the next one. ``clips_finished`` counts them (short of ``clips`` when
``clips_timeout_s`` ran out).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp


class TurnFailed(RuntimeError):
    """The edge answered a turn with an error frame."""


async def run_ws(
    url: str,
    prompts: list[str],
    *,
    avatar: bool = False,
    video: bool = True,
    token: str | None = None,
    turn_timeout_s: float = 120.0,
    clips_timeout_s: float = 60.0,
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        hello = await _receive(ws, 30.0)
        if hello.get("type") != "session":
            raise TurnFailed(f"expected a session frame, got {hello}")
        await ws.send_json(
            {
                "type": "session.start",
                "session_id": hello["session_id"],
                "avatar": avatar,
                "video": video,
            }
        )
        while (frame := await _receive(ws, 30.0))["type"] != "session":
            if frame["type"] == "error":
                raise TurnFailed(f"session.start refused: {frame}")
        for prompt in prompts:
            results.append(await _turn(ws, prompt, avatar, video, turn_timeout_s, clips_timeout_s))
    return results


async def _turn(
    ws: aiohttp.ClientWebSocketResponse,
    prompt: str,
    avatar: bool,
    video: bool,
    turn_timeout_s: float,
    clips_timeout_s: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    await ws.send_json({"type": "text", "text": prompt})
    result: dict[str, Any] = {
        "ttfd_ms": None,
        "done_ms": None,
        "first_clip_speech_ms": None,
        "first_clip_ready_ms": None,
        "clips": 0,
        "clips_finished": 0,
    }
    turn_id: str | None = None
    expected: int | None = None
    finished: set[int] = set()
    deadline = started + turn_timeout_s
    while True:
        result["clips_finished"] = len(finished)
        if expected is not None and (not avatar or len(finished) >= expected):
            return result
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            if result["done_ms"] is None:
                raise TurnFailed(f"no reply.done within {turn_timeout_s:g} s for {prompt!r}")
            return result  # some clips never finished: their times stay None
        frame = await _receive(ws, remaining)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        kind = frame["type"]
        # Turns are sequential: an error for a turn not seen yet is about this prompt.
        if kind == "error" and (turn_id is None or frame.get("turn_id") in (None, turn_id)):
            raise TurnFailed(f"the edge refused {prompt!r}: {frame}")
        if kind == "reply.delta":
            turn_id = frame["turn_id"]
            if result["ttfd_ms"] is None:
                result["ttfd_ms"] = elapsed_ms
        elif kind == "reply.done":
            turn_id = frame["turn_id"]
            result["done_ms"] = elapsed_ms
            expected = result["clips"] = int(frame.get("clips", 0))
            deadline = time.perf_counter() + clips_timeout_s
        elif kind.startswith("clip.") and turn_id is not None and frame["turn_id"] == turn_id:
            if kind == "clip.speech":
                if result["first_clip_speech_ms"] is None:
                    result["first_clip_speech_ms"] = elapsed_ms
                if not video:
                    finished.add(frame["seq"])
            elif kind == "clip.ready":
                if result["first_clip_ready_ms"] is None:
                    result["first_clip_ready_ms"] = elapsed_ms
                finished.add(frame["seq"])
            elif kind == "clip.failed":
                finished.add(frame["seq"])


async def _receive(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout_s)
    if message.type != aiohttp.WSMsgType.TEXT:
        raise TurnFailed(f"the socket closed or sent {message.type.name} (code {ws.close_code})")
    frame: dict[str, Any] = message.json()
    return frame
