"""Follows avatar events from the JetStream stream: for the benchmark, tests and debugging.

``python -m avatarchat_avatar.watch [session_id]`` prints events as they arrive (all sessions
when none is given), which is handy next to ``grpcurl`` when trying the service by hand.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from avatarchat import bus
from avatarchat.v1 import events_pb2


@dataclass(frozen=True)
class Received:
    event: events_pb2.AvatarEvent
    at: float  # time.perf_counter() when it arrived

    @property
    def kind(self) -> str:
        return self.event.WhichOneof("event") or ""


class EventWatcher:
    """Collects the ``AvatarEvent`` messages of one session, or of all (``session_id=None``)."""

    def __init__(self, nc: NATS, session_id: str | None = None, *, replay: bool = False) -> None:
        """``replay`` also delivers the events the stream still holds from before."""
        self._nc = nc
        self._subject = bus.events_subject(session_id or "*")
        self._policy = DeliverPolicy.ALL if replay else DeliverPolicy.NEW
        self.received: list[Received] = []
        self._changed = asyncio.Condition()
        self._sub: JetStreamContext.PushSubscription | None = None

    async def __aenter__(self) -> EventWatcher:
        js = self._nc.jetstream()
        self._sub = await js.subscribe(
            self._subject,
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=self._policy,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        event = events_pb2.AvatarEvent.FromString(msg.data)
        async with self._changed:
            self.received.append(Received(event, time.perf_counter()))
            self._changed.notify_all()

    def of_clip(self, clip_id: str) -> list[Received]:
        return [r for r in self.received if r.event.clip_id == clip_id]

    async def wait_for(
        self, predicate: Callable[[Received], bool], timeout_s: float = 60.0
    ) -> Received:
        """The first event (received so far or later) that satisfies ``predicate``."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for received in self.received:
                    if predicate(received):
                        return received
                await self._changed.wait()

    async def wait_terminal(self, clip_id: str, timeout_s: float = 60.0) -> Received:
        """The clip's clip-ready or clip-failed event."""
        return await self.wait_for(
            lambda r: r.event.clip_id == clip_id and r.kind in ("clip_ready", "clip_failed"),
            timeout_s,
        )


async def _main(url: str, session_id: str | None) -> None:
    nc = await bus.connect(url, name="avatarchat-watch")
    try:
        async with EventWatcher(nc, session_id) as watcher:
            printed: set[int] = set()
            while True:
                await watcher.wait_for(lambda r: id(r) not in printed, timeout_s=1e9)
                for received in watcher.received:
                    if id(received) not in printed:
                        printed.add(id(received))
                        print(json_format.MessageToJson(received.event, indent=None), flush=True)
    finally:
        await nc.drain()


if __name__ == "__main__":
    import os

    args = sys.argv[1:]
    nats_url = os.environ.get("AVATARCHAT_NATS_URL", "nats://127.0.0.1:4222")
    try:
        asyncio.run(_main(nats_url, args[0] if args else None))
    except KeyboardInterrupt:
        pass
