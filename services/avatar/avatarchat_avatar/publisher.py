"""Where clip media and events go: the NATS object store and the JetStream events stream.

Media is written before the event that announces it, so a client that follows the edge's URL
for it always finds the object. Object names come from ``bus.clip_object``; the URLs are the
edge's business, so events carry none. Both writes retry for a while, so a NATS server restart or a
reconnect in the middle of a clip delays its events instead of losing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError
from nats.js.object_store import ObjectStore

from avatarchat import bus, errors, log
from avatarchat.v1 import events_pb2

_log = log.get("avatarchat.avatar.publisher")

# Errors that a reconnecting or restarting NATS server produces; worth retrying.
_TRANSIENT = (
    NatsTimeoutError,
    asyncio.TimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
)

CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".png": "image/png",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """Puts objects into the clips bucket and publishes ``AvatarEvent`` messages."""

    def __init__(
        self,
        js: JetStreamContext,
        store: ObjectStore,
        *,
        retry_for_s: float = 15.0,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self._js = js
        self._store = store
        self._retry_for_s = retry_for_s
        self._ack_timeout_s = ack_timeout_s

    async def put(self, name: str, data: bytes) -> None:
        """Stores ``data`` as object ``name`` in the clips bucket."""
        suffix = name[name.rfind(".") :] if "." in name else ""
        headers = {"Content-Type": [CONTENT_TYPES.get(suffix, "application/octet-stream")]}

        async def put_once() -> None:
            await self._store.put(name, data, meta=ObjectMeta(name=name, headers=headers))

        await self._retrying(f"store {name}", put_once)

    async def publish(self, event: events_pb2.AvatarEvent) -> None:
        """Publishes one event on ``avatar.events.<session_id>`` and waits for the stream's ack."""
        if not event.emitted_unix_ms:
            event.emitted_unix_ms = now_ms()
        subject = bus.events_subject(event.session_id)
        payload = event.SerializeToString()
        kind = event.WhichOneof("event")
        # A publish buffered during a reconnect may reach the stream as well as its retry; the
        # message id lets JetStream drop the second copy (within its duplicate window).
        msg_id = f"{event.clip_id}.{kind}"

        async def publish_once() -> None:
            await self._js.publish(
                subject,
                payload,
                timeout=self._ack_timeout_s,
                stream=bus.EVENTS_STREAM,
                headers={"Nats-Msg-Id": msg_id},
            )

        await self._retrying(f"publish {kind}", publish_once)
        _log.info(
            "event.published",
            kind=kind,
            clip_id=event.clip_id,
            session_id=event.session_id,
            seq=event.seq,
        )

    async def _retrying(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        deadline = time.monotonic() + self._retry_for_s
        delay = 0.1
        while True:
            try:
                await action()
                return
            except ConnectionClosedError as exc:
                raise errors.Unavailable(f"could not {what}: NATS connection closed") from exc
            except (*_TRANSIENT, APIError) as exc:
                if isinstance(exc, APIError) and not isinstance(exc, ServiceUnavailableError):
                    if exc.code is not None and exc.code < 500:
                        raise errors.Unavailable(f"NATS refused to {what}: {exc}") from exc
                if time.monotonic() + delay > deadline:
                    raise errors.Unavailable(
                        f"could not {what}: NATS did not answer for {self._retry_for_s:g} s"
                    ) from exc
                _log.warning("nats.retry", action=what, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def speech_ready(
    clip: ClipIdentity, text: str, timeline: events_pb2.Timeline
) -> events_pb2.AvatarEvent:
    event = clip.event()
    event.speech_ready.text = text
    event.speech_ready.timeline.CopyFrom(timeline)
    return event


def clip_ready(
    clip: ClipIdentity, *, duration_ms: int, fps: int, width: int, height: int
) -> events_pb2.AvatarEvent:
    event = clip.event()
    event.clip_ready.duration_ms = duration_ms
    event.clip_ready.fps = fps
    event.clip_ready.width = width
    event.clip_ready.height = height
    return event


def clip_failed(clip: ClipIdentity, *, reason: str, code: str) -> events_pb2.AvatarEvent:
    event = clip.event()
    event.clip_failed.reason = reason
    event.clip_failed.code = code
    return event


class ClipIdentity:
    """What every event of a clip carries."""

    __slots__ = ("clip_id", "seq", "session_id", "turn_id")

    def __init__(self, clip_id: str, session_id: str, turn_id: str, seq: int) -> None:
        self.clip_id = clip_id
        self.session_id = session_id
        self.turn_id = turn_id
        self.seq = seq

    def event(self) -> events_pb2.AvatarEvent:
        return events_pb2.AvatarEvent(
            clip_id=self.clip_id, session_id=self.session_id, turn_id=self.turn_id, seq=self.seq
        )
