"""Video backends: turn a clip's speech and timeline into an MP4.

- ``LocalVideo`` runs the 2D rig renderer (``render.render_mp4``, CPU-bound) in a thread or
  process pool, so the event loop keeps serving RPCs and publishing events meanwhile.
- ``avatarchat_avatar.did.DidVideo`` asks D-ID's talks API for the video instead.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import av

from avatarchat import errors
from avatarchat.v1 import events_pb2

from .speech import Speech


@dataclass(frozen=True)
class RenderedVideo:
    mp4: bytes
    duration_ms: int
    fps: int
    width: int
    height: int


class VideoBackend(Protocol):
    name: str

    async def render(
        self, speech: Speech, timeline: events_pb2.Timeline, text: str
    ) -> RenderedVideo: ...


class LocalVideo:
    """The local rig renderer, run in ``executor`` (a thread or process pool)."""

    name = "local"

    def __init__(self, executor: Executor, workers: int = 1) -> None:
        self._executor = executor
        self._workers = workers

    async def warm(self) -> None:
        """Builds the renderer's layer caches in every pool worker (seconds, once)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _warm_renderer) for _ in range(self._workers))
        )

    async def render(
        self, speech: Speech, timeline: events_pb2.Timeline, text: str
    ) -> RenderedVideo:
        from .render import render_mp4

        loop = asyncio.get_running_loop()
        mp4 = await loop.run_in_executor(self._executor, render_mp4, speech, timeline)
        return await asyncio.to_thread(probe_mp4, mp4)


def _warm_renderer() -> None:
    from .render import compositor

    compositor()


def probe_mp4(data: bytes) -> RenderedVideo:
    """Reads an MP4's duration, frame rate and size from its container, without decoding."""
    try:
        with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
            if not container.streams.video:
                raise errors.Unavailable("the rendered clip has no video track")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = round(float(rate)) if rate else 0
            if stream.duration is not None and stream.time_base is not None:
                duration_ms = round(float(stream.duration * stream.time_base) * 1000)
            elif container.duration is not None:
                duration_ms = round(container.duration / 1000)
            else:
                duration_ms = 0
            return RenderedVideo(
                mp4=data,
                duration_ms=duration_ms,
                fps=fps,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
            )
    except av.error.FFmpegError as exc:
        raise errors.Unavailable(f"the clip video is not a readable MP4 ({exc})") from exc
