"""The edge's NATS connection, owned by the app.

It connects in the background and keeps retrying, so the edge starts (and serves text) while
NATS is still coming up; ``/readyz`` reports it. After each reconnect it tells its listeners
(the per-session event subscriptions) to re-create their consumers.

The edge creates none of the avatar's resources (``bus`` names each resource's one owner); it
only waits for them to appear.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.object_store import ObjectStore

from avatarchat import bus, log

_log = log.get("avatarchat.edge.nats")


class NatsUnavailable(Exception):
    """NATS is not configured or not connected."""


class NatsLink:
    def __init__(
        self,
        url: str | None,
        *,
        retention: bus.Retention | None = None,
        name: str = "avatarchat-edge",
    ) -> None:
        self.url = url
        self._retention = retention or bus.Retention()
        self._name = name
        self._nc: NATS | None = None
        self._ready = asyncio.Event()
        self._listeners: set[Callable[[], None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._store: ObjectStore | None = None

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._connect(), name="nats-connect")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        nc, self._nc = self._nc, None
        self._ready.clear()
        if nc is not None:
            await bus.close(nc)

    async def _connect(self) -> None:
        assert self.url is not None
        delay = 0.2
        while True:
            try:
                nc = await bus.connect(
                    self.url,
                    self._name,
                    connect_timeout_s=2.0,
                    on_reconnected=self._on_reconnected,
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning(
                    "nats.connect_failed", url=self.url, error=str(exc) or type(exc).__name__
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._nc = nc
        self._ready.set()

    async def _on_reconnected(self) -> None:
        for listener in list(self._listeners):
            listener()

    def add_reconnect_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def remove_reconnect_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    async def publish(self, subject: str, payload: bytes) -> bool:
        """Publishes on core NATS without waiting for anything; False when not connected yet.

        While the connection is reconnecting, the client buffers the message and sends it once
        the server is back.
        """
        if self._nc is None or self._nc.is_closed:
            return False
        await self._nc.publish(subject, payload)
        return True

    def client_now(self) -> NATS:
        """The connection if it is up right now; ``NatsUnavailable`` otherwise (never waits)."""
        if not self.enabled:
            raise NatsUnavailable("NATS is not configured for this edge")
        if self._nc is None or not self._nc.is_connected or not self._ready.is_set():
            raise NatsUnavailable("NATS is not connected")
        return self._nc

    async def client(self) -> NATS:
        """Waits until connected, then returns the connection (for plain subscriptions)."""
        if not self.enabled:
            raise NatsUnavailable("NATS is not configured for this edge")
        await self._ready.wait()
        assert self._nc is not None
        return self._nc

    async def jetstream(self) -> JetStreamContext:
        """Waits until connected, then returns the JetStream context."""
        if not self.enabled:
            raise NatsUnavailable("NATS is not configured for this edge")
        await self._ready.wait()
        assert self._nc is not None
        return self._nc.jetstream()

    async def clips_store(self) -> ObjectStore | None:
        """The clips object store (None if nobody created it yet), without waiting.

        Raises ``NatsUnavailable`` when NATS is not reachable.
        """
        if not self.connected or not self._ready.is_set():
            raise NatsUnavailable("NATS is not connected")
        if self._store is None:
            assert self._nc is not None
            try:
                self._store = await self._nc.jetstream().object_store(bus.CLIPS_BUCKET)
            except BucketNotFoundError:
                return None
        return self._store
