"""The narrow interface every video backend implements, and what it returns.

A backend turns a clip's speech and timeline into an MP4:

- ``avatarchat_avatar.backends.video.local.LocalVideo`` runs the 2D rig renderer;
- ``avatarchat_avatar.backends.video.did.DidVideo`` asks D-ID's talks API for the video.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

import av

from avatarchat import errors
from avatarchat.v1 import events_pb2
from avatarchat_avatar.speech import Speech


@dataclass(frozen=True)
class RenderedVideo:
    mp4: bytes
    duration_ms: int
    fps: int
    width: int
    height: int


class VideoBackend(Protocol):
    """Speech and timeline to an MP4. ``load`` is called once before the first ``render``."""

    name: str

    async def load(self) -> None:
        """Prepares the backend (warms caches, checks settings); heavy work runs off the loop."""
        ...

    async def render(self, speech: Speech, timeline: events_pb2.Timeline) -> RenderedVideo:
        """The clip's MP4; its audio is ``speech``, its animation follows ``timeline``."""
        ...


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
