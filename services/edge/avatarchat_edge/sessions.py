"""Conversation sessions, which outlive the sockets that carry them.

A session is created for each new socket and announced in the ``session`` frame. When the
socket closes, the session is remembered for ``ttl_s`` so that a client can resume it from a new
socket (``session.start`` with its id): same llm history, same clip ``seq`` counter, same rate
limit, and avatar events continue from the last one delivered.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .limits import TokenBucket


def new_session_id() -> str:
    return secrets.token_hex(16)


def new_turn_id() -> str:
    return "t" + secrets.token_hex(8)


@dataclass(eq=False)
class Session:
    id: str
    avatar: bool
    video: bool
    rate: TokenBucket
    audio_rate: TokenBucket
    # Clips: seq increases across the whole session; events with a seq below
    # ``cancelled_below_seq`` belong to interrupted clips and are not forwarded.
    next_seq: int = 1
    cancelled_below_seq: int = 0
    # Stream sequence of the last avatar event delivered (None: none yet).
    last_event_seq: int | None = None
    created_unix: float = field(default_factory=time.time)
    turns: int = 0
    # When each recent turn started (monotonic), for the time-to-first-clip metric.
    turn_started: OrderedDict[str, float] = field(default_factory=OrderedDict)
    connection: Any = None  # the Connection the session is attached to, if any
    detached_at: float | None = None

    def allocate_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def cancel_clips_so_far(self) -> bool:
        """Marks every clip allocated until now as cancelled; True if there were new ones."""
        had_new = self.cancelled_below_seq < self.next_seq
        self.cancelled_below_seq = self.next_seq
        return had_new and self.next_seq > 1

    def note_turn(self, turn_id: str, started: float) -> None:
        self.turns += 1
        self.turn_started[turn_id] = started
        while len(self.turn_started) > 16:
            self.turn_started.popitem(last=False)


class SessionRegistry:
    """Live and recently detached sessions, bounded in count and age."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_remembered: int,
        make_session: Callable[[str], Session],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_remembered
        self._make = make_session
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, connection: Any) -> Session:
        """A new session, attached to ``connection``."""
        session = self._make(new_session_id())
        session.connection = connection
        self._sessions[session.id] = session
        self._evict_overflow()
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, unless unknown or expired."""
        session = self._sessions.get(session_id)
        if session is None or self._expired(session):
            return None
        return session

    def attach(self, session: Session, connection: Any) -> Any:
        """Attaches ``connection``; returns the connection it took the session from, if any."""
        previous = session.connection if session.connection is not connection else None
        session.connection = connection
        session.detached_at = None
        self._sessions.move_to_end(session.id)
        return previous

    def detach(self, session: Session, connection: Any) -> bool:
        """Detaches if ``connection`` still holds the session; True when it did."""
        if session.connection is not connection:
            return False
        session.connection = None
        session.detached_at = self._clock()
        return True

    def forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def purge(self) -> list[Session]:
        """Removes and returns the expired sessions."""
        expired = [s for s in self._sessions.values() if self._expired(s)]
        for session in expired:
            del self._sessions[session.id]
        return expired

    def _expired(self, session: Session) -> bool:
        return (
            session.connection is None
            and session.detached_at is not None
            and self._clock() - session.detached_at > self._ttl_s
        )

    def _evict_overflow(self) -> None:
        """Drops the oldest detached sessions beyond the bound; live ones always stay."""
        if len(self._sessions) <= self._max:
            return
        for session in list(self._sessions.values()):
            if len(self._sessions) <= self._max:
                break
            if session.connection is None:
                del self._sessions[session.id]
