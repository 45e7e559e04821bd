"""A token bucket: the per-session rate limit on client frames."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def retry_after_ms(wait_s: float) -> int:
    """A wait from ``TokenBucket.take`` as the ``retry_after_ms`` of an error frame."""
    return max(1, math.ceil(wait_s * 1000))


class TokenBucket:
    """Allows ``burst`` frames at once, refilled at ``rate_per_s``.

    ``take()`` returns 0.0 when a frame may pass, otherwise the seconds until one may.
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s
