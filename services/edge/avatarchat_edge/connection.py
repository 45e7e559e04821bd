"""One WebSocket connection: reads frames, dispatches them, and owns what they start.

A connection holds one session at a time (a new one on connect, or a resumed one), at most one
running turn, voice streams, and the session's avatar event subscription. Every handler is
guarded: a bad frame or a failing service becomes an error frame and the loop carries on. On
close, everything the connection started is cancelled and awaited, so nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable
from typing import Any

import grpc
from aiohttp import WSMsgType, web

from avatarchat import log
from avatarchat.v1 import events_pb2, llm_pb2

from . import protocol
from .audio_input import AudioInput
from .clips import broadcast_cancel
from .config import EdgeConfig
from .events import EventSubscription, event_frame
from .limits import retry_after_ms
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .protocol import ErrorCode, ProtocolError, error
from .sessions import Session, SessionRegistry, new_turn_id
from .turns import Turn
from .upstream import UpstreamError, Upstreams, metadata
from .worker_watch import WorkerWatch

_log = log.get("avatarchat.edge.ws")

CLOSE_IDLE = 4408
CLOSE_TAKEN_OVER = 4409

# Teardowns in progress (asyncio only keeps weak references to tasks).
_TEARDOWNS: set[asyncio.Task[None]] = set()


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        config: EdgeConfig,
        sessions: SessionRegistry,
        upstreams: Upstreams,
        nats: NatsLink,
        workers: WorkerWatch,
        metrics: EdgeMetrics,
    ) -> None:
        self.ws = ws
        self._config = config
        self._sessions = sessions
        self._upstreams = upstreams
        self._nats = nats
        self._workers = workers
        self._metrics = metrics
        self._send_lock = asyncio.Lock()
        self._turn_lock = asyncio.Lock()
        self._turn: Turn | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._events: EventSubscription | None = None
        self._audio = AudioInput(
            config=config,
            upstreams=upstreams,
            send=self.send,
            on_speech=self._on_user_speech,
            on_final=self._on_transcript,
        )
        self._background: set[asyncio.Task[Any]] = set()
        self.session: Session = sessions.create(self)
        self.session.avatar = self.session.avatar and self.avatar_available

    @property
    def avatar_available(self) -> bool:
        return self._upstreams.avatar.deployed and self._nats.enabled

    # --- sending ----------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> bool:
        """Sends one frame; False when the socket is already gone."""
        if self.ws.closed:
            return False
        data = json.dumps(frame, separators=(",", ":"))
        async with self._send_lock:
            try:
                await self.ws.send_str(data)
            except (ConnectionError, RuntimeError):
                return False
        self._metrics.frame("out", frame["type"])
        if frame["type"] == "error":
            self._metrics.errors_total.labels(frame["code"]).inc()
        return True

    def _session_frame(self, *, resumed: bool) -> dict[str, Any]:
        config = self._config
        return {
            "type": "session",
            "session_id": self.session.id,
            "protocol": protocol.PROTOCOL_VERSION,
            "resumed": resumed,
            "avatar": self.session.avatar,
            "video": self.session.video,
            "features": {
                "text": self._upstreams.llm.deployed,
                "voice": self._upstreams.stt.deployed,
                "avatar": self.avatar_available,
            },
            "limits": {
                "max_text_chars": config.max_text_chars,
                "max_frame_bytes": config.max_frame_bytes,
                "rate_per_s": config.rate_per_s,
                "rate_burst": config.rate_burst,
                "idle_timeout_s": config.idle_timeout_s,
                "max_audio_bytes": config.max_audio_bytes,
            },
        }

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        self._metrics.sessions_total.labels("false").inc()
        with log.bound_contextvars(session_id=self.session.id):
            _log.info("session.open", avatar=self.session.avatar)
        try:
            await self.send(self._session_frame(resumed=False))
            await self._sync_events()
            await self._receive_loop()
        finally:
            # The handler may be cancelled when the peer vanishes; the cleanup must finish anyway.
            teardown = asyncio.create_task(self._teardown(), name=f"teardown-{self.session.id}")
            _TEARDOWNS.add(teardown)
            teardown.add_done_callback(_TEARDOWNS.discard)
            await asyncio.shield(teardown)

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.ws.receive(timeout=self._config.idle_timeout_s)
            except TimeoutError:
                if self._busy():
                    continue
                await self.send(
                    error(
                        ErrorCode.IDLE_TIMEOUT,
                        f"nothing was received for {self._config.idle_timeout_s:g} s; "
                        "reconnect and resume the session to carry on",
                    )
                )
                await self.ws.close(code=CLOSE_IDLE, message=b"idle timeout")
                return
            if message.type == WSMsgType.TEXT:
                await self._guarded(self._on_text_frame(message.data))
            elif message.type == WSMsgType.BINARY:
                self._metrics.frame("in", "audio")
                await self._guarded(self._audio.frame(message.data, self.session))
            else:
                if message.type == WSMsgType.ERROR:
                    _log.info("ws.error", session_id=self.session.id, error=str(message.data))
                return

    def _busy(self) -> bool:
        turn_running = self._turn_task is not None and not self._turn_task.done()
        return turn_running or self._audio.busy

    async def _guarded(self, handler: Awaitable[None]) -> None:
        try:
            await handler
        except ProtocolError as exc:
            await self.send(error(exc.code, exc.message, **exc.extra))
        except UpstreamError as exc:
            await self.send(error(exc.code, exc.message))
        except Exception:
            _log.exception("ws.handler_failed", session_id=self.session.id)
            await self.send(
                error(ErrorCode.INTERNAL, "the server failed to handle that frame; see its log")
            )

    async def _on_text_frame(self, raw: str) -> None:
        wait_s = self.session.rate.take()
        if wait_s:
            self._metrics.frame("in", "invalid")
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many messages: at most {self._config.rate_per_s:g} per second "
                f"(bursts of {self._config.rate_burst}); this one was dropped",
                retry_after_ms=retry_after_ms(wait_s),
            )
        try:
            message = protocol.parse(raw, max_text_chars=self._config.max_text_chars)
        except ProtocolError:
            self._metrics.frame("in", "invalid")
            raise
        kind = _TYPE_NAMES[type(message)]
        self._metrics.frame("in", kind)
        with log.bound_contextvars(session_id=self.session.id):
            await self._dispatch(message)

    async def _dispatch(self, message: protocol.ClientMessage) -> None:
        if isinstance(message, protocol.Text):
            await self.start_turn(message.text, source="text")
        elif isinstance(message, protocol.Interrupt):
            await self.interrupt("interrupt")
        elif isinstance(message, protocol.SessionStart):
            await self._on_session_start(message)
        elif isinstance(message, protocol.Reset):
            await self._on_reset()
        elif isinstance(message, protocol.Ping):
            await self.send({"type": "pong", "id": message.id})
        elif isinstance(message, protocol.AudioStart):
            await self._audio.start(message, self.session)
        elif isinstance(message, protocol.AudioEnd):
            await self._audio.end()

    # --- turns ------------------------------------------------------------------------------

    async def start_turn(self, text: str, *, source: str, turn_id: str | None = None) -> None:
        """Starts a turn, interrupting the running one (barge-in) and its pending clips."""
        async with self._turn_lock:
            await self._stop_turn("barge_in")
            await self._cancel_pending_clips()
            turn = Turn(
                session=self.session,
                turn_id=turn_id or new_turn_id(),
                text=text,
                source=source,
                config=self._config,
                upstreams=self._upstreams,
                workers=self._workers,
                metrics=self._metrics,
                send=self.send,
            )
            self.session.note_turn(turn.turn_id, turn.started)
            self._turn = turn
            self._turn_task = asyncio.create_task(self._run_turn(turn), name=turn.turn_id)

    async def _run_turn(self, turn: Turn) -> None:
        with log.bound_contextvars(session_id=self.session.id, turn_id=turn.turn_id):
            try:
                await turn.run()
            except Exception:  # a bug: the turn ends, the session carries on
                _log.exception("turn.crashed")
                await self.send(
                    error(
                        ErrorCode.INTERNAL,
                        "the turn failed; see the server log",
                        turn_id=turn.turn_id,
                    )
                )

    async def interrupt(self, reason: str) -> None:
        """Stops the running reply and cancels the session's pending clips."""
        async with self._turn_lock:
            await self._stop_turn(reason)
            await self._cancel_pending_clips()

    async def _stop_turn(self, reason: str) -> None:
        task, turn = self._turn_task, self._turn
        self._turn_task = self._turn = None
        if task is None or turn is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})
        if turn.replied:
            return  # only its clip requests were still running; those are cancelled too
        self._metrics.turns_total.labels("interrupted", turn.source).inc()
        _log.info("turn.interrupted", turn_id=turn.turn_id, reason=reason)
        await self.send(
            {
                "type": "reply.interrupted",
                "turn_id": turn.turn_id,
                "text": turn.partial_text,
                "reason": reason,
            }
        )

    async def _cancel_pending_clips(self) -> None:
        if self.session.cancel_clips_so_far() and self.avatar_available:
            await broadcast_cancel(self._nats, self.session.id)

    async def _on_reset(self) -> None:
        await self.interrupt("reset")
        try:
            stub = await self._upstreams.llm_stub()
            response = await stub.ResetHistory(
                llm_pb2.ResetHistoryRequest(session_id=self.session.id),
                timeout=self._config.rpc_deadline_s,
                wait_for_ready=False,
                metadata=metadata(self.session.id),
            )
        except grpc.aio.AioRpcError as exc:
            raise self._upstreams.llm.error(exc) from None
        await self.send({"type": "reset.done", "removed": response.removed})

    # --- sessions ---------------------------------------------------------------------------

    async def _on_session_start(self, message: protocol.SessionStart) -> None:
        if message.protocol is not None and message.protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"this server speaks protocol {protocol.PROTOCOL_VERSION}, not {message.protocol}",
            )
        resumed = False
        if message.session_id and message.session_id != self.session.id:
            target = self._sessions.get(message.session_id)
            if target is None:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_SESSION,
                    f"session {message.session_id} is unknown or has expired; this socket "
                    f"carries on with session {self.session.id}",
                )
            await self._switch_to(target)
            resumed = True
        if message.avatar is not None:
            await self._set_avatar(message.avatar)
        if message.video is not None:
            self.session.video = message.video
        await self._sync_events()
        await self.send(self._session_frame(resumed=resumed))

    async def _set_avatar(self, wanted: bool) -> None:
        if wanted and not self.avatar_available:
            await self.send(
                error(
                    ErrorCode.AVATAR_UNAVAILABLE,
                    "the avatar is not deployed here (AVATARCHAT_AVATAR_ADDR is empty or NATS "
                    "is off); text and voice still work",
                )
            )
            wanted = False
        if self.session.avatar and not wanted:
            await self._cancel_pending_clips()
        self.session.avatar = wanted

    async def _switch_to(self, target: Session) -> None:
        """Resumes ``target`` on this socket; a socket that held it is told and closed."""
        await self._release_session()
        old = self.session
        if old.turns == 0:
            self._sessions.forget(old)  # never used: nothing to resume later
        else:
            self._sessions.detach(old, self)
        previous = self._sessions.attach(target, self)
        self.session = target
        self._metrics.sessions_total.labels("true").inc()
        if previous is not None:
            await previous.surrender()
        _log.info("session.resumed", session_id=target.id, replaced=old.id)

    async def _release_session(self) -> None:
        """Stops everything this connection runs for its current session."""
        await self._audio.close()
        await self.interrupt("session_change")
        await self._close_events()

    async def surrender(self) -> None:
        """Another socket resumed this connection's session: stop, tell the client, close."""
        await self._release_session()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.send(
                    error(
                        ErrorCode.SESSION_TAKEN_OVER,
                        "another connection resumed this session; this one closes",
                    )
                )
        self._spawn(self.ws.close(code=CLOSE_TAKEN_OVER, message=b"session taken over"))

    # --- avatar events ----------------------------------------------------------------------

    async def _sync_events(self) -> None:
        if self.session.avatar and self._events is None:
            self._events = EventSubscription(self._nats, self.session, self._on_avatar_event)
            self._events.start()
        elif not self.session.avatar and self._events is not None:
            await self._close_events()

    async def _close_events(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            await events.close()

    async def _on_avatar_event(self, event: events_pb2.AvatarEvent) -> bool:
        """Forwards one event; False if the socket is gone (it goes to the next one)."""
        if event.seq < self.session.cancelled_below_seq:
            return True  # a clip of an interrupted turn
        frame = event_frame(event)
        if frame is None:
            return True
        if frame["type"] == "clip.speech":
            started = self.session.turn_started.pop(event.turn_id, None)
            if started is not None:
                self._metrics.time_to_first_clip_speech.observe(time.perf_counter() - started)
        return await self.send(frame)

    # --- voice ------------------------------------------------------------------------------

    async def _on_user_speech(self) -> None:
        await self.interrupt("barge_in")

    async def _on_transcript(self, text: str, turn_id: str) -> None:
        await self.start_turn(text, source="voice", turn_id=turn_id)

    # --- the end ----------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _teardown(self) -> None:
        session = self.session
        await self._audio.close()
        task = self._turn_task
        self._turn_task = self._turn = None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        await self._close_events()
        if self._sessions.detach(session, self):
            await self._cancel_pending_clips()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        for leftover in list(self._background):
            leftover.cancel()
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        _log.info("session.detached", session_id=session.id, turns=session.turns)


_TYPE_NAMES: dict[type, str] = {
    protocol.SessionStart: "session.start",
    protocol.Text: "text",
    protocol.Interrupt: "interrupt",
    protocol.Reset: "reset",
    protocol.Ping: "ping",
    protocol.AudioStart: "audio.start",
    protocol.AudioEnd: "audio.end",
}
