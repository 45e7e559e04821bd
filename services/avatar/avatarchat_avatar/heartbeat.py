"""Tells the edges this avatar process is alive: a ``WorkerHeartbeat`` every ``interval_s``.

``GenerateClip`` answers with the process's ``worker_id``; an edge that stops hearing that
worker on ``avatar.workers.<worker_id>`` (core NATS) fails the clips it had accepted, within
about three intervals, instead of waiting for events that will never come (a killed pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from nats.aio.client import Client as NATS

from avatarchat import bus, log
from avatarchat.v1 import events_pb2

_log = log.get("avatarchat.avatar.heartbeat")

INTERVAL_S = 0.5


class Heartbeat:
    def __init__(
        self, nc: NATS, in_progress: Callable[[], int], *, interval_s: float = INTERVAL_S
    ) -> None:
        self.worker_id = uuid.uuid4().hex
        self._nc = nc
        self._in_progress = in_progress
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        subject = bus.worker_subject(self.worker_id)
        interval_ms = int(self._interval_s * 1000)
        while True:
            beat = events_pb2.WorkerHeartbeat(
                worker_id=self.worker_id,
                interval_ms=interval_ms,
                clips_in_progress=self._in_progress(),
            )
            try:
                await self._nc.publish(subject, beat.SerializeToString())
            except Exception as exc:  # disconnected: nats.py buffers or refuses; try again
                _log.debug("heartbeat.not_sent", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(self._interval_s)
