"""Sessions shared by every edge: their state in NATS KV, and takeover between edges.

- ``SessionStore`` keeps each session's ``SessionState`` in the KV bucket
  ``avatarchat-sessions`` (the edge owns it; ``bus`` defines it), with the session TTL as the
  bucket's max age, so a session outlives its last update by that long. A client can then
  resume on any edge pod: no affinity is needed.
- ``SessionClaims`` moves a live session between edges. The edge holding a session listens on
  ``avatarchat.sessions.claim.<session_id>``; an edge that resumes it asks there first, and the
  holder lets go (its socket gets ``session_taken_over``), saves the final state and answers.
  Nobody answering means nobody holds it, and the stored state is the latest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from avatarchat import bus, log

from .nats_link import NatsLink
from .sessions import SessionState

_log = log.get("avatarchat.edge.session_store")

STORE_TIMEOUT_S = 2.0
RELEASED = b"released"


class SessionStore:
    def __init__(self, link: NatsLink, *, ttl_s: float, retention: bus.Retention) -> None:
        self._link = link
        self._ttl_s = ttl_s
        self._retention = retention
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        """The bucket; ``NatsUnavailable`` at once when NATS is down (nothing waits for it)."""
        js = self._link.client_now().jetstream()
        if self._kv is None:
            self._kv = await bus.ensure_sessions_kv(js, self._ttl_s, self._retention)
        return self._kv

    async def load(self, session_id: str) -> SessionState | None:
        """The stored state; None if there is none (unknown or expired) or it is unreadable.

        Raises ``NatsUnavailable``, a NATS error or ``TimeoutError`` when it cannot tell.
        """
        async with asyncio.timeout(STORE_TIMEOUT_S):
            kv = await self._bucket()
            try:
                entry = await kv.get(session_id)
            except KeyNotFoundError:
                return None
        try:
            state = SessionState.from_json(entry.value or b"")
        except ValueError as exc:
            _log.warning("session.state_unreadable", session_id=session_id, error=str(exc))
            return None
        return state if state.id == session_id else None

    async def save(self, state: SessionState) -> bool:
        """Stores ``state``; False (logged) if NATS did not take it in time."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                kv = await self._bucket()
                await kv.put(state.id, state.to_json())
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            _log.warning("session.save_failed", session_id=state.id, error=reason)
            return False
        return True

    async def delete(self, session_id: str) -> None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                kv = await self._bucket()
                await kv.delete(session_id)
        except Exception as exc:
            _log.info("session.delete_failed", session_id=session_id, error=str(exc))


class Hold:
    """This edge's claim on one live session, until ``release``."""

    def __init__(self, sub: Subscription) -> None:
        self._sub: Subscription | None = sub

    async def release(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection is closing: the server forgets it anyway
                _log.debug("session.release_failed", error=str(exc) or type(exc).__name__)


class SessionClaims:
    def __init__(self, link: NatsLink, *, timeout_s: float = 3.0) -> None:
        self._link = link
        self._timeout_s = timeout_s
        self._handovers: set[asyncio.Task[None]] = set()

    async def hold(self, session_id: str, let_go: Callable[[], Awaitable[None]]) -> Hold:
        """Listens for claims on ``session_id``; ``let_go`` runs before the claimer is answered.

        The hold is in force at the server when this returns (a flush waits for it), so a claim
        made after it, by any edge, finds this one. Raises ``NatsUnavailable`` when NATS is down
        and the flush's error when the server does not confirm it in time.
        """
        nc = self._link.client_now()

        async def hand_over(msg: Msg) -> None:
            try:
                await let_go()
            finally:
                await msg.respond(RELEASED)

        async def on_claim(msg: Msg) -> None:
            # Letting go releases the hold, which ends this subscription and its task: the
            # handover runs in a task of its own.
            task = asyncio.create_task(hand_over(msg), name=f"handover-{session_id}")
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)

        hold = Hold(await nc.subscribe(bus.session_claim_subject(session_id), cb=on_claim))
        try:
            # nats.py only queues the SUB for its flusher: without this, the socket could answer
            # its client, which could resume elsewhere, before the server knew of the hold.
            async with asyncio.timeout(self._timeout_s):
                await nc.flush()
        except BaseException:
            await hold.release()
            raise
        return hold

    async def claim(self, session_id: str) -> bool:
        """Asks whichever edge holds the session to let go; True if one did.

        Raises ``NatsUnavailable`` when NATS is down.
        """
        nc = self._link.client_now()
        try:
            reply = await nc.request(
                bus.session_claim_subject(session_id), b"", timeout=self._timeout_s
            )
        except NoRespondersError:
            return False
        except NatsTimeoutError:
            _log.warning("session.claim_unanswered", session_id=session_id)
            return False
        return reply.data == RELEASED
