"""Edge test fixtures: in-process gRPC peers on real ports, and edges built by ``create_app``.

The peers (``ScriptedLlm``, ``RecordingAvatar``, ``ScriptedStt``) are test doubles of the
*services behind* the edge, served by the shared ``GrpcHost`` (real health and reflection), so
the edge under test talks real gRPC to them. Tests against the real llm service live in
``test_edge_real_llm.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat import lifeline
from avatarchat.grpc_server import GrpcHost
from avatarchat.nats_server import free_port
from avatarchat.v1 import (
    avatar_pb2,
    avatar_pb2_grpc,
    llm_pb2,
    llm_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
)
from avatarchat_edge.app import create_app
from avatarchat_edge.config import EdgeConfig


class ScriptedLlm(llm_pb2_grpc.LlmServiceServicer):
    """Replies with ``pieces`` as deltas, ``delay_s`` apart; ``hold`` blocks before done."""

    def __init__(self) -> None:
        self.pieces = ["Hello", " there.", " Nice", " to meet you!"]
        self.delay_s = 0.0
        self.hold: asyncio.Event | None = None
        self.fail_with: grpc.StatusCode | None = None
        self.requests: list[llm_pb2.ReplyRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.cancelled = 0
        self.finished = 0
        self.resets: list[str] = []

    async def Reply(self, request, context):
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        if self.fail_with is not None:
            await context.abort(self.fail_with, "scripted failure")
        try:
            for piece in self.pieces:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield llm_pb2.ReplyEvent(delta=llm_pb2.ReplyDelta(text=piece))
            if self.hold is not None:
                await self.hold.wait()
            yield llm_pb2.ReplyEvent(
                done=llm_pb2.ReplyDone(
                    text="".join(self.pieces),
                    completion_tokens=len(self.pieces),
                    model="scripted",
                    finish_reason="stop",
                )
            )
            self.finished += 1
        except (asyncio.CancelledError, GeneratorExit):
            # A cancel that arrives while gRPC writes the last delta finds this generator
            # suspended at its yield: it is closed (GeneratorExit), not cancelled.
            self.cancelled += 1
            raise

    async def ResetHistory(self, request, context):
        self.resets.append(request.session_id)
        return llm_pb2.ResetHistoryResponse(removed=2)

    async def GetHistory(self, request, context):
        return llm_pb2.GetHistoryResponse()


Produce = Callable[[avatar_pb2.GenerateClipRequest, str], Awaitable[None]]


class RecordingAvatar(avatar_pb2_grpc.AvatarServiceServicer):
    """Accepts clips and records what it was asked; ``reject`` refuses GenerateClip.

    With ``produce`` set, each accepted clip is handed to it in the background (tests use it to
    publish the clip's events on NATS, as the avatar service does).
    """

    def __init__(self) -> None:
        self.clips: list[avatar_pb2.GenerateClipRequest] = []
        self.cancels: list[avatar_pb2.CancelClipsRequest] = []
        self.reject: grpc.StatusCode | None = None
        self.produce: Produce | None = None
        self._producing: set[asyncio.Task[None]] = set()

    async def GenerateClip(self, request, context):
        if self.reject is not None:
            await context.abort(self.reject, "the clip queue is full")
        self.clips.append(request)
        clip_id = f"c{len(self.clips)}"
        if self.produce is not None:
            task = asyncio.create_task(self.produce(request, clip_id))
            self._producing.add(task)
            task.add_done_callback(self._producing.discard)
        return avatar_pb2.GenerateClipResponse(clip_id=clip_id)

    async def CancelClips(self, request, context):
        self.cancels.append(request)
        return avatar_pb2.CancelClipsResponse(cancelled=1)

    async def GetClip(self, request, context):
        return avatar_pb2.Clip(clip_id=request.clip_id)


class ScriptedStt(stt_pb2_grpc.SttServiceServicer):
    """Treats audio bytes as UTF-8 text, so tests control transcripts exactly.

    Without VAD: one ``final`` with all the text after the client half-closes. With VAD: every
    chunk ``"<words>|"`` is an utterance (speech_started, partial, speech_ended, final); a chunk
    starting with ``BAD`` fails the call with INVALID_ARGUMENT.
    """

    def __init__(self) -> None:
        self.configs: list[stt_pb2.StreamConfig] = []
        self.chunks: list[bytes] = []
        self.cancelled = 0

    async def StreamTranscribe(self, request_iterator, context):
        utterance = 0
        text = b""
        try:
            async for request in request_iterator:
                if request.HasField("config"):
                    self.configs.append(request.config)
                    vad = request.config.vad
                    continue
                chunk = request.audio
                self.chunks.append(chunk)
                if chunk.startswith(b"BAD"):
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "the audio is not a valid WAV file"
                    )
                if vad and chunk.endswith(b"|"):
                    words = chunk[:-1].decode()
                    yield _stt(utterance, speech_started=stt_pb2.SpeechStarted(offset_ms=0))
                    yield _stt(utterance, partial=stt_pb2.Transcript(text=words.split()[0]))
                    yield _stt(utterance, speech_ended=stt_pb2.SpeechEnded(offset_ms=900))
                    yield _stt(utterance, final=stt_pb2.Transcript(text=words, audio_ms=900))
                    utterance += 1
                elif not vad:
                    text += chunk
                    yield _stt(0, partial=stt_pb2.Transcript(text=text.decode(errors="replace")))
            if not vad:
                yield _stt(0, final=stt_pb2.Transcript(text=text.decode(errors="replace")))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def _stt(utterance: int, **event: Any) -> stt_pb2.TranscriptEvent:
    return stt_pb2.TranscriptEvent(utterance=utterance, **event)


@dataclasses.dataclass
class Peer:
    """A test double served on a fixed port, which can be stopped and started again."""

    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]
    name: str
    port: int = dataclasses.field(default_factory=free_port)
    host: GrpcHost | None = None

    @property
    def addr(self) -> str:
        assert self.port, f"{self.name} has not bound its port yet"
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.host = GrpcHost(
            port=self.port,
            service_names=[self.name],
            host="127.0.0.1",
            register=lambda server: self.add(self.servicer, server),
        )
        await self.host.start()
        await self.host.set_serving(True)

    async def stop(self) -> None:
        if self.host is not None:
            await self.host.stop(0)
            self.host = None


async def _peer(servicer: Any, add: Callable[[Any, grpc.aio.Server], None], name: str):
    peer = Peer(servicer, add, name)
    await peer.start()
    return peer


@pytest.fixture
async def llm() -> AsyncIterator[Peer]:
    peer = await _peer(
        ScriptedLlm(), llm_pb2_grpc.add_LlmServiceServicer_to_server, "avatarchat.v1.LlmService"
    )
    yield peer
    await peer.stop()


@pytest.fixture
async def avatar() -> AsyncIterator[Peer]:
    peer = await _peer(
        RecordingAvatar(),
        avatar_pb2_grpc.add_AvatarServiceServicer_to_server,
        "avatarchat.v1.AvatarService",
    )
    yield peer
    await peer.stop()


@pytest.fixture
async def make_avatar() -> AsyncIterator[Callable[[], Awaitable[Peer]]]:
    """Starts as many ``RecordingAvatar`` peers as a test asks for (pods of one Deployment)."""
    peers: list[Peer] = []

    async def make() -> Peer:
        peer = await _peer(
            RecordingAvatar(),
            avatar_pb2_grpc.add_AvatarServiceServicer_to_server,
            "avatarchat.v1.AvatarService",
        )
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        await peer.stop()


@pytest.fixture
async def stt() -> AsyncIterator[Peer]:
    peer = await _peer(
        ScriptedStt(), stt_pb2_grpc.add_SttServiceServicer_to_server, "avatarchat.v1.SttService"
    )
    yield peer
    await peer.stop()


EdgeFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_edge() -> AsyncIterator[EdgeFactory]:
    """Builds and serves edges: ``await make_edge({env...}, field=value...)``."""
    clients: list[TestClient] = []

    async def make(env: dict[str, str] | None = None, **overrides: Any) -> TestClient:
        environ = {
            "AVATARCHAT_LLM_ADDR": "",
            "AVATARCHAT_STT_ADDR": "",
            "AVATARCHAT_AVATAR_ADDR": "",
            **(env or {}),
        }
        config = dataclasses.replace(EdgeConfig.from_env(environ), **overrides)
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def text_edge(make_edge: EdgeFactory, llm: Peer) -> TestClient:
    """An edge with only the (scripted) llm behind it."""
    return await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr})


async def receive(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> dict[str, Any]:
    message = await ws.receive(timeout=within)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = message.json()
    return frame


async def until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, within: float = 10
) -> list[dict[str, Any]]:
    """Frames up to and including the first of type ``kind``."""
    frames = []
    while True:
        frame = await receive(ws, within)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


async def connect(client: TestClient, path: str = "/ws", **kwargs: Any):
    """Opens a socket and reads the ``session`` frame: (ws, session_frame)."""
    ws = await client.ws_connect(path, **kwargs)
    hello = await receive(ws)
    assert hello["type"] == "session", hello
    return ws, hello


@pytest.fixture
def helpers() -> Any:
    class Helpers:
        receive = staticmethod(receive)
        until = staticmethod(until)
        connect = staticmethod(connect)

    return Helpers


# --- real service processes, for the scale-out tests ----------------------------------------

# What a child may inherit from this process; nothing from a developer's AVATARCHAT_* settings.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")


# The log line in which each kind of service says which port it bound.
_BOUND = {"avatarchat_edge": "edge.serving"}


@dataclasses.dataclass
class ServiceProcess:
    """One service run as ``python -m <module>``, its JSON log lines collected as they come.

    Its port is 0 in ``env``: the service binds a free one and says which in its log. A port
    chosen here and bound by the child later could be taken in between by any other process
    (another service's llama-server did, in one run).
    """

    name: str
    module: str
    env: dict[str, str]
    port: int = 0  # known once the service has logged it
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def addr(self) -> str:
        assert self.port, f"{self.name} has not bound its port yet"
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update({"AVATARCHAT_LOG_FORMAT": "json", "AVATARCHAT_LOG_LEVEL": "info", **self.env})
        self.proc = lifeline.spawn(  # dies with this test process, even if it is killed
            [sys.executable, "-m", self.module],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pump = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self.pump.start()
        return self

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "text", "text": raw.decode(errors="replace").rstrip()}
            if isinstance(line, dict):
                if line.get("event") == _BOUND.get(self.module, "service.starting"):
                    self.port = int(line["port"])
                with self._lock:
                    self.lines.append(line)

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The log lines of ``event`` whose fields have the given values."""
        with self._lock:
            lines = list(self.lines)
        return [
            line
            for line in lines
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    async def wait_serving(self, within_s: float = 120.0) -> None:
        """Until the gRPC health service says SERVING (or the edge's /readyz says 200)."""
        deadline = time.monotonic() + within_s
        while not (self.port and await self._ready()):
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = "\n".join(str(line) for line in self.lines[-20:])
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} is not ready after {within_s:g} s")
            await asyncio.sleep(0.2)

    async def _ready(self) -> bool:
        if self.module == "avatarchat_edge":
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://{self.addr}/readyz") as response:
                        return response.status == 200
            except aiohttp.ClientError:
                return False
        async with grpc.aio.insecure_channel(self.addr) as channel:
            try:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is None:
            return
        self.proc.wait(timeout=10)
        if self.pump is not None:
            self.pump.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def service_process() -> type[ServiceProcess]:
    """The ``ServiceProcess`` class (test modules cannot import this conftest)."""
    return ServiceProcess
