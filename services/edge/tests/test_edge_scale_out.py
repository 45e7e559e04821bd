"""One edge in front of two avatar and two llm processes, as an edge pod sees a scaled-out
Deployment through a headless Service: real service processes, a real nats-server.

- Replies and clips are spread over both processes of each kind (``round_robin``).
- An interrupt reaches every avatar process (a broadcast), and each stops its clips of the session.
- When one process of each kind is killed, the next turns all succeed on the survivors.

Which process served a call is read from its own log (its one ``rpc.done`` line per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from avatarchat import bus
from avatarchat.nats_server import NatsServer
from avatarchat.v1 import events_pb2
from avatarchat_edge.app import create_app
from avatarchat_edge.config import EdgeConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def receive(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> dict[str, Any]:
    message = await ws.receive(timeout=within)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = message.json()
    return frame


async def connect(client: TestClient) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await client.ws_connect("/ws")
    hello = await receive(ws)
    assert hello["type"] == "session", hello
    return ws, hello


@dataclasses.dataclass
class Pods:
    avatars: list[Any]  # conftest.ServiceProcess
    llms: list[Any]
    nats_url: str

    def edge_env(self) -> dict[str, str]:
        return {
            "AVATARCHAT_NATS_URL": self.nats_url,
            "AVATARCHAT_AVATAR_ADDR": "ipv4:" + ",".join(p.addr for p in self.avatars),
            "AVATARCHAT_LLM_ADDR": "ipv4:" + ",".join(p.addr for p in self.llms),
            "AVATARCHAT_STT_ADDR": "",
        }


def _avatar(make: Any, nats_url: str, index: int) -> Any:
    env = {
        "AVATARCHAT_NATS_URL": nats_url,
        "AVATARCHAT_AVATAR_PORT": "0",
        "AVATARCHAT_AVATAR_WORKERS": "1",  # clips queue, so a cancel finds work to stop
        "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
        "AVATARCHAT_LOG_LEVEL": "debug",  # its cancel.heard lines
    }
    return make(f"avatar-{index}", "avatarchat_avatar", env)


def _llm(make: Any, nats_url: str, index: int) -> Any:
    env = {
        "AVATARCHAT_NATS_URL": nats_url,
        "AVATARCHAT_LLM_PORT": "0",
        "AVATARCHAT_LLM_METRICS_PORT": "0",
        "AVATARCHAT_LLM_MODEL": "smollm2-135m",
        "AVATARCHAT_LLM_THREADS": "1",
        "AVATARCHAT_LLM_SLOTS": "2",
        "AVATARCHAT_LLM_MAX_TOKENS": "24",
        "AVATARCHAT_LLM_TEMPERATURE": "0",
        "AVATARCHAT_LLM_HISTORY": "nats",  # any replica can serve any session
        "AVATARCHAT_SHUTDOWN_GRACE_S": "2",
    }
    return make(f"llm-{index}", "avatarchat_llm", env)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pods(nats_server: NatsServer, service_process: Any) -> AsyncIterator[Pods]:
    running = Pods(
        avatars=[_avatar(service_process, nats_server.url, i) for i in range(2)],
        llms=[_llm(service_process, nats_server.url, i) for i in range(2)],
        nats_url=nats_server.url,
    )
    everyone = [*running.avatars, *running.llms]
    try:
        for process in everyone:
            process.start()
        await asyncio.gather(*(p.wait_serving(within_s=240) for p in everyone))
        yield running
    finally:
        for process in everyone:
            await asyncio.to_thread(process.stop)


class Edge:
    """An edge app served in this process, talking to the pods."""

    def __init__(self, env: dict[str, str], **overrides: Any) -> None:
        config = dataclasses.replace(EdgeConfig.from_env(env), **overrides)
        self.client = TestClient(TestServer(create_app(config)))

    async def __aenter__(self) -> TestClient:
        await self.client.start_server()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


@dataclasses.dataclass
class TurnResult:
    turn_id: str
    clips: int
    frames: list[dict[str, Any]]
    first_delta_at: float  # time.monotonic() of the first reply.delta
    first_speech_at: float | None  # and of the first clip.speech


async def run_turn(ws: aiohttp.ClientWebSocketResponse, text: str) -> TurnResult:
    """One turn to its end: reply.done, then clip.speech for each of its clips."""
    await ws.send_json({"type": "text", "text": text})
    frames: list[dict[str, Any]] = []
    done: dict[str, Any] | None = None
    spoken: set[int] = set()
    first_delta_at = first_speech_at = None
    while done is None or len(spoken) < done["clips"]:
        frame = await receive(ws, within=60)
        frames.append(frame)
        assert frame["type"] not in ("error", "clip.failed"), frame
        if frame["type"] == "reply.delta" and first_delta_at is None:
            first_delta_at = time.monotonic()
        elif frame["type"] == "reply.done":
            done = frame
        elif frame["type"] == "clip.speech":
            spoken.add(frame["seq"])
            first_speech_at = first_speech_at or time.monotonic()
    assert first_delta_at is not None, frames
    return TurnResult(done["turn_id"], done["clips"], frames, first_delta_at, first_speech_at)


def calls(process: Any, rpc: str, session_id: str) -> int:
    return len(process.logged("rpc.done", rpc=rpc, session_id=session_id, code="OK"))


QUESTIONS = [
    "Say hello.",
    "Name a colour.",
    "Name a fruit.",
    "Name an animal.",
    "Name a city.",
    "Name a number.",
]


async def test_replies_and_clips_spread_over_every_process(pods: Pods) -> None:
    async with Edge(pods.edge_env()) as edge:
        ws, hello = await connect(edge)
        sid = hello["session_id"]
        await ws.send_json({"type": "session.start", "video": False})
        assert (await receive(ws))["type"] == "session"
        turns = [await run_turn(ws, question) for question in QUESTIONS]
        await ws.close()
    clips = sum(t.clips for t in turns)
    replies = [calls(p, "Reply", sid) for p in pods.llms]
    generated = [calls(p, "GenerateClip", sid) for p in pods.avatars]
    print(f"replies per llm {replies}, clips per avatar {generated} of {clips}")
    assert sum(replies) == len(QUESTIONS) and sum(generated) == clips
    assert min(replies) >= 2, replies  # round robin: about half each
    assert clips >= 4 and min(generated) >= clips // 3, generated


async def test_an_interrupt_reaches_every_avatar_process_and_cancels_their_clips(
    pods: Pods, nats_server: NatsServer
) -> None:
    env = pods.edge_env()
    # Short clips, so one reply makes several and both processes get some.
    async with Edge(env, first_clip_words=2, max_clip_words=3) as edge:
        ws, hello = await connect(edge)
        sid = hello["session_id"]
        events = await EventLog.open(nats_server.url, sid)
        await ws.send_json({"type": "text", "text": "Tell me about the sea and the sky."})
        done = None
        while done is None:
            frame = await receive(ws, within=60)
            assert frame["type"] != "error", frame
            if frame["type"] == "reply.done":
                done = frame
        assert done["clips"] >= 4, done
        await ws.send_json({"type": "interrupt"})
        # Every clip a process accepted ends, one way or the other (clips the edge had not sent
        # yet are simply never requested), and every process says it heard the cancel.
        accepted = lambda: sum(calls(p, "GenerateClip", sid) for p in pods.avatars)  # noqa: E731
        heard = lambda: [p.logged("cancel.heard", session_id=sid) for p in pods.avatars]  # noqa: E731
        await events.until(
            lambda: len(events.ended) >= accepted() > 0 and all(heard()), within_s=60
        )
        await ws.close()
        await events.close()
    assert set(events.ended) == set(range(1, accepted() + 1)), events.ended
    assert all(calls(p, "GenerateClip", sid) for p in pods.avatars), "one process got no clip"
    # Which clips a process has still to finish when the cancel comes depends on the cores; what
    # does not: each hears it (a broadcast, not a queue group), and the clips they stop are the
    # ones that end CANCELLED. The last clip was requested just before reply.done, so some are.
    stopped = [line["cancelled"] for lines in heard() for line in lines]
    assert sum(stopped) == len(events.cancelled) > 0, (stopped, events.ended)


class EventLog:
    """The avatar events of one session, straight from NATS."""

    def __init__(self, nc: Any, sid: str) -> None:
        self._nc = nc
        self._sid = sid
        self.ended: dict[int, str] = {}  # seq -> "ready" | error code
        self.cancelled: list[int] = []
        self._changed = asyncio.Event()

    @classmethod
    async def open(cls, url: str, sid: str) -> EventLog:
        nc = await bus.connect(url, "test-events")
        log = cls(nc, sid)
        await nc.subscribe(bus.events_subject(sid), cb=log._on_msg)
        await nc.flush()
        return log

    async def _on_msg(self, msg: Any) -> None:
        event = events_pb2.AvatarEvent.FromString(msg.data)
        kind = event.WhichOneof("event")
        if kind == "clip_ready":
            self.ended[event.seq] = "ready"
        elif kind == "clip_failed":
            self.ended[event.seq] = event.clip_failed.code
            if event.clip_failed.code == "CANCELLED":
                self.cancelled.append(event.seq)
        self._changed.set()

    async def until(self, condition: Any, within_s: float) -> None:
        """Re-checks ``condition`` after each event (and every 0.2 s, for log lines)."""
        async with asyncio.timeout(within_s):
            while not condition():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()

    async def close(self) -> None:
        await bus.close(self._nc)


async def test_turns_move_to_the_survivors_when_a_process_of_each_kind_dies(pods: Pods) -> None:
    async with Edge(pods.edge_env()) as edge:
        ws, hello = await connect(edge)
        sid = hello["session_id"]
        await ws.send_json({"type": "session.start", "video": False})
        assert (await receive(ws))["type"] == "session"
        await run_turn(ws, "Say hello.")
        victims = {"GenerateClip": pods.avatars[0], "Reply": pods.llms[0]}
        before = {rpc: calls(p, rpc, sid) for rpc, p in victims.items()}
        killed = time.monotonic()
        for victim in victims.values():
            victim.kill()
        turns = [await run_turn(ws, question) for question in QUESTIONS[:4]]  # none fails
        await ws.close()
    survivor_avatar, survivor_llm = pods.avatars[1], pods.llms[1]
    first = turns[0]
    speech_ms = ((first.first_speech_at or killed) - killed) * 1000
    print(
        f"after the kill: first reply delta {(first.first_delta_at - killed) * 1000:.0f} ms, "
        f"first clip.speech {speech_ms:.0f} ms"
    )
    assert {rpc: calls(p, rpc, sid) for rpc, p in victims.items()} == before
    assert calls(survivor_llm, "Reply", sid) >= len(turns)
    assert calls(survivor_avatar, "GenerateClip", sid) >= sum(t.clips for t in turns)
