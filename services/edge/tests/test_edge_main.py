"""``python -m avatarchat_edge`` as a real process: startup log, TLS, SIGTERM, bad config."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from avatarchat.nats_server import free_port


async def start_edge(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    full_env = {
        **os.environ,
        "AVATARCHAT_EDGE_PORT": str(port),
        "AVATARCHAT_STT_ADDR": "",
        "AVATARCHAT_AVATAR_ADDR": "",
        "AVATARCHAT_LOG_FORMAT": "json",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "avatarchat_edge",
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return process, port


async def wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            assert process.returncode is None, "the edge exited"
            try:
                async with http.get(url, ssl=False) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the edge never became healthy")


async def test_serves_and_stops_gracefully_on_sigterm(llm: Any, helpers: Any) -> None:
    process, port = await start_edge({"AVATARCHAT_LLM_ADDR": llm.addr})
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
                assert (await helpers.receive(ws))["type"] == "session"
                await ws.send_json({"type": "text", "text": "hello"})
                await helpers.until(ws, "reply.done")
                process.send_signal(signal.SIGTERM)
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.CLOSE
                assert ws.close_code == 1001  # going away
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    output = (await process.stdout.read()).decode()
    assert '"edge.localhost_only"' in output
    assert '"edge.serving"' in output and '"edge.stopped"' in output


async def test_https_when_a_certificate_is_configured(llm: Any, tmp_path: Path) -> None:
    from avatarchat.selfsigned import ensure_certificate

    cert, key = ensure_certificate(tmp_path)
    process, port = await start_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_TLS_CERT": str(cert),
            "AVATARCHAT_EDGE_TLS_KEY": str(key),
        }
    )
    try:
        await wait_healthy(f"https://127.0.0.1:{port}/healthz", process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0


async def test_bad_config_exits_2_naming_the_variable() -> None:
    process, _ = await start_edge({"AVATARCHAT_EDGE_MAX_SESSIONS": "many"})
    output, _ = await process.communicate()
    assert process.returncode == 2
    assert b"AVATARCHAT_EDGE_MAX_SESSIONS" in output


async def test_port_in_use_exits_1(llm: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process, _ = await start_edge(
            {"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_EDGE_PORT": str(port)}
        )
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert b"edge.bind_failed" in output
