"""serve_main: one process entry point for the gRPC services, run as a real process.

The service under test is a small app with a real ``GrpcHost``. It prints when its exit stack
closes to stderr, next to its logs, so the order of start, load, SIGTERM, server stop and
exit-stack close can be read from one stream.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat.nats_server import free_port

APP = """
import sys
from dataclasses import dataclass

from avatarchat.config import ConfigError, Env, RuntimeConfig
from avatarchat.grpc_server import GrpcHost
from avatarchat.service_main import serve_main

mode, port = sys.argv[1], int(sys.argv[2])


@dataclass(frozen=True)
class Config:
    runtime: RuntimeConfig
    delay: float


def from_env() -> Config:
    return Config(RuntimeConfig.from_env(), Env().float("DEMO_DELAY_S", 0.0))


class App:
    def __init__(self, config, stack) -> None:
        self.host = GrpcHost(port=port, service_names=["demo.v1.Demo"], register=lambda s: None,
                             host="127.0.0.1")
        stack.callback(print, '{"event": "stack.closed"}', file=sys.stderr, flush=True)

    async def load(self) -> None:
        if mode == "bad-model":
            raise ConfigError("/nonexistent is not a model directory")
        if mode == "broken":
            raise RuntimeError("the backend would not start")


sys.exit(serve_main("demo", from_env, App))
"""


def start(tmp_path: Path, mode: str, port: int, **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "demo_service.py"
    script.write_text(APP)
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(port)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "AVATARCHAT_LOG_FORMAT": "json",
            "AVATARCHAT_SHUTDOWN_GRACE_S": "1",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[str], str]:
    _, err = proc.communicate(timeout=30)
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    return proc.returncode, events, err


def serving(port: int, within_s: float = 20.0) -> bool:
    """Polls the health service until it says SERVING; False if it never does in time."""
    deadline = time.monotonic() + within_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
            except grpc.RpcError:
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return True
            time.sleep(0.05)
    return False


def test_serves_until_sigterm_then_stops_the_server_before_closing_the_stack(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = start(tmp_path, "serve", port)
    try:
        assert serving(port)
    finally:
        proc.send_signal(signal.SIGTERM)
    status, events, err = finish(proc)
    assert status == 0, err
    order = ["service.starting", "service.serving", "service.stopping", "service.stopped"]
    assert [e for e in events if e in order] == order
    assert events.index("stack.closed") > events.index("service.stopped")


def test_a_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    proc = start(tmp_path, "serve", free_port(), DEMO_DELAY_S="soon")
    status, events, err = finish(proc)
    assert status == 2
    assert "avatarchat-demo: configuration error: DEMO_DELAY_S must be a number" in err
    assert "service.starting" not in events


def test_a_configuration_error_found_while_loading_exits_2(tmp_path: Path) -> None:
    proc = start(tmp_path, "bad-model", free_port())
    status, events, err = finish(proc)
    assert status == 2
    assert "configuration error: /nonexistent is not a model directory" in err
    assert "stack.closed" in events  # what the app opened is still closed


def test_a_taken_port_exits_1_saying_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = start(tmp_path, "serve", taken.getsockname()[1])
        status, events, err = finish(proc)
    assert status == 1
    assert "cannot bind gRPC port" in err and "service.failed" in events


def test_a_failed_load_exits_non_zero(tmp_path: Path) -> None:
    proc = start(tmp_path, "broken", free_port())
    status, events, err = finish(proc)
    assert status not in (0, None)
    assert "the backend would not start" in err
    assert "service.serving" not in events and "stack.closed" in events


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_either_signal_stops_it_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = start(tmp_path, "serve", port)
    try:
        assert serving(port)
    finally:
        proc.send_signal(sig)
    status, events, err = finish(proc)
    assert status == 0, err
    assert events[-2:] == ["service.stopped", "stack.closed"]
