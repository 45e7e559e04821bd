"""NATS: one connection helper, and the one definition of every subject and JetStream resource.

Each resource is defined (name, subjects, retention) here and nowhere else, and is created by
exactly one service, its owner; the others only use it:

=============================  ========  ==================================================
resource                       owner     what it holds
=============================  ========  ==================================================
stream ``AVATAR_EVENTS``       avatar    ``avatar.events.<session_id>`` (``AvatarEvent``),
                                         bounded age, so an edge that reconnects replays
                                         what it missed
object store ``avatarchat-     avatar    clip audio and video (``clip_object``) and the
clips``                                  browser rig (``rig_object``), with a TTL
KV ``avatarchat-history``      llm       conversation history, when the llm keeps it in NATS
KV ``avatarchat-sessions``     edge      what a resume needs (``SessionState``), with a TTL,
                                         so any edge can resume any session
=============================  ========  ==================================================

Core NATS subjects, outside every stream: ``avatar.workers.<worker_id>`` (avatar heartbeats),
``avatar.cancel.<session_id>`` (cancels, heard by every avatar process) and
``avatarchat.sessions.claim.<session_id>`` (an edge asking the edge that holds a session to let
go of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from avatarchat import log
from avatarchat.config import Env

_log = log.get("avatarchat.bus")

EVENTS_STREAM = "AVATAR_EVENTS"
EVENTS_SUBJECT_PREFIX = "avatar.events"
CLIPS_BUCKET = "avatarchat-clips"
HISTORY_BUCKET = "avatarchat-history"
SESSIONS_BUCKET = "avatarchat-sessions"
RIG_PREFIX = "rig/"
CLIP_MEDIA = ("wav", "mp4")

WORKERS_SUBJECT_PREFIX = "avatar.workers"  # core NATS, outside every stream
CANCEL_SUBJECT_PREFIX = "avatar.cancel"  # core NATS, outside every stream
SESSION_CLAIM_PREFIX = "avatarchat.sessions.claim"  # core NATS, request/reply


def clip_object(clip_id: str, kind: str) -> str:
    """The object store name of a clip's ``wav`` or ``mp4``."""
    if kind not in CLIP_MEDIA:
        raise ValueError(f"clip media is one of {CLIP_MEDIA}, not {kind!r}")
    return f"{clip_id}.{kind}"


def rig_object(name: str) -> str:
    """The object store name of a browser rig asset (``manifest.json``, ``mouth/aa.png``...)."""
    return f"{RIG_PREFIX}{name}"


def events_subject(session_id: str) -> str:
    """The subject a session's avatar events are published on."""
    return f"{EVENTS_SUBJECT_PREFIX}.{session_id}"


def worker_subject(worker_id: str) -> str:
    """The subject an avatar process publishes its ``WorkerHeartbeat`` on."""
    return f"{WORKERS_SUBJECT_PREFIX}.{worker_id}"


def session_claim_subject(session_id: str) -> str:
    """The subject the edge holding a live session listens on for takeovers."""
    return f"{SESSION_CLAIM_PREFIX}.{session_id}"


def cancel_subject(session_id: str) -> str:
    """The subject a cancel of a session's clips (``CancelClipsRequest``) is broadcast on."""
    return f"{CANCEL_SUBJECT_PREFIX}.{session_id}"


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout_s: float = 5.0,
    on_reconnected: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """Connects with unlimited reconnects, logging each state change.

    ``on_reconnected`` runs after each reconnect (the edge re-creates its JetStream consumers
    from the last sequence it saw, so a restarted server costs it no event).
    """

    async def on_error(exc: Exception) -> None:
        _log.warning("nats.error", error=str(exc) or type(exc).__name__)

    async def on_disconnected() -> None:
        _log.warning("nats.disconnected")

    async def reconnected() -> None:
        _log.info("nats.reconnected", url=str(nc.connected_url.netloc if nc.connected_url else ""))
        if on_reconnected is not None:
            await on_reconnected()

    nc = await nats.connect(
        servers=[url],
        name=name,
        connect_timeout=connect_timeout_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=reconnected,
    )
    _log.info("nats.connected", url=url)
    return nc


async def close(nc: NATS, timeout_s: float = 1.0) -> None:
    """Drains ``nc`` if the server is there, within ``timeout_s``; otherwise just closes it.

    A drain while the server is gone would wait for a reconnect that may never come, and a
    service must finish its shutdown within its grace whatever stopped first.
    """
    if nc.is_closed:
        return
    if nc.is_connected:
        try:
            async with asyncio.timeout(timeout_s):
                await nc.drain()
                return
        except Exception as exc:  # timed out, or the server went away mid-drain
            _log.warning("nats.drain_failed", error=str(exc) or type(exc).__name__)
    try:
        # nats.py's close can wait on its reconnect loop while the server is gone.
        async with asyncio.timeout(timeout_s):
            await nc.close()
    except (OSError, TimeoutError) as exc:  # flushing what was buffered for a gone server
        _log.warning("nats.close_failed", error=str(exc) or type(exc).__name__)
    finally:
        await _end_reconnect_loop(nc, timeout_s)


async def _end_reconnect_loop(nc: NATS, timeout_s: float) -> None:
    """Cancels ``nc``'s reconnect loop until it has really ended, within ``timeout_s``.

    nats.py's close cancels the loop once. On Python 3.11 ``asyncio.wait_for`` can swallow that
    cancel when the connect it wraps fails at the same instant: the loop sees a refused
    connection, catches it and tries the next server, forever, after the client said it was
    closed; the process (or a test's event loop) then never ends. Cancelling again until the
    task is done ends it.
    """
    task: asyncio.Task[None] | None = getattr(nc, "_reconnection_task", None)
    if task is None or task is asyncio.current_task():
        return
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.done():
        _log.warning("nats.reconnect_loop_survived_close")


@dataclass(frozen=True)
class Retention:
    """How long things live in JetStream, and on how many servers (replicas)."""

    events_max_age_s: float = 600.0
    clips_ttl_s: float = 3600.0
    history_ttl_s: float = 7 * 24 * 3600.0
    replicas: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Retention:
        """Shared by every service, so one deployment value configures each resource."""
        env = Env(environ)
        return cls(
            events_max_age_s=env.float("AVATARCHAT_EVENTS_MAX_AGE_S", cls.events_max_age_s, min=1),
            clips_ttl_s=env.float("AVATARCHAT_CLIPS_TTL_S", cls.clips_ttl_s, min=1),
            history_ttl_s=env.float("AVATARCHAT_HISTORY_TTL_S", cls.history_ttl_s, min=1),
            replicas=env.int("AVATARCHAT_NATS_REPLICAS", cls.replicas, min=1, max=5),
        )


async def ensure_events_stream(js: JetStreamContext, retention: Retention) -> None:
    """Creates the events stream, or brings its configuration up to date (the avatar's job)."""
    config = StreamConfig(
        name=EVENTS_STREAM,
        subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
        max_age=retention.events_max_age_s,
        num_replicas=retention.replicas,
        description="avatar clip events per session",
    )
    try:
        await js.add_stream(config)
    except BadRequestError:  # exists with another configuration: bring it up to date
        await js.update_stream(config)


async def ensure_clips_store(js: JetStreamContext, retention: Retention) -> ObjectStore:
    """The clips object store, created if needed (the avatar's job); an existing one gets the
    current TTL and replicas."""
    config = ObjectStoreConfig(
        ttl=retention.clips_ttl_s, replicas=retention.replicas, description="avatar clip media"
    )
    try:
        return await js.create_object_store(CLIPS_BUCKET, config=config)
    except BadRequestError:  # exists with another configuration
        await _update_bucket_stream(
            js, f"OBJ_{CLIPS_BUCKET}", retention.clips_ttl_s, retention.replicas, config.description
        )
        return await js.object_store(CLIPS_BUCKET)


async def ensure_history_kv(js: JetStreamContext, retention: Retention) -> KeyValue:
    """The history KV bucket, created if needed (the llm's job)."""
    return await _ensure_kv(
        js,
        KeyValueConfig(
            bucket=HISTORY_BUCKET,
            history=1,
            ttl=retention.history_ttl_s,
            replicas=retention.replicas,
            description="conversation history per session",
        ),
    )


async def ensure_sessions_kv(js: JetStreamContext, ttl_s: float, retention: Retention) -> KeyValue:
    """The sessions KV bucket, created if needed (the edge's job).

    ``ttl_s`` is how long a session outlives its last update (the edge's session TTL).
    """
    return await _ensure_kv(
        js,
        KeyValueConfig(
            bucket=SESSIONS_BUCKET,
            history=1,
            ttl=max(ttl_s, 1.0),
            replicas=retention.replicas,
            description="what a resume needs, per session",
        ),
    )


async def _ensure_kv(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """Creates a KV bucket, or brings an existing one's TTL and replicas up to date."""
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # exists with another configuration
        await _update_bucket_stream(
            js, f"KV_{config.bucket}", config.ttl, config.replicas, config.description
        )
        return await js.key_value(config.bucket)


async def _update_bucket_stream(
    js: JetStreamContext, stream: str, ttl_s: float | None, replicas: int, description: str | None
) -> None:
    """Gives the stream behind a bucket a new TTL and replica count, keeping its contents."""
    current = (await js.stream_info(stream)).config
    current.max_age = ttl_s
    if ttl_s and (current.duplicate_window or 0) > ttl_s:
        current.duplicate_window = ttl_s  # JetStream's rule, as at creation
    current.num_replicas = replicas
    current.description = description
    await js.update_stream(current)
    _log.info("nats.bucket_updated", stream=stream, ttl_s=ttl_s, replicas=replicas)
