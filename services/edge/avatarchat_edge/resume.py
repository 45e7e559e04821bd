"""Resume and takeover: which session a socket carries, wherever the session was before.

``SessionCustody`` is the edge's one authority on where sessions are:

- ``find`` looks a session up for a ``session.start``. Held by a socket of this edge: that
  socket hands it over. Otherwise, with NATS, any edge holding it is asked to let go (it saves
  the final state first), and the state comes from NATS KV; without NATS, only sessions this
  edge remembers can be resumed.
- ``acquire`` / ``release`` bracket a socket's hold on a session: while held, other edges can
  claim it; on release its final state is saved.
- ``checkpoint`` saves the state of held sessions that changed (and refreshes the ones that did
  not, before the TTL), so even an edge that dies loses at most about a second of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.errors import Error as NatsError

from avatarchat import log

from .nats_link import NatsUnavailable
from .protocol import ErrorCode, ProtocolError
from .session_store import Hold, SessionClaims, SessionStore
from .sessions import Session, SessionHolder, SessionRegistry, SessionState

_log = log.get("avatarchat.edge.resume")

CHECKPOINT_S = 1.0


class Resumable(SessionHolder, Protocol):
    """A connection, as resume and takeover see it."""

    session: Session

    async def stop_session_work(self) -> None:
        """Stops what the connection runs for its current session (voice, turn, events)."""

    def adopt(self, session: Session) -> None:
        """Makes ``session`` the connection's current one."""


class SessionCustody:
    def __init__(
        self,
        sessions: SessionRegistry,
        *,
        store: SessionStore | None,
        claims: SessionClaims | None,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self._store = store
        self._claims = claims
        self._ttl_s = ttl_s
        self._clock = clock
        self._holds: dict[str, Hold] = {}
        self._let_go: dict[str, Callable[[], Awaitable[None]]] = {}
        self._releasing: dict[str, asyncio.Event] = {}  # saves in progress
        self._saved: dict[str, tuple[SessionState, float]] = {}

    @property
    def shared(self) -> bool:
        """True when sessions live in NATS, so that any edge can resume them."""
        return self._store is not None

    async def find(self, session_id: str, *, current: str) -> Session:
        """The session to resume; ``ProtocolError(UNKNOWN_SESSION)`` if there is none."""
        local = self.sessions.get(session_id)
        if local is not None and self.sessions.holder(local) is not None:
            return local  # a socket of this edge holds it and will hand it over
        if self._store is not None and self._claims is not None:
            try:
                if await self._claims.claim(session_id):
                    _log.info("session.claimed", session_id=session_id)
                state = await self._store.load(session_id)
            except (NatsUnavailable, NatsError, TimeoutError) as exc:
                _log.warning("session.lookup_failed", session_id=session_id, error=str(exc))
                raise ProtocolError(
                    ErrorCode.SESSIONS_UNAVAILABLE,
                    "sessions cannot be resumed right now (the session store is not reachable); "
                    f"try again shortly. This socket carries on with session {current}",
                ) from None
            if state is not None:
                session = local or self.sessions.create_detached(session_id)
                session.restore(state)
                return session
        elif local is not None:
            return local
        raise ProtocolError(
            ErrorCode.UNKNOWN_SESSION,
            f"session {session_id} is unknown or has expired; this socket carries on with "
            f"session {current}",
        )

    async def switch(self, holder: Resumable, target: Session) -> None:
        """Moves ``holder`` from its session to ``target``; a socket that held it surrenders."""
        old = holder.session
        await holder.stop_session_work()
        if old.turns == 0:  # never used: nothing to resume later
            await self.release(old, save=False)
            self.sessions.forget(old)
            if self._store is not None:
                await self._store.delete(old.id)  # a checkpoint may have stored it
        else:
            await self.leave(old, holder)
        previous = self.sessions.attach(target, holder)
        holder.adopt(target)
        if previous is not None:
            await previous.surrender()
        await self.acquire(target, holder.surrender)
        _log.info("session.resumed", session_id=target.id, replaced=old.id)

    async def leave(self, session: Session, holder: SessionHolder) -> bool:
        """``holder`` lets go of ``session``; True if it still held it (its state is saved)."""
        if not self.sessions.detach(session, holder):
            return False
        await self.release(session)
        if self.shared:
            self.sessions.forget(session)  # the stored state is the truth from now on
        return True

    async def acquire(self, session: Session, let_go: Callable[[], Awaitable[None]]) -> None:
        """Lets other edges claim ``session`` from this socket until ``release``.

        With NATS down, the session works on this edge, and ``checkpoint`` tries again.
        """
        if self._claims is None:
            return

        async def hand_over() -> None:
            await let_go()
            await self._settled(session.id)  # a teardown may be saving it: answer after that

        self._let_go[session.id] = hand_over
        await self._hold(session.id)

    async def _hold(self, session_id: str) -> None:
        let_go = self._let_go.get(session_id)
        if self._claims is None or let_go is None or session_id in self._holds:
            return
        try:
            self._holds[session_id] = await self._claims.hold(session_id, let_go)
        except Exception as exc:
            _log.info("session.hold_failed", session_id=session_id, error=str(exc))

    async def _settled(self, session_id: str) -> None:
        releasing = self._releasing.get(session_id)
        if releasing is not None:
            await releasing.wait()

    async def release(self, session: Session, *, save: bool = True) -> None:
        """Saves the session's final state (unless told not to) and stops holding it."""
        if save and self._store is not None:
            releasing = self._releasing.setdefault(session.id, asyncio.Event())
            try:
                if await self._store.save(session.state()):
                    self._saved[session.id] = (session.state(), self._clock())
            finally:
                releasing.set()
                self._releasing.pop(session.id, None)
        self._let_go.pop(session.id, None)
        hold = self._holds.pop(session.id, None)
        if hold is not None:
            await hold.release()
        if self._store is not None:
            self._saved.pop(session.id, None)

    async def checkpoint(self) -> int:
        """Saves held sessions whose state changed, or is about to expire; how many it saved."""
        if self._store is None:
            return 0
        saved = 0
        now = self._clock()
        for session in self.sessions.attached():
            await self._hold(session.id)  # one that could not be held while NATS was down
            state = session.state()
            last = self._saved.get(session.id)
            if last is not None and last[0] == state and now - last[1] < self._ttl_s / 2:
                continue
            if await self._store.save(state) and self.sessions.holder(session) is not None:
                self._saved[session.id] = (state, now)
                saved += 1
        return saved
