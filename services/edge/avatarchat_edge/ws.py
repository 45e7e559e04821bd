"""``GET /ws``: checks access and capacity, then hands the socket to a ``Connection``.

Refusals are sent as an error frame on an accepted socket, then a close with a specific code,
because a browser cannot read the HTTP status of a refused WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import WSCloseCode, web

from avatarchat import log

from . import access
from .config import EdgeConfig
from .connection import Connection
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .protocol import ErrorCode, error
from .resume import SessionCustody
from .upstream import Upstreams
from .worker_watch import WorkerWatch

_log = log.get("avatarchat.edge.ws")

CLOSE_TIMEOUT_S = 3.0


class SocketRoute:
    def __init__(
        self,
        *,
        config: EdgeConfig,
        custody: SessionCustody,
        upstreams: Upstreams,
        nats: NatsLink,
        workers: WorkerWatch,
        metrics: EdgeMetrics,
        sockets: weakref.WeakSet[web.WebSocketResponse],
    ) -> None:
        self._config = config
        self._custody = custody
        self._upstreams = upstreams
        self._nats = nats
        self._workers = workers
        self._metrics = metrics
        self._sockets = sockets
        self.idle = asyncio.Event()  # set while no connection is running (or tearing down)
        self.idle.set()
        self._running = 0

    def _finished(self) -> None:
        self._running -= 1
        if not self._running:
            self.idle.set()

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/ws", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        config = self._config
        ws = web.WebSocketResponse(
            max_msg_size=config.max_frame_bytes,
            heartbeat=config.heartbeat_s,
            timeout=CLOSE_TIMEOUT_S,
            # Frames are small JSON or already-compressed audio: deflate would only add latency.
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {"error": "this endpoint speaks WebSocket; see docs/protocol.md"},
                status=426,
                headers={"Upgrade": "websocket"},
            )
        refusal = access.check(request, config)
        if refusal is None and len(self._sockets) >= config.max_sessions:
            refusal = access.Refusal(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the server already holds {config.max_sessions} sessions; try again later",
                WSCloseCode.TRY_AGAIN_LATER,
            )
        if refusal is not None and refusal.before_upgrade:
            _log.info("ws.refused", code=str(refusal.code), remote=request.remote)
            self._metrics.errors_total.labels(str(refusal.code)).inc()
            return web.json_response(error(refusal.code, refusal.message), status=403)
        await ws.prepare(request)
        if refusal is not None:
            _log.info("ws.refused", code=str(refusal.code), remote=request.remote)
            self._metrics.errors_total.labels(str(refusal.code)).inc()
            await ws.send_json(error(refusal.code, refusal.message))
            reason = refusal.message.encode("ascii", "replace")[:120]
            await ws.close(code=refusal.close_code, message=reason)
            return ws
        self._sockets.add(ws)
        self._metrics.sockets_active.inc()
        connection = Connection(
            ws,
            config=config,
            custody=self._custody,
            upstreams=self._upstreams,
            nats=self._nats,
            workers=self._workers,
            metrics=self._metrics,
        )
        self._running += 1
        self.idle.clear()
        try:
            await connection.run()
        finally:
            # Even when this handler is cancelled, the teardown (which saves the session) goes on:
            # the route is idle only once it has finished.
            teardown = connection.teardown
            if teardown is None or teardown.done():
                self._finished()
            else:
                teardown.add_done_callback(lambda _: self._finished())
            self._sockets.discard(ws)
            self._metrics.sockets_active.dec()
            self._metrics.sessions_remembered.set(len(self._custody.sessions))
        return ws
