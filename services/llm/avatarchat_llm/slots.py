"""Admission to the model: at most ``capacity`` generations at once, the rest wait in FIFO order.

For the ``local`` backend ``capacity`` is llama-server's ``--parallel`` slots, so a request
that is admitted always finds a free slot and llama-server never queues on its own; for remote
backends it bounds the calls in flight. Past ``max_queue`` waiting requests a new one gets
RESOURCE_EXHAUSTED with a retry-after. A waiter that goes away (its RPC was cancelled) leaves
the queue, and a holder that goes away frees its place at once for the next in line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from avatarchat.errors import ResourceExhausted


class SlotGate:
    def __init__(self, capacity: int, max_queue: int, retry_after_s: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _hand_over(self) -> None:
        """Gives free places to the oldest waiters that are still waiting."""
        while self.busy < self.capacity and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)

    async def _acquire(self) -> None:
        if self.busy < self.capacity and not self._waiters:
            self.busy += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise ResourceExhausted(
                f"the llm is busy: all {self.capacity} slots are generating and "
                f"{len(self._waiters)} requests are waiting (AVATARCHAT_LLM_MAX_QUEUE); "
                "try again shortly",
                retry_after_s=self.retry_after_s,
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # admitted just as we were cancelled
                self._release()
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def _release(self) -> None:
        self.busy -= 1
        self._hand_over()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with gate.slot():`` holds one place for the duration of a generation."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()
