"""The supervised llama-server: a real generation with the installed build exits cleanly, a
dead engine turns health NOT_SERVING and is restarted, and it never outlives the service."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from openai import AsyncOpenAI, AuthenticationError

from avatarchat.nats_server import free_port
from avatarchat.v1 import llm_pb2
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.engine import LlamaServer, llama_server_argv

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def local_config(**extra: str) -> Any:
    env = {"AVATARCHAT_LLM_THREADS": "1", "AVATARCHAT_LLM_SLOTS": "2", **extra}
    config = LlmConfig.from_env(env).local
    assert config is not None
    return config


def test_the_command_line_uses_slots_threads_and_the_prompt_cache() -> None:
    argv = llama_server_argv(local_config(AVATARCHAT_LLM_SLOTS="3"), 8123, "m.gguf")
    flags = {
        flag: value
        for flag, value in itertools.pairwise(argv)
        if flag.startswith("--") and not value.startswith("--")
    }
    assert argv[0].endswith("llama-server/llama-server")
    assert "--cont-batching" in argv and "--cache-prompt" in argv and "--metrics" in argv
    assert flags["--parallel"] == "3" and flags["--threads"] == "1"
    assert flags["--ctx-size"] == str(3 * 2048)  # per-slot context times the slots
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"


async def test_a_real_generation_with_the_installed_build_does_not_crash() -> None:
    """Issue 9: llama.cpp's AMX path segfaulted on the first decode. This build must not."""
    engine = LlamaServer(local_config(), "default")
    await engine.start()
    try:
        client = AsyncOpenAI(base_url=f"{engine.url}/v1", api_key=engine.api_key, max_retries=0)
        async with client:
            for text in ("Hello! Who are you?", "Write one sentence about the sea."):
                reply = await client.chat.completions.create(
                    model="default",
                    messages=[{"role": "user", "content": text}],
                    max_tokens=48,
                    temperature=0,
                )
                assert (reply.choices[0].message.content or "").strip()
                assert reply.usage is not None and reply.usage.completion_tokens > 0
        assert engine.process is not None and engine.process.poll() is None, "it crashed"
        stranger = AsyncOpenAI(base_url=f"{engine.url}/v1", api_key="guess", max_retries=0)
        async with stranger:
            with pytest.raises(AuthenticationError):  # only the llm service may use it
                await stranger.chat.completions.create(
                    model="default", messages=[{"role": "user", "content": "Hi"}]
                )
    finally:
        await engine.stop()
    assert engine.process.returncode == 0  # a clean exit on SIGTERM, not a signal


async def test_every_slot_starts_with_the_system_prompt_cached() -> None:
    """A burst of first turns on a new engine (one per slot, at once) evaluates only the users'
    words: the warm-up opened with the system prompt, and its slot was copied into the others."""
    system = "You are a friendly avatar. Answer in one short sentence, in plain words."
    engine = LlamaServer(local_config(), "default", system_prompt=system)
    await engine.start()
    try:
        client = AsyncOpenAI(base_url=f"{engine.url}/v1", api_key=engine.api_key, max_retries=0)
        async with client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="default",
                        messages=[
                            {"role": "system", "content": system},
                            {"role": "user", "content": f"I am visitor {n}. What is rain?"},
                        ],
                        max_tokens=4,
                        extra_body={"cache_prompt": True},
                    )
                    for n in range(engine.config.slots)
                )
            )
        for reply in replies:
            assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
            cached = reply.usage.prompt_tokens_details.cached_tokens or 0
            assert cached > 20, f"{cached} of {reply.usage.prompt_tokens} tokens were cached"
        slot_dir = engine._slot_dir
        assert slot_dir is not None and slot_dir.is_dir()
    finally:
        await engine.stop()
    assert not slot_dir.exists()  # the copy of the slot's cache goes with the engine


async def health(addr: str) -> int:
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(response.status)


async def wait_health(addr: str, status: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while await health(addr) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        await asyncio.sleep(0.05)


async def test_a_dead_engine_is_reported_and_restarted_then_given_up_on(
    start_llm: Any, ask: Any
) -> None:
    async with start_llm({"AVATARCHAT_LLM_MAX_RESTARTS": "1"}) as llm:
        engine = llm.app.engine
        assert await health(llm.addr) == SERVING
        first_pid = engine.process.pid
        os.kill(first_pid, signal.SIGKILL)
        await wait_health(llm.addr, NOT_SERVING)
        await wait_health(llm.addr, SERVING)  # restarted, warmed up
        assert engine.process.pid != first_pid and engine.restarts == 1
        assert (await ask(llm.stub, "after-restart", "Hello!")).done.text.strip()

        os.kill(engine.process.pid, signal.SIGKILL)  # no restarts left
        await wait_health(llm.addr, NOT_SERVING)
        call = llm.stub.Reply(
            llm_pb2.ReplyRequest(session_id="s", turn_id="t", text="Hello"), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "llama-server" in (raised.value.details() or "")
        # History does not need the engine.
        history = await llm.stub.GetHistory(
            llm_pb2.GetHistoryRequest(session_id="after-restart"), timeout=5
        )
        assert len(history.messages) == 2


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def sync_health(addr: str) -> int | None:
    with grpc.insecure_channel(addr) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        except grpc.RpcError:
            return None
        return int(response.status)


def test_the_engine_dies_with_the_service_even_on_sigkill(tmp_path: Path) -> None:
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AVATARCHAT_", "GROQ_"))}
    env = {
        **keep,
        "AVATARCHAT_LLM_PORT": str(port),
        "AVATARCHAT_LLM_METRICS_PORT": "0",
        "AVATARCHAT_LLM_THREADS": "1",
        "AVATARCHAT_LLM_SLOTS": "1",
        "AVATARCHAT_LOG_FORMAT": "json",
    }
    log_file = tmp_path / "llm.log"
    with open(log_file, "wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "avatarchat_llm"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert service.poll() is None, log_file.read_text()
            if sync_health(f"127.0.0.1:{port}") == SERVING:
                break
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        [engine_pid] = [c for c in children_of(service.pid) if alive(c)]
        assert "llama-server" in Path(f"/proc/{engine_pid}/cmdline").read_text()
        service.kill()
        service.wait(10)
        deadline = time.monotonic() + 10
        while alive(engine_pid):
            assert time.monotonic() < deadline, "llama-server outlived the killed llm service"
            time.sleep(0.05)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
