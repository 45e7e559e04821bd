"""The ``local`` backend's engine: a llama-server child process that this service supervises.

- ``start`` picks a free loopback port, starts llama-server with ``--parallel`` slots and
  continuous batching, waits for its ``/health``, then runs a warm-up generation that opens
  with the system prompt in slot 0, saves that slot's KV cache and restores it into every
  other slot (llama-server's ``/slots`` API, files in a private temporary directory). So the
  service only reports SERVING once a real generation has worked, and every slot holds the
  system prompt: the first turns of the first sessions (a new pod, a burst of users) evaluate
  only their own words, as every later turn does (a slot's earlier conversation shares that
  prefix), and the warm-up costs one prompt, not one per slot.
- The child dies with this process even on SIGKILL (``avatarchat.lifeline.spawn``:
  ``PR_SET_PDEATHSIG``), and lives in its own session, so the terminal's signals reach only us.
- ``watch`` notices when the child dies: health goes NOT_SERVING, and the engine is restarted
  up to ``max_restarts`` times (counted over the process's life); after that it stays down and
  health stays NOT_SERVING, which a Kubernetes probe turns into a pod restart.
- ``stop`` terminates it (SIGTERM, then SIGKILL after a few seconds).
- It listens on loopback only and demands a random API key (passed in its environment, which
  other users cannot read), so neither another local user nor a web page in a local browser
  (llama-server allows any CORS origin) can use it; only ``/health`` is open.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from avatarchat import log
from avatarchat.errors import Unavailable
from avatarchat.lifeline import spawn
from avatarchat.nats_server import free_port

from .config import LocalConfig

_log = log.get("avatarchat.llm.engine")

CACHE_REUSE_TOKENS = 128  # min chunk llama-server shifts in its KV cache to reuse it
WARM_UP_MESSAGE = {"role": "user", "content": "Hello!"}
WARM_UP_TOKENS = 8
WARM_SLOT_FILE = "warm-up.bin"  # slot 0's KV cache after the warm-up, restored into the others


class EngineFailed(RuntimeError):
    """llama-server would not start, answer its health check, or generate."""


def llama_server_argv(
    config: LocalConfig, port: int, alias: str, slot_dir: Path | None = None
) -> list[str]:
    """The command line; every flag exists in the pinned llama.cpp (``llama-server --help``).

    ``slot_dir``: where ``/slots`` may save and restore slots' KV caches (the warm-up's copy).
    """
    threads = str(config.threads)
    return [
        str(config.binary),
        "--model", str(config.model_path),
        "--alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--parallel", str(config.slots),
        "--cont-batching",
        "--ctx-size", str(config.slots * config.context_tokens),  # split evenly over the slots
        "--threads", threads,
        "--threads-batch", threads,
        "--cache-prompt",
        "--cache-reuse", str(CACHE_REUSE_TOKENS),
        "--cache-ram", str(config.cache_ram_mib),
        "--metrics",
        "--no-webui",
        "--seed", str(config.seed),
        *(["--slot-save-path", str(slot_dir)] if slot_dir is not None else []),
    ]  # fmt: skip


class LlamaServer:
    """One supervised llama-server. ``on_health`` is told True once it serves, False when not."""

    def __init__(
        self,
        config: LocalConfig,
        alias: str,
        on_health: Callable[[bool], Awaitable[None]] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.config = config
        self.alias = alias
        self.system_prompt = system_prompt  # what every slot's warm-up opens with
        self._on_health = on_health
        # Chosen once, so the client's base URL and key stay right across restarts.
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.healthy = False
        self._stopping = False
        self._output: collections.deque[str] = collections.deque(maxlen=40)
        self._watcher: asyncio.Task[None] | None = None
        self._pump_thread: threading.Thread | None = None
        self._slot_dir: Path | None = None  # made at start, removed at stop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """The header every request but ``/health`` needs."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def check_healthy(self) -> None:
        if not self.healthy:
            raise Unavailable("the local llm engine (llama-server) is not running; retry soon")

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts llama-server, waits for /health and the warm-up of its slots; then watches it."""
        if self.config.slots > 1:
            self._slot_dir = Path(tempfile.mkdtemp(prefix="avatarchat-llama-slots-"))
        await self._launch()
        self._watcher = asyncio.create_task(self._watch(), name="llama-server-watch")

    async def _launch(self) -> None:
        argv = llama_server_argv(self.config, self.port, self.alias, self._slot_dir)
        started = time.perf_counter()
        env = {**os.environ, "LLAMA_API_KEY": self.api_key}
        self.process = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env)  # fmt: skip
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.process,), name="llama-server-log", daemon=True
        )
        self._pump_thread.start()
        _log.info("llm.engine.starting", pid=self.process.pid, port=self.port, argv=argv)
        try:
            await self._wait_healthy()
            reply = await self._warm_up()
        except BaseException:
            self._terminate()
            raise
        self.healthy = True
        _log.info(
            "llm.engine.ready",
            pid=self.process.pid,
            port=self.port,
            slots=self.config.slots,
            threads=self.config.threads,
            start_s=round(time.perf_counter() - started, 2),
            warm_up_reply=reply,
        )
        if self._on_health is not None:
            await self._on_health(True)

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        """Keeps the child's last lines for a crash report; passes on its warnings and errors."""
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._output.append(line)
                if " E " in line[:24] or " W " in line[:24]:
                    _log.warning("llm.engine.output", pid=process.pid, line=line)

    def _failure(self, why: str) -> EngineFailed:
        tail = "\n".join(list(self._output)[-15:])
        return EngineFailed(f"llama-server {why}; its last output:\n{tail}")

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise self._failure(f"exited with {self.process.returncode} while starting")
                try:
                    async with http.get(
                        f"{self.url}/health", timeout=aiohttp.ClientTimeout(2)
                    ) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise self._failure(
                        f"was not healthy within {self.config.startup_timeout_s:g} s "
                        "(AVATARCHAT_LLM_STARTUP_TIMEOUT_S)"
                    )
                await asyncio.sleep(0.1)

    async def _warm_up(self) -> str:
        """A real generation in slot 0, opening with the system prompt, then that slot's cache
        copied into the others; raises if any step fails or the generation says nothing."""
        messages = [WARM_UP_MESSAGE]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        body = {
            "model": self.alias,
            "messages": messages,
            "max_tokens": WARM_UP_TOKENS,
            "id_slot": 0,
            "cache_prompt": True,
        }
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(self.config.startup_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            data = await self._post(http, "/v1/chat/completions", body, "the warm-up")
            text = str(data["choices"][0]["message"].get("content") or "")
            if not text.strip() and not data.get("usage", {}).get("completion_tokens"):
                raise self._failure("generated nothing in its warm-up")
            if self._slot_dir is not None:
                file = {"filename": WARM_SLOT_FILE}
                await self._post(http, "/slots/0?action=save", file, "saving slot 0")
                for slot in range(1, self.config.slots):
                    what = f"restoring slot {slot}"
                    await self._post(http, f"/slots/{slot}?action=restore", file, what)
        return text

    async def _post(
        self, http: aiohttp.ClientSession, path: str, body: dict[str, Any], what: str
    ) -> dict[str, Any]:
        async with http.post(f"{self.url}{path}", json=body, headers=self.auth) as response:
            if response.status != 200:
                detail = (await response.text())[:300]
                raise self._failure(f"answered {what} with HTTP {response.status}: {detail}")
            data: dict[str, Any] = await response.json()
            return data

    async def _watch(self) -> None:
        while True:
            process = self.process
            assert process is not None
            code = await asyncio.to_thread(process.wait)
            if self._stopping:
                return
            self.healthy = False
            _log.error(
                "llm.engine.died",
                pid=process.pid,
                exit_code=code,
                restarts=self.restarts,
                last_output="\n".join(list(self._output)[-10:]),
            )
            if self._on_health is not None:
                await self._on_health(False)
            if self.restarts >= self.config.max_restarts:
                _log.error("llm.engine.given_up", restarts=self.restarts)
                return
            self.restarts += 1
            try:
                await self._launch()
            except Exception as exc:
                _log.error("llm.engine.restart_failed", error=str(exc)[:2000])
                return

    def _terminate(self, timeout_s: float = 5.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(2.0)  # it reads the pipe to its end, then closes it

    async def stop(self) -> None:
        self._stopping = True
        self.healthy = False
        await asyncio.to_thread(self._terminate)
        if self._pump_thread is not None:
            await asyncio.to_thread(self._pump_thread.join, 2.0)
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        if self._slot_dir is not None:
            shutil.rmtree(self._slot_dir, ignore_errors=True)
            self._slot_dir = None
        if self.process is not None:
            _log.info("llm.engine.stopped", pid=self.process.pid, code=self.process.returncode)


def model_alias(path: Path) -> str:
    return path.name
