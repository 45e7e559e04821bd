"""The narrow interface every recognition backend implements.

A ``Backend`` hands out ``Recognizer``s, one per request or stream, at most ``max_streams`` at
a time. A recogniser decodes one utterance at a time (``start``, ``feed``…, ``finish``) and is
driven from a worker thread, never from the event loop; ``close`` gives it back. ``prefinish``
says the speaker paused, so a backend that decodes whole utterances can start on the final
early; ``interrupt`` (from any thread) makes work in progress give up soon.
"""

from __future__ import annotations

import asyncio
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from avatarchat.errors import InvalidArgument, ResourceExhausted

# How long a request waits for a free recogniser before RESOURCE_EXHAUSTED.
ACQUIRE_TIMEOUT_S = 2.0
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


class Recognizer(ABC):
    """One stream's recogniser. Not thread-safe: one thread drives it at a time."""

    # Whether ``prefinish`` does anything: the pipeline holds back a pause's audio only then.
    decodes_early = False

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    @abstractmethod
    def start(self) -> None:
        """Begins an utterance."""

    @abstractmethod
    def feed(self, pcm: np.ndarray) -> None:
        """More 16 kHz mono int16 audio of the current utterance."""

    def partial(self) -> str:
        """The best hypothesis so far ("" if the backend has none before the end)."""
        return ""

    def prefinish(self) -> None:  # noqa: B027 - optional hook
        """The speaker paused: do the work of ``finish`` on the audio fed so far, if that helps.

        If ``finish`` follows with no ``feed`` in between, it may return that result at once;
        a ``feed`` discards it."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Thread-safe: the stream has gone; abandon any decode in progress or waiting."""

    @abstractmethod
    def finish(self) -> str:
        """Ends the utterance and returns its final transcript."""

    @abstractmethod
    def cancel(self) -> None:
        """Ends the utterance, if one is open, without a transcript."""

    def close(self) -> None:
        """Cancels any open utterance and gives the recogniser back. Idempotent."""
        with self._lock:
            release, self._release = self._release, None
        if release is None:
            return
        try:
            self.cancel()
        finally:
            self._reset()
            release()

    def _reset(self) -> None:  # noqa: B027 - optional hook
        """Returns backend resources (e.g. a decoder to its pool)."""


class Backend(ABC):
    """Loads a model and hands out recognisers, bounded by ``max_streams``."""

    model: str = ""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._slots = asyncio.Semaphore(max_streams)

    @abstractmethod
    async def load(self) -> None:
        """Loads and warms the model; runs before health says SERVING."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Releases clients and models at shutdown."""

    def check_language(self, language: str) -> str:
        """Validates a BCP-47 hint and returns what the backend uses (may raise)."""
        if not _LANGUAGE.match(language):
            raise InvalidArgument(f"language must be a BCP-47 tag such as 'en', got {language!r}")
        return language.split("-", 1)[0].lower()

    async def open(self, language: str) -> Recognizer:
        """A recogniser for ``language``; waits briefly for a free one, then RESOURCE_EXHAUSTED."""
        hint = self.check_language(language)
        try:
            await asyncio.wait_for(self._slots.acquire(), ACQUIRE_TIMEOUT_S)
        except TimeoutError:
            raise ResourceExhausted(
                f"all {self.max_streams} recognisers are busy (AVATARCHAT_STT_MAX_STREAMS); "
                "retry shortly",
                retry_after_s=1.0,
            ) from None
        loop = asyncio.get_running_loop()

        def release() -> None:
            try:
                loop.call_soon_threadsafe(self._slots.release)
            except RuntimeError:  # the loop has closed: shutting down
                pass

        try:
            return await self._create(hint, release)
        except BaseException:
            self._slots.release()
            raise

    @abstractmethod
    async def _create(self, language: str, release: Callable[[], None]) -> Recognizer:
        """A recogniser that calls ``release`` once when it is closed."""
