"""``python -m avatarchat_llm`` as its own process, driven by the real ``grpcurl`` binary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarchat.nats_server import free_port

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), "-plaintext", "-max-time", str(timeout), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        check=False,
    )


def service_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AVATARCHAT_", "GROQ_"))}
    base = {"AVATARCHAT_LOG_FORMAT": "json", "AVATARCHAT_LLM_THREADS": "1"}
    base |= {"AVATARCHAT_LLM_SLOTS": "2", "AVATARCHAT_LLM_METRICS_PORT": "0"}
    return {**keep, **base, **extra}


@pytest.fixture(scope="module")
def llm_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_file = tmp_path_factory.mktemp("llm") / "llm.log"
    env = service_env(
        AVATARCHAT_LLM_PORT=str(port),
        AVATARCHAT_LLM_TEMPERATURE="0",
        AVATARCHAT_LLM_MAX_TOKENS="48",
    )
    with open(log_file, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "avatarchat_llm"], env=env, stdout=out, stderr=out
        )
    addr = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for SERVING, as a Kubernetes probe would
            health = grpcurl(addr, "grpc.health.v1.Health/Check", timeout=5)
            if '"SERVING"' in health.stdout:
                break
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        yield addr
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        logs = log_file.read_text()
        assert code == 0, logs
        events = [json.loads(line)["event"] for line in logs.splitlines() if line.startswith("{")]
        assert "service.stopping" in events and "service.stopped" in events, logs


def test_grpcurl_lists_the_services(llm_process: str) -> None:
    result = grpcurl(llm_process, "list")
    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert "avatarchat.v1.LlmService" in services
    assert "grpc.health.v1.Health" in services


def test_grpcurl_describes_the_llm_service(llm_process: str) -> None:
    result = grpcurl(llm_process, "describe", "avatarchat.v1.LlmService")
    assert result.returncode == 0, result.stderr
    reply = "rpc Reply ( .avatarchat.v1.ReplyRequest ) returns ( stream .avatarchat.v1.ReplyEvent )"
    assert reply in result.stdout
    assert "rpc GetHistory" in result.stdout and "rpc ResetHistory" in result.stdout


def test_grpcurl_streams_a_reply(llm_process: str) -> None:
    request = {"session_id": "grpcurl-1", "turn_id": "t1", "text": "Hello! Who are you?"}
    result = grpcurl(
        "-H",
        "session-id: grpcurl-1",
        "-H",
        "turn-id: t1",
        "-d",
        json.dumps(request),
        llm_process,
        "avatarchat.v1.LlmService/Reply",
    )
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    events, text = [], result.stdout.strip()
    while text:  # grpcurl prints one JSON object per message
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    assert [*events[-1]] == ["done"]
    assert all([*e] == ["delta"] for e in events[:-1]) and len(events) > 2
    done = events[-1]["done"]
    assert "".join(e["delta"]["text"] for e in events[:-1]) == done["text"]
    assert int(done["completion_tokens"]) > 0 and int(done["prompt_tokens"]) > 0

    history = grpcurl(
        "-d", '{"session_id": "grpcurl-1"}', llm_process, "avatarchat.v1.LlmService/GetHistory"
    )
    messages = json.loads(history.stdout)["messages"]
    assert [m["role"] for m in messages] == ["ROLE_USER", "ROLE_ASSISTANT"]
    assert messages[1]["text"] == done["text"]


def test_grpcurl_bad_request_gets_invalid_argument(llm_process: str) -> None:
    result = grpcurl(
        "-d",
        '{"session_id": "grpcurl-2", "turn_id": "t1", "text": "   "}',
        llm_process,
        "avatarchat.v1.LlmService/Reply",
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "text must not be blank" in result.stderr


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avatarchat_llm"],
        env=service_env(AVATARCHAT_LLM_TEMPERATURE="warm"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AVATARCHAT_LLM_TEMPERATURE" in result.stderr
