"""The terminal client, run as a real process against a served edge."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp.test_utils import TestClient


async def run_chat(edge: TestClient, stdin: bytes, *args: str) -> tuple[int, str, str]:
    url = f"ws://{edge.host}:{edge.port}/ws"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "avatarchat_edge.chat",
        "--url",
        url,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_chat_streams_replies(text_edge: TestClient, llm: Any) -> None:
    code, out, err = await run_chat(text_edge, b"Hello there\n/reset\nSecond line\n")
    assert code == 0, err
    assert out.count("avatar> Hello there. Nice to meet you!\n") == 2
    assert "conversation cleared" in err
    assert [r.text for r in llm.servicer.requests] == ["Hello there", "Second line"]


async def test_chat_shows_errors(text_edge: TestClient) -> None:
    code, _, err = await run_chat(text_edge, b"" + b"x" * 3000 + b"\n")
    assert code == 0
    assert "error [text_too_long]" in err


async def test_chat_cannot_connect() -> None:
    from avatarchat.nats_server import free_port

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "avatarchat_edge.chat",
        "--url",
        f"ws://127.0.0.1:{free_port()}/ws",
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 1 and b"cannot connect" in err
