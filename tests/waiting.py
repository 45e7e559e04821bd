"""Waiting in tests without fixed sleeps: poll a condition until it holds, within a deadline.

``await eventually(lambda: len(received) == 2)`` returns as soon as the condition holds and
fails with a clear message when it has not held in ``within_s``; the condition may be a
coroutine function (``await eventually(store_has_it)``). ``wait_until`` is the same for code
that is not async. Neither proves that something did *not* happen: for that, wait for a later
event that must come after it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(
    condition: Condition, *, within_s: float = 5.0, every_s: float = 0.02, what: str = ""
) -> None:
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'the condition'} did not hold within {within_s:g} s")
        await asyncio.sleep(every_s)


def wait_until(
    condition: Callable[[], bool], *, within_s: float = 5.0, every_s: float = 0.02, what: str = ""
) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'the condition'} did not hold within {within_s:g} s")
        time.sleep(every_s)
