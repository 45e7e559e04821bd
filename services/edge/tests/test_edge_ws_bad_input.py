"""Whatever a client sends, it gets a clear error frame and the session stays usable."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

import avatarchat_edge
from avatarchat_edge.app import SOCKETS
from tests.waiting import eventually

EDGE_DIR = str(Path(avatarchat_edge.__file__).parent)
BACKGROUND = {"session-janitor", "nats-connect"}


def edge_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine is edge code (the app's own background tasks aside)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code and code.co_filename.startswith(EDGE_DIR) and task.get_name() not in BACKGROUND:
            found.append(task)
    return found


async def still_works(ws: aiohttp.ClientWebSocketResponse, helpers: Any) -> None:
    await ws.send_json({"type": "text", "text": "are you still there?"})
    frames = await helpers.until(ws, "reply.done")
    assert all(f["type"] != "error" for f in frames), frames


async def works_again(ws: aiohttp.ClientWebSocketResponse, helpers: Any) -> None:
    """``still_works`` once the rate limit lets a text through: a refused text is sent again
    after the ``retry_after_ms`` its error frame gives (the client's side of the protocol)."""
    deadline = time.monotonic() + 10
    while True:
        await ws.send_json({"type": "text", "text": "are you still there?"})
        frames = [await helpers.receive(ws)]
        while frames[-1]["type"] not in ("reply.done", "error"):
            frames.append(await helpers.receive(ws))
        if frames[-1]["type"] == "reply.done":
            return
        assert frames[-1]["code"] == "rate_limited", frames
        assert time.monotonic() < deadline, "the session stayed rate limited"
        await asyncio.sleep(frames[-1]["retry_after_ms"] / 1000)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2, 3]", "bad_json"),
        ('"text"', "bad_json"),
        ("[" * 100_000 + "]" * 100_000, "bad_json"),
        ("{}", "invalid_message"),
        ('{"type": 5}', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "' + "x" * 5000 + '"}', "unknown_type"),
        ('{"type": "text"}', "invalid_message"),
        ('{"type": "text", "text": 42}', "invalid_message"),
        ('{"type": "text", "text": ""}', "empty_text"),
        ('{"type": "text", "text": "   \\n\\t "}', "empty_text"),
        ('{"type": "text", "text": "\\ud800 broken"}', "invalid_message"),
        ('{"type": "session.start", "session_id": "../../etc"}', "invalid_message"),
        ('{"type": "session.start", "session_id": 12}', "invalid_message"),
        ('{"type": "session.start", "avatar": "yes"}', "invalid_message"),
        ('{"type": "session.start", "protocol": 2}', "unsupported_protocol"),
        ('{"type": "session.start", "session_id": "' + "a" * 32 + '"}', "unknown_session"),
        ('{"type": "audio.start", "format": "flac"}', "invalid_message"),
        ('{"type": "audio.start", "format": "pcm_s16le"}', "invalid_message"),
        ('{"type": "audio.start", "format": "wav", "sample_rate": 3}', "invalid_message"),
        ('{"type": "audio.start", "format": "wav", "mode": "shout"}', "invalid_message"),
        ('{"type": "audio.start", "format": "wav"}', "stt_unavailable"),
        ('{"type": "audio.end"}', "no_audio_stream"),
    ],
)
async def test_bad_frames_get_an_error_and_the_session_survives(
    text_edge: TestClient, helpers: Any, raw: str, code: str
) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_str(raw)
    err = await helpers.receive(ws)
    assert err["type"] == "error" and err["code"] == code, err
    assert err["message"]
    await still_works(ws, helpers)
    await ws.close()


async def test_text_of_100_kb_is_refused(text_edge: TestClient, llm: Any, helpers: Any) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "a" * 100_000})
    err = await helpers.receive(ws)
    assert err["code"] == "text_too_long" and "100000" in err["message"]
    assert llm.servicer.requests == []
    await still_works(ws, helpers)
    await ws.close()


async def test_binary_frame_where_text_is_expected(text_edge: TestClient, helpers: Any) -> None:
    ws, _ = await helpers.connect(text_edge)
    for _ in range(5):
        await ws.send_bytes(b"\x00\x01garbage")
    err = await helpers.receive(ws)
    assert err["code"] == "no_audio_stream"
    await still_works(ws, helpers)  # one error for the run of stray frames, not five
    await ws.close()


async def test_unknown_session_keeps_the_current_one(text_edge: TestClient, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    await ws.send_json({"type": "session.start", "session_id": "0" * 32})
    err = await helpers.receive(ws)
    assert err["code"] == "unknown_session" and hello["session_id"] in err["message"]
    await still_works(ws, helpers)
    await ws.close()


async def test_200_messages_in_a_second_are_rate_limited(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, rate_per_s=5.0, rate_burst=10)
    ws, _ = await helpers.connect(edge)
    started = time.monotonic()
    for i in range(200):
        await ws.send_json({"type": "ping", "id": i})
    frames = [await helpers.receive(ws) for _ in range(200)]
    elapsed = time.monotonic() - started
    pongs = [f for f in frames if f["type"] == "pong"]
    limited = [f for f in frames if f.get("code") == "rate_limited"]
    assert len(pongs) + len(limited) == 200
    assert [f["type"] for f in frames[:10]] == ["pong"] * 10  # the burst
    assert len(pongs) <= 10 + 5 * elapsed + 1  # then 5 a second (TokenBucket's own tests
    assert 0 < limited[0]["retry_after_ms"] <= 200  # pin the exact numbers, with a clock)
    await works_again(ws, helpers)
    await ws.close()


async def test_a_flood_of_texts_leaves_one_reply(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, rate_per_s=5.0, rate_burst=10)
    llm.servicer.delay_s = 0.01
    ws, _ = await helpers.connect(edge)
    for i in range(200):
        await ws.send_json({"type": "text", "text": f"message {i}"})
    frames = await helpers.until(ws, "reply.done", within=20)
    assert sum(f.get("code") == "rate_limited" for f in frames) >= 150
    await works_again(ws, helpers)
    await ws.close()


async def test_a_frame_over_the_size_limit_closes_only_that_socket(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, max_frame_bytes=64 * 1024)
    ws, hello = await helpers.connect(edge)
    await ws.send_str(json.dumps({"type": "text", "text": "x" * 200_000}))
    message = await ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009  # message too big
    ws2, _ = await helpers.connect(edge)  # the server is fine, and the session resumable
    await ws2.send_json({"type": "session.start", "session_id": hello["session_id"]})
    assert (await helpers.receive(ws2))["resumed"] is True
    await still_works(ws2, helpers)
    await ws2.close()


async def test_a_client_vanishing_mid_reply_leaks_nothing(
    text_edge: TestClient, llm: Any, helpers: Any
) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "talk forever"})
    await helpers.until(ws, "reply.delta")
    assert edge_tasks()
    # Vanish: drop the TCP connection without a close handshake.
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    transport.abort()
    try:
        await eventually(lambda: llm.servicer.cancelled >= 1 and not edge_tasks())
    except AssertionError:  # say which part did not happen
        left = [f"{t.get_name()} ({t.get_coro()})" for t in edge_tasks()]
        raise AssertionError(
            f"not cleaned up within 5 s: llm calls cancelled {llm.servicer.cancelled}, "
            f"edge tasks left {left}"
        ) from None
    ws2, _ = await helpers.connect(text_edge)
    llm.servicer.hold = None
    await still_works(ws2, helpers)
    await ws2.close()


async def test_idle_sockets_are_closed(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, idle_timeout_s=0.3)
    ws, _ = await helpers.connect(edge)
    err = await helpers.receive(ws, within=5)
    assert err["code"] == "idle_timeout"
    await ws.receive(timeout=5)
    assert ws.close_code == 4408


async def test_a_running_reply_is_not_idle(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, idle_timeout_s=0.3)
    llm.servicer.delay_s = 0.2
    ws, _ = await helpers.connect(edge)
    await ws.send_json({"type": "text", "text": "slow one"})
    frames = await helpers.until(ws, "reply.done")
    assert all(f["type"] != "error" for f in frames)
    await ws.close()


async def test_too_many_sessions(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr}, max_sessions=2)
    first, _ = await helpers.connect(edge)
    second, _ = await helpers.connect(edge)
    third = await edge.ws_connect("/ws")
    err = await helpers.receive(third)
    assert err["code"] == "too_many_sessions"
    await third.receive(timeout=5)
    assert third.close_code == 1013
    await second.close()
    await eventually(lambda: len(edge.app[SOCKETS]) == 1, what="the closed socket's slot freed")
    fourth, _ = await helpers.connect(edge)
    await still_works(fourth, helpers)
    for ws in (first, fourth):
        await ws.close()


async def test_plain_http_on_the_socket_endpoint(text_edge: TestClient) -> None:
    response = await text_edge.get("/ws")
    assert response.status == 426


async def test_invalid_utf8_closes_only_that_socket(text_edge: TestClient, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    await ws.send_frame(b'{"type": "text", "text": "\xff\xfe"}', aiohttp.WSMsgType.TEXT)
    message = await ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1007
    ws2, _ = await helpers.connect(text_edge)
    await ws2.send_json({"type": "session.start", "session_id": hello["session_id"]})
    assert (await helpers.receive(ws2))["resumed"] is True
    await still_works(ws2, helpers)
    await ws2.close()


async def test_a_bug_in_a_handler_leaves_the_session_usable(
    text_edge: TestClient, helpers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avatarchat_edge.turn_control import TurnController
    from avatarchat_edge.turns import Turn

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    ws, _ = await helpers.connect(text_edge)
    with monkeypatch.context() as patch:
        patch.setattr(TurnController, "_reset", broken)
        patch.setattr(Turn, "run", broken)
        await ws.send_json({"type": "reset"})
        assert (await helpers.receive(ws))["code"] == "internal"
        await ws.send_json({"type": "text", "text": "hello"})
        err = await helpers.receive(ws)
        assert err["code"] == "internal" and err["turn_id"]
    await still_works(ws, helpers)
    await ws.close()
