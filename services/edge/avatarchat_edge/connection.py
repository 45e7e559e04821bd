"""One WebSocket connection: the frame loop.

It reads frames, checks them (rate limit, protocol) and hands each to the part that owns it:
turns to the ``TurnController`` (which never makes the loop wait), voice to ``AudioInput``,
resumes to ``SessionCustody`` and avatar events to the ``EventForwarder``. Every handler is
guarded: a bad frame or a failing service becomes an error frame and the loop carries on. On
close, everything the connection started is stopped and awaited, so nothing leaks, and the
session's state is saved for a resume on any edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any

from aiohttp import WSMsgType, web

from avatarchat import log

from . import protocol
from .audio_input import AudioInput
from .config import EdgeConfig
from .events import EventForwarder
from .limits import retry_after_ms
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .protocol import ErrorCode, ProtocolError, error
from .resume import SessionCustody
from .sessions import Session
from .turn_control import TurnController
from .upstream import UpstreamError, Upstreams
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
        custody: SessionCustody,
        upstreams: Upstreams,
        nats: NatsLink,
        workers: WorkerWatch,
        metrics: EdgeMetrics,
    ) -> None:
        self.ws = ws
        self._config = config
        self._custody = custody
        self._upstreams = upstreams
        self._metrics = metrics
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.teardown: asyncio.Task[None] | None = None  # set once the loop has ended
        self.session: Session = custody.sessions.create(self)
        self.turns = TurnController(
            self.session,
            config=config,
            upstreams=upstreams,
            nats=nats,
            workers=workers,
            metrics=metrics,
            send=self.send,
        )
        self.session.avatar = self.session.avatar and self.turns.avatar_available
        self._events = EventForwarder(nats, metrics=metrics, send=self.send)
        self._audio = AudioInput(
            config=config,
            upstreams=upstreams,
            send=self.send,
            on_speech=self._on_user_speech,
            on_final=self._on_transcript,
        )

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
                "avatar": self.turns.avatar_available,
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
            await self._custody.acquire(self.session, self.surrender)
            await self._events.follow(self.session)
            await self._receive_loop()
        finally:
            # The handler may be cancelled when the peer vanishes; the cleanup must finish anyway.
            teardown = asyncio.create_task(self._teardown(), name=f"teardown-{self.session.id}")
            _TEARDOWNS.add(teardown)
            teardown.add_done_callback(_TEARDOWNS.discard)
            self.teardown = teardown
            await asyncio.shield(teardown)

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.ws.receive(timeout=self._config.idle_timeout_s)
            except TimeoutError:
                if self.turns.busy or self._audio.busy:
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
        self._metrics.frame("in", message.TYPE)
        with log.bound_contextvars(session_id=self.session.id):
            await self._dispatch(message)

    async def _dispatch(self, message: protocol.ClientMessage) -> None:
        if isinstance(message, protocol.Text):
            self.turns.start_turn(message.text, source="text")
        elif isinstance(message, protocol.Interrupt):
            self.turns.interrupt("interrupt")
        elif isinstance(message, protocol.SessionStart):
            await self._on_session_start(message)
        elif isinstance(message, protocol.Reset):
            self.turns.reset()
        elif isinstance(message, protocol.Ping):
            await self.send({"type": "pong", "id": message.id})
        elif isinstance(message, protocol.AudioStart):
            await self._audio.start(message, self.session)
        elif isinstance(message, protocol.AudioEnd):
            await self._audio.end()

    # --- session.start ------------------------------------------------------------------------

    async def _on_session_start(self, message: protocol.SessionStart) -> None:
        if message.protocol is not None and message.protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"this server speaks protocol {protocol.PROTOCOL_VERSION}, not {message.protocol}",
            )
        resumed = False
        if message.session_id and message.session_id != self.session.id:
            target = await self._custody.find(message.session_id, current=self.session.id)
            await self._custody.switch(self, target)
            self._metrics.sessions_total.labels("true").inc()
            resumed = True
        if message.avatar is not None:
            await self._set_avatar(message.avatar)
        if message.video is not None:
            self.session.video = message.video
        await self._events.follow(self.session)
        await self.send(self._session_frame(resumed=resumed))

    async def _set_avatar(self, wanted: bool) -> None:
        if wanted and not self.turns.avatar_available:
            await self.send(
                error(
                    ErrorCode.AVATAR_UNAVAILABLE,
                    "the avatar is not deployed here (AVATARCHAT_AVATAR_ADDR is empty or NATS "
                    "is off); text and voice still work",
                )
            )
            wanted = False
        if self.session.avatar and not wanted:
            await self.turns.cancel_pending_clips()
        self.session.avatar = wanted

    # --- what resume and takeover ask of the connection ---------------------------------------

    def adopt(self, session: Session) -> None:
        self.session = session
        self.turns.session = session

    async def stop_session_work(self) -> None:
        await self._audio.close()
        await self.turns.halt("session_change")
        await self._events.close()

    async def surrender(self) -> None:
        """Another socket (of any edge) resumed this connection's session: stop, tell, close."""
        await self.stop_session_work()
        if not await self._custody.leave(self.session, self):
            await self._custody.release(self.session, save=False)  # the new socket has it
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.send(
                    error(
                        ErrorCode.SESSION_TAKEN_OVER,
                        "another connection resumed this session; this one closes",
                    )
                )
        self._spawn(self.ws.close(code=CLOSE_TAKEN_OVER, message=b"session taken over"))

    # --- voice --------------------------------------------------------------------------------

    async def _on_user_speech(self) -> None:
        self.turns.interrupt("barge_in")

    async def _on_transcript(self, text: str, turn_id: str) -> None:
        self.turns.start_turn(text, source="voice", turn_id=turn_id)

    # --- the end ------------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _teardown(self) -> None:
        session = self.session
        await self._audio.close()
        await self.turns.close()
        await self._events.close()
        # The clips already requested go on: their events wait in the stream for a resume.
        await self._custody.leave(session, self)
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        for leftover in list(self._background):
            leftover.cancel()
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        _log.info("session.detached", session_id=session.id, turns=session.turns)
