"""Conversation sessions, which outlive the sockets that carry them.

A session is created for each new socket and announced in the ``session`` frame. When the
socket closes, a client can resume the session from a new socket (``session.start`` with its
id), on this edge or any other: same llm history, same clip ``seq`` counter, and avatar events
continue from the last one delivered. What a resume needs is the ``SessionState``; it is kept
in NATS KV (``session_store.py``) or, for an edge without NATS, in this process.

The registry knows which holder (the connection) each live session is attached to. The session
itself holds no reference back: the link goes one way, from the connection to its session.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .limits import TokenBucket


def new_session_id() -> str:
    return secrets.token_hex(16)


def new_turn_id() -> str:
    return "t" + secrets.token_hex(8)


@dataclass(frozen=True)
class SessionState:
    """What a resume needs, on any edge: stored as JSON under the session id."""

    id: str
    avatar: bool
    video: bool
    next_seq: int
    cancelled_below_seq: int
    last_event_seq: int | None
    created_unix: float
    turns: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SessionState:
        """Parses a stored state; ``ValueError`` if it is not one."""
        try:
            raw: Any = json.loads(data)
            last = raw["last_event_seq"]
            state = cls(
                id=str(raw["id"]),
                avatar=bool(raw["avatar"]),
                video=bool(raw["video"]),
                next_seq=int(raw["next_seq"]),
                cancelled_below_seq=int(raw["cancelled_below_seq"]),
                last_event_seq=None if last is None else int(last),
                created_unix=float(raw["created_unix"]),
                turns=int(raw["turns"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a session state: {exc}") from None
        return state


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

    def state(self) -> SessionState:
        return SessionState(
            id=self.id,
            avatar=self.avatar,
            video=self.video,
            next_seq=self.next_seq,
            cancelled_below_seq=self.cancelled_below_seq,
            last_event_seq=self.last_event_seq,
            created_unix=self.created_unix,
            turns=self.turns,
        )

    def restore(self, state: SessionState) -> None:
        """Takes over a stored state (the rate limits stay this session's own)."""
        self.avatar, self.video = state.avatar, state.video
        self.next_seq, self.cancelled_below_seq = state.next_seq, state.cancelled_below_seq
        self.last_event_seq, self.created_unix = state.last_event_seq, state.created_unix
        self.turns = state.turns


class SessionHolder(Protocol):
    """What holds a live session (a connection): it can be asked to let go of it."""

    async def surrender(self) -> None: ...


class SessionRegistry:
    """Live and recently detached sessions of this edge, bounded in count and age."""

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
        self._holders: dict[str, SessionHolder] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, holder: SessionHolder, session_id: str | None = None) -> Session:
        """A new session (with a new id unless given), attached to ``holder``."""
        session = self._make(session_id or new_session_id())
        self._sessions[session.id] = session
        self._holders[session.id] = holder
        self._evict_overflow()
        return session

    def create_detached(self, session_id: str) -> Session:
        """A session with a known id and nobody attached yet (one resumed from elsewhere)."""
        session = self._make(session_id)
        session.detached_at = self._clock()
        self._sessions[session.id] = session
        self._evict_overflow()
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, unless unknown or expired."""
        session = self._sessions.get(session_id)
        if session is None or self._expired(session):
            return None
        return session

    def holder(self, session: Session) -> SessionHolder | None:
        return self._holders.get(session.id)

    def attached(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.id in self._holders]

    def attach(self, session: Session, holder: SessionHolder) -> SessionHolder | None:
        """Attaches ``holder``; returns the holder it took the session from, if any."""
        previous = self._holders.get(session.id)
        self._sessions[session.id] = session
        self._holders[session.id] = holder
        session.detached_at = None
        self._sessions.move_to_end(session.id)
        return previous if previous is not holder else None

    def detach(self, session: Session, holder: SessionHolder) -> bool:
        """Detaches if ``holder`` still holds the session; True when it did."""
        if self._holders.get(session.id) is not holder:
            return False
        del self._holders[session.id]
        session.detached_at = self._clock()
        return True

    def forget(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self._holders.pop(session.id, None)

    def purge(self) -> list[Session]:
        """Removes and returns the expired sessions."""
        expired = [s for s in self._sessions.values() if self._expired(s)]
        for session in expired:
            del self._sessions[session.id]
        return expired

    def _expired(self, session: Session) -> bool:
        return (
            session.id not in self._holders
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
            if session.id not in self._holders:
                del self._sessions[session.id]
