"""Avatar events from NATS to a session's socket.

``EventForwarder`` is what a connection uses: it keeps one ``EventSubscription`` for the
connection's current session while the avatar is on, drops the events of cancelled clips, and
hands the others to the socket as ``clip.*`` frames.

Each live session with the avatar on has one ephemeral JetStream consumer on
``avatar.events.<session_id>`` (stream ``AVATAR_EVENTS``). It starts right after the last
event the session received (for a new session: at the session's creation, so nothing published
for it can be missed while the consumer is being set up), and is re-created from that same point
after a NATS reconnect or an error, so a restarted server or a resumed socket loses no event and
repeats none (events are de-duplicated by stream sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from avatarchat import bus, log
from avatarchat.v1 import events_pb2

from .media import clip_url
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .sessions import Session

_log = log.get("avatarchat.edge.events")

START_MARGIN_S = 30.0
# Returns False when the event could not be handed over (the socket is gone), so that it is
# delivered again to the next socket that resumes the session.
Deliver = Callable[[events_pb2.AvatarEvent], Awaitable[bool]]


def event_frame(event: events_pb2.AvatarEvent) -> dict[str, Any] | None:
    """The ``clip.*`` frame for an event; None for an event kind this edge does not know."""
    ids = {"clip_id": event.clip_id, "turn_id": event.turn_id, "seq": event.seq}
    kind = event.WhichOneof("event")
    if kind == "speech_ready":
        speech = event.speech_ready
        return {
            "type": "clip.speech",
            **ids,
            "audio_url": clip_url(event.clip_id, "wav"),
            "text": speech.text,
            "timeline": MessageToDict(
                speech.timeline,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            ),
        }
    if kind == "clip_ready":
        ready = event.clip_ready
        return {
            "type": "clip.ready",
            **ids,
            "video_url": clip_url(event.clip_id, "mp4"),
            "duration_ms": ready.duration_ms,
            "fps": ready.fps,
            "width": ready.width,
            "height": ready.height,
        }
    if kind == "clip_failed":
        failed = event.clip_failed
        return {"type": "clip.failed", **ids, "reason": failed.reason, "code": failed.code}
    return None


class EventSubscription:
    """Delivers one session's avatar events, in order, until closed."""

    def __init__(self, link: NatsLink, session: Session, deliver: Deliver) -> None:
        self._link = link
        self._session = session
        self._deliver = deliver
        self._renew = asyncio.Event()
        self._sub: Any = None
        self._consumer: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while a consumer is in place (for tests)
        self._closed = False

    def start(self) -> None:
        self._link.add_reconnect_listener(self._renew.set)
        self._task = asyncio.create_task(self._run(), name=f"events-{self._session.id}")

    async def close(self) -> None:
        self._closed = True  # from now on, events are left for the next subscription
        self._link.remove_reconnect_listener(self._renew.set)
        self._renew.set()  # the loop also stops on the flag, should a cancel be swallowed
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)

    async def _run(self) -> None:
        delay = 0.2
        try:
            while not self._closed:
                try:
                    js = await self._link.jetstream()
                    self._renew.clear()
                    if not self._closed:
                        await self._subscribe(js)
                        delay = 0.2
                    if not self._closed:
                        await self._renew.wait()
                        _log.info("events.resubscribe", session_id=self._session.id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _log.warning(
                        "events.subscribe_failed",
                        session_id=self._session.id,
                        error=str(exc) or type(exc).__name__,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                await self._unsubscribe()
        finally:
            await self._unsubscribe()

    async def _subscribe(self, js: JetStreamContext) -> None:
        session = self._session
        self._consumer = f"edge-{session.id}-{secrets.token_hex(4)}"
        if session.last_event_seq is None:
            # Nothing delivered yet: everything since the session began (its id is new, so
            # nothing older exists); the margin absorbs clock skew with the NATS server.
            start = datetime.fromtimestamp(session.created_unix - START_MARGIN_S, UTC)
            position: dict[str, Any] = {
                "deliver_policy": DeliverPolicy.BY_START_TIME,
                "opt_start_time": start,
            }
        else:
            position = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": session.last_event_seq + 1,
            }
        config = ConsumerConfig(
            name=self._consumer,
            **position,
            ack_policy=AckPolicy.NONE,
            max_deliver=1,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
        )
        self._sub = await js.subscribe(
            bus.events_subject(session.id),
            stream=bus.EVENTS_STREAM,
            cb=self._on_msg,
            config=config,
        )
        self.subscribed.set()

    async def _unsubscribe(self) -> None:
        """Drops the consumer (best effort: the server also expires it when idle)."""
        self.subscribed.clear()
        sub, self._sub = self._sub, None
        consumer, self._consumer = self._consumer, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if consumer is not None and self._link.connected:
            with contextlib.suppress(Exception):
                js = await self._link.jetstream()
                async with asyncio.timeout(1.0):
                    await js.delete_consumer(bus.EVENTS_STREAM, consumer)

    async def _on_msg(self, msg: Msg) -> None:
        if self._closed:
            return
        seq = msg.metadata.sequence.stream
        last = self._session.last_event_seq
        if last is not None and seq <= last:
            return  # already delivered before a re-subscription
        try:
            event = events_pb2.AvatarEvent.FromString(msg.data)
        except DecodeError:
            _log.warning("events.undecodable", session_id=self._session.id, stream_seq=seq)
            self._session.last_event_seq = seq
            return
        try:
            delivered = await self._deliver(event)
        except Exception:
            _log.exception("events.deliver_failed", session_id=self._session.id)
            delivered = True  # a bug, not a lost socket: do not loop on this event
        if delivered and not self._closed:
            self._session.last_event_seq = seq


Send = Callable[[dict[str, Any]], Awaitable[bool]]


class EventForwarder:
    """One connection's avatar events: subscribed while its session has the avatar on."""

    def __init__(self, link: NatsLink, *, metrics: EdgeMetrics, send: Send) -> None:
        self._link = link
        self._metrics = metrics
        self._send = send
        self._session: Session | None = None
        self._subscription: EventSubscription | None = None

    async def follow(self, session: Session) -> None:
        """Forwards ``session``'s events if its avatar is on (and nothing otherwise)."""
        if self._session is not session:
            await self.close()
        if session.avatar and self._subscription is None:
            self._session = session
            self._subscription = EventSubscription(self._link, session, self._forward)
            self._subscription.start()
        elif not session.avatar:
            await self.close()

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        self._session = None
        if subscription is not None:
            await subscription.close()

    async def _forward(self, event: events_pb2.AvatarEvent) -> bool:
        """Forwards one event; False if the socket is gone (it goes to the next one)."""
        session = self._session
        if session is None:
            return False
        if event.seq < session.cancelled_below_seq:
            return True  # a clip of an interrupted turn
        frame = event_frame(event)
        if frame is None:
            return True
        if frame["type"] == "clip.speech":
            started = session.turn_started.pop(event.turn_id, None)
            if started is not None:
                self._metrics.time_to_first_clip_speech.observe(time.perf_counter() - started)
        return await self._send(frame)
