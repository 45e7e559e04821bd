"""The one exponential backoff that every retry and poll loop uses.

A ``Backoff`` hands out waits of ``initial_s``, then ``factor`` times the last one, never more
than ``max_s``; ``reset`` starts again from ``initial_s`` (after a success). ``wait`` sleeps the
next one; given a ``deadline`` on the same clock, it gives up instead of sleeping past it, so a
loop can say why it stopped::

    backoff = Backoff(0.1, 2.0)
    deadline = backoff.deadline(10.0)
    while not await try_once():
        if not await backoff.wait(deadline):
            raise errors.Unavailable("gave up after 10 s")

The clock and the sleep are injectable, so tests run without real sleeps.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable


class Backoff:
    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not (math.isfinite(initial_s) and initial_s > 0):
            raise ValueError(f"initial_s must be a positive number of seconds, got {initial_s!r}")
        if not (math.isfinite(max_s) and max_s >= initial_s):
            raise ValueError(f"max_s must be at least initial_s ({initial_s:g}), got {max_s!r}")
        if not (math.isfinite(factor) and factor >= 1):
            raise ValueError(f"factor must be at least 1, got {factor!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self._clock = clock
        self._sleep = sleep
        self._next = initial_s

    @property
    def delay(self) -> float:
        """The wait the next ``wait`` sleeps."""
        return self._next

    def reset(self) -> None:
        """The next wait is ``initial_s`` again."""
        self._next = self.initial_s

    def deadline(self, seconds: float) -> float:
        """``seconds`` from now, on this backoff's clock: a ``deadline`` for ``wait``."""
        return self._clock() + seconds

    async def wait(self, deadline: float | None = None) -> bool:
        """Sleeps the next wait and grows the one after; True once slept.

        With a ``deadline`` that the wait would end after, returns False at once, without
        sleeping and without growing the wait."""
        delay = self._next
        if deadline is not None and self._clock() + delay > deadline:
            return False
        self._next = min(delay * self.factor, self.max_s)
        await self._sleep(delay)
        return True
