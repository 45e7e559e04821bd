"""The aiohttp application: ``create_app(config)`` wires every part of the edge.

Routes: ``/ws`` (the protocol), ``/healthz``, ``/readyz``, ``/metrics``, ``/clips/<id>.*``,
``/rig/<name>`` and the web UI at ``/``. Long-lived resources live in ``cleanup_ctx`` (gRPC
channels, the NATS connection, the session janitor and checkpoints), so they are closed in
reverse order on exit; on shutdown every socket is closed with 1001 GOING_AWAY first.

With NATS, sessions live in NATS KV (``session_store.py``), so any edge resumes any session;
without it, only this edge's sessions can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from avatarchat import log
from avatarchat.v1 import llm_pb2

from .config import EdgeConfig
from .limits import TokenBucket
from .media import MediaCache, MediaRoutes
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .probes import Probes
from .resume import CHECKPOINT_S, SessionCustody
from .session_store import SessionClaims, SessionStore
from .sessions import Session, SessionRegistry
from .upstream import Upstreams, metadata
from .worker_watch import WorkerWatch
from .ws import SocketRoute

_log = log.get("avatarchat.edge.app")

CONFIG = web.AppKey("config", EdgeConfig)
METRICS = web.AppKey("metrics", EdgeMetrics)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
NATS = web.AppKey("nats", NatsLink)
WORKERS = web.AppKey("workers", WorkerWatch)
SESSIONS = web.AppKey("sessions", SessionRegistry)
CUSTODY = web.AppKey("custody", SessionCustody)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
STOPPING = web.AppKey("stopping", asyncio.Event)
ROUTE = web.AppKey("route", SocketRoute)

JANITOR_INTERVAL_S = 15.0
TEARDOWN_WAIT_S = 5.0


def create_app(config: EdgeConfig, *, metrics: EdgeMetrics | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config
    app[METRICS] = metrics or EdgeMetrics()
    app[UPSTREAMS] = Upstreams(
        llm_addr=config.llm_addr,
        stt_addr=config.stt_addr,
        avatar_addr=config.avatar_addr,
        connect_timeout_s=config.connect_timeout_s,
        deadlines=config.deadlines,
    )
    app[NATS] = NatsLink(
        config.runtime.nats_url if config.use_nats else None, retention=config.retention
    )
    app[WORKERS] = WorkerWatch(app[NATS])
    app[SESSIONS] = SessionRegistry(
        ttl_s=config.session_ttl_s,
        max_remembered=config.max_remembered_sessions,
        make_session=lambda session_id: _new_session(config, session_id),
    )
    shared = app[NATS].enabled
    app[CUSTODY] = SessionCustody(
        app[SESSIONS],
        store=SessionStore(app[NATS], ttl_s=config.session_ttl_s, retention=config.retention)
        if shared
        else None,
        claims=SessionClaims(app[NATS]) if shared else None,
        ttl_s=config.session_ttl_s,
    )
    app[SOCKETS] = weakref.WeakSet()
    app[STOPPING] = asyncio.Event()

    app.cleanup_ctx.append(_upstreams_ctx)
    app.cleanup_ctx.append(_nats_ctx)
    app.cleanup_ctx.append(_workers_ctx)
    app.cleanup_ctx.append(_janitor_ctx)
    app.cleanup_ctx.append(_checkpoint_ctx)
    app.on_shutdown.append(_close_sockets)

    app[ROUTE] = SocketRoute(
        config=config,
        custody=app[CUSTODY],
        upstreams=app[UPSTREAMS],
        nats=app[NATS],
        workers=app[WORKERS],
        metrics=app[METRICS],
        sockets=app[SOCKETS],
    )
    app[ROUTE].add_to(app.router)
    Probes(
        upstreams=app[UPSTREAMS],
        nats=app[NATS],
        metrics=app[METRICS],
        stopping=app[STOPPING].is_set,
    ).add_to(app.router)
    MediaRoutes(app[NATS], MediaCache(config.media_cache_bytes)).add_to(app.router)
    _add_web_ui(app, config)
    return app


def _new_session(config: EdgeConfig, session_id: str) -> Session:
    return Session(
        id=session_id,
        avatar=True,
        video=True,
        rate=TokenBucket(config.rate_per_s, config.rate_burst),
        audio_rate=TokenBucket(config.audio_frames_per_s, config.audio_frames_burst),
    )


def _add_web_ui(app: web.Application, config: EdgeConfig) -> None:
    index = config.static_dir / "index.html"

    async def serve_index(_request: web.Request) -> web.StreamResponse:
        if not index.is_file():
            return web.json_response({"error": "the web UI is not installed"}, status=404)
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", serve_index)
    if config.static_dir.is_dir():
        app.router.add_static("/", config.static_dir)


async def _upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    upstreams = app[UPSTREAMS]
    upstreams.open()
    try:
        yield
    finally:
        await upstreams.close()


async def _nats_ctx(app: web.Application) -> AsyncIterator[None]:
    link = app[NATS]
    link.start()
    try:
        yield
    finally:
        await link.close()


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    task = (
        asyncio.create_task(app[WORKERS].run(), name="worker-watch") if app[NATS].enabled else None
    )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _janitor_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_janitor(app), name="session-janitor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _checkpoint_ctx(app: web.Application) -> AsyncIterator[None]:
    custody = app[CUSTODY]
    task = asyncio.create_task(_checkpoints(custody), name="session-checkpoints")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _checkpoints(custody: SessionCustody) -> None:
    """Saves the state of live sessions that changed, so a dead edge loses almost nothing."""
    if not custody.shared:
        return
    while True:
        await asyncio.sleep(CHECKPOINT_S)
        try:
            await custody.checkpoint()
        except Exception:  # a bug must not stop the checkpoints for good
            _log.exception("session.checkpoint_failed")


async def _janitor(app: web.Application) -> None:
    """Forgets expired sessions, and asks the llm to forget their history too."""
    sessions, upstreams, config = app[SESSIONS], app[UPSTREAMS], app[CONFIG]
    while True:
        await asyncio.sleep(min(JANITOR_INTERVAL_S, max(config.session_ttl_s, 0.5)))
        for session in sessions.purge():
            _log.info("session.expired", session_id=session.id, turns=session.turns)
            if session.turns and upstreams.llm.deployed:
                await _forget_history(upstreams, session.id, config.rpc_deadline_s)
        app[METRICS].sessions_remembered.set(len(sessions))


async def _forget_history(upstreams: Upstreams, session_id: str, deadline_s: float) -> None:
    try:
        stub = await upstreams.llm_stub()
        await stub.ResetHistory(
            llm_pb2.ResetHistoryRequest(session_id=session_id),
            timeout=deadline_s,
            wait_for_ready=False,
            metadata=metadata(session_id),
        )
    except Exception as exc:  # best effort: the llm may be down; its store has a TTL too
        _log.info("session.forget_failed", session_id=session_id, error=str(exc))


async def _close_sockets(app: web.Application) -> None:
    app[STOPPING].set()
    open_sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
    sockets = list(open_sockets)
    if sockets:
        _log.info("edge.closing_sockets", count=len(sockets))
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
        return_exceptions=True,
    )
    # Each connection saves its session for a resume elsewhere before NATS closes.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TEARDOWN_WAIT_S):
            await app[ROUTE].idle.wait()
