"""`make run` with ``--replicas 2``: two processes of each service on one machine, as two pods.

Runs ``python -m avatarchat.devstack`` for real (nats-server, two avatar and two edge
processes), checks that every replica serves and that the edges offer the avatar, resumes a
session from one edge on the other, then stops it with SIGINT. (Balancing over replicas is
tested in ``services/edge/tests/test_edge_scale_out.py``.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat.nats_server import free_port

UP = b"avatarchat is up"


@pytest.fixture
def two_of_each(tmp_path: Path) -> Iterator[tuple[list[int], list[int], Path]]:
    edge_port, avatar_port = free_port(), free_port()
    log_path = tmp_path / "devstack.out"
    env = dict(
        os.environ,
        AVATARCHAT_LOG_FORMAT="json",
        AVATARCHAT_AVATAR_PORT=str(avatar_port),
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "avatarchat.devstack",
                "--state",
                str(tmp_path / "state"),
                "--services",
                "avatar,edge",
                "--replicas",
                "2",
                "--port",
                str(edge_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while UP not in log_path.read_bytes():
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "the stack did not come up"
                time.sleep(0.2)
            yield [edge_port, edge_port + 1], [avatar_port, avatar_port + 10], log_path
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log_path.read_text(errors="replace")[-3000:]


async def _serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict:
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return message.json()


async def test_replicas_run_side_by_side_and_share_sessions(
    two_of_each: tuple[list[int], list[int], Path],
) -> None:
    edges, avatars, _ = two_of_each
    assert await asyncio.gather(*(_serving(port) for port in avatars)) == [True, True]
    async with aiohttp.ClientSession() as http:
        for port in edges:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200, await response.text()
        first = await http.ws_connect(f"ws://127.0.0.1:{edges[0]}/ws")
        hello = await _frame(first)
        assert hello["features"]["avatar"] is True
        await first.send_json({"type": "session.start", "video": False})
        assert (await _frame(first))["video"] is False
        await first.close()
        second = await http.ws_connect(f"ws://127.0.0.1:{edges[1]}/ws")
        await _frame(second)
        await second.send_json({"type": "session.start", "session_id": hello["session_id"]})
        resumed = await _frame(second)
        assert resumed["type"] == "session", resumed
        assert (resumed["session_id"], resumed["resumed"], resumed["video"]) == (
            hello["session_id"],
            True,
            False,
        )
        await second.close()
