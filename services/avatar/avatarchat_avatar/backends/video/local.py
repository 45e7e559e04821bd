"""Local video: the 2D rig renderer (``rendering.mp4.render_mp4``, CPU-bound) in a pool.

The renderer runs in a thread or process pool, so the event loop keeps serving RPCs and
publishing events meanwhile. ``load`` builds the renderer's layer caches in every pool worker,
so the first clip renders at full speed.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from avatarchat.v1 import events_pb2
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.video import RenderedVideo, probe_mp4


class LocalVideo:
    """:class:`~avatarchat_avatar.video.VideoBackend` for the rig, run in ``executor``."""

    name = "local"

    def __init__(self, executor: Executor, workers: int = 1) -> None:
        self._executor = executor
        self._workers = workers

    async def load(self) -> None:
        """Builds the renderer's layer caches in every pool worker (seconds, once)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _warm_renderer) for _ in range(self._workers))
        )

    async def render(self, speech: Speech, timeline: events_pb2.Timeline) -> RenderedVideo:
        from avatarchat_avatar.rendering.mp4 import render_mp4

        loop = asyncio.get_running_loop()
        mp4 = await loop.run_in_executor(self._executor, render_mp4, speech, timeline)
        return await asyncio.to_thread(probe_mp4, mp4)


def _warm_renderer() -> None:
    from avatarchat_avatar.rendering.mp4 import compositor

    compositor()
