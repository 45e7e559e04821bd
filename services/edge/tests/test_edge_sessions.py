"""SessionRegistry and Session, against an injected clock (no waiting)."""

from __future__ import annotations

import pytest

from avatarchat_edge.limits import TokenBucket
from avatarchat_edge.sessions import Session, SessionRegistry, SessionState
from tests.clocks import ManualClock as Clock

TTL_S = 60.0


class Socket:
    async def surrender(self) -> None:  # pragma: no cover - the registry never calls it
        raise AssertionError("the registry does not ask holders to let go")


def make_session(session_id: str) -> Session:
    return Session(
        id=session_id,
        avatar=True,
        video=False,
        rate=TokenBucket(5, 10),
        audio_rate=TokenBucket(50, 100),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> SessionRegistry:
    return SessionRegistry(ttl_s=TTL_S, max_remembered=4, make_session=make_session, clock=clock)


def test_a_created_session_is_attached_to_its_holder(registry: SessionRegistry) -> None:
    socket = Socket()
    session = registry.create(socket)
    assert len(session.id) == 32 and registry.get(session.id) is session
    assert registry.holder(session) is socket and registry.attached() == [session]
    named = registry.create(Socket(), "given-id")
    assert named.id == "given-id" and len(registry) == 2


def test_an_attached_session_never_expires(registry: SessionRegistry, clock: Clock) -> None:
    session = registry.create(Socket())
    clock.now += 100 * TTL_S
    assert registry.get(session.id) is session
    assert registry.purge() == []


def test_a_detached_session_lives_for_the_ttl_then_expires(
    registry: SessionRegistry, clock: Clock
) -> None:
    socket = Socket()
    session = registry.create(socket)
    assert registry.detach(session, socket)
    assert registry.holder(session) is None and session.detached_at == clock.now
    clock.now += TTL_S
    assert registry.get(session.id) is session and registry.purge() == []
    clock.now += 0.001
    assert registry.get(session.id) is None
    assert registry.purge() == [session] and len(registry) == 0


def test_only_the_holder_can_detach(registry: SessionRegistry, clock: Clock) -> None:
    socket = Socket()
    session = registry.create(socket)
    assert not registry.detach(session, Socket())
    clock.now += 2 * TTL_S
    assert registry.get(session.id) is session and registry.holder(session) is socket


def test_attaching_takes_the_session_over(registry: SessionRegistry, clock: Clock) -> None:
    first, second = Socket(), Socket()
    session = registry.create(first)
    assert registry.attach(session, second) is first  # a takeover names who lost it
    assert registry.attach(session, second) is None  # re-attaching the same holder is no news
    assert registry.holder(session) is second
    assert not registry.detach(session, first)  # the old socket's late close changes nothing
    assert registry.detach(session, second)


def test_a_resume_within_the_ttl_keeps_the_session(registry: SessionRegistry, clock: Clock) -> None:
    socket = Socket()
    session = registry.create(socket)
    registry.detach(session, socket)
    clock.now += TTL_S - 1
    assert registry.attach(session, Socket()) is None and session.detached_at is None
    clock.now += 10 * TTL_S
    assert registry.get(session.id) is session


def test_a_session_resumed_from_elsewhere_waits_for_its_socket_only_the_ttl(
    registry: SessionRegistry, clock: Clock
) -> None:
    session = registry.create_detached("from-another-edge")
    assert registry.holder(session) is None and registry.attached() == []
    clock.now += TTL_S + 1
    assert registry.get("from-another-edge") is None


def test_the_oldest_detached_sessions_make_room_but_live_ones_stay(
    registry: SessionRegistry, clock: Clock
) -> None:
    live = [registry.create(Socket()) for _ in range(3)]
    gone_socket = Socket()
    oldest_detached = registry.create(gone_socket)
    registry.detach(oldest_detached, gone_socket)
    newer_socket = Socket()
    newer_detached = registry.create(newer_socket)  # 5 > max_remembered=4
    assert registry.get(oldest_detached.id) is None
    registry.detach(newer_detached, newer_socket)
    more_live = [registry.create(Socket()) for _ in range(3)]  # only live ones left to keep
    assert registry.get(newer_detached.id) is None
    assert all(registry.get(s.id) is s for s in live + more_live)
    assert len(registry) == 6  # over the bound: live sessions are never dropped


def test_forget_removes_only_that_session_object(registry: SessionRegistry) -> None:
    session = registry.create(Socket(), "same-id")
    registry.forget(make_session("same-id"))  # another object with the same id
    assert registry.get("same-id") is session
    registry.forget(session)
    assert registry.get("same-id") is None and registry.holder(session) is None


def test_clip_seqs_and_cancelling_them() -> None:
    session = make_session("s")
    assert not session.cancel_clips_so_far()  # no clips yet
    assert [session.allocate_seq() for _ in range(3)] == [1, 2, 3]
    assert session.cancel_clips_so_far() and session.cancelled_below_seq == 4
    assert not session.cancel_clips_so_far()  # nothing new since
    assert session.allocate_seq() == 4 and session.cancel_clips_so_far()


def test_only_the_recent_turn_start_times_are_kept() -> None:
    session = make_session("s")
    for n in range(20):
        session.note_turn(f"t{n}", float(n))
    assert session.turns == 20
    assert list(session.turn_started) == [f"t{n}" for n in range(4, 20)]


def test_a_state_survives_json_and_restores_a_new_session() -> None:
    session = make_session("s")
    session.allocate_seq()
    session.allocate_seq()
    session.cancel_clips_so_far()
    session.last_event_seq = 17
    session.note_turn("t1", 0.0)
    state = SessionState.from_json(session.state().to_json())
    assert state == session.state()
    fresh = make_session("s")
    fresh.restore(state)
    assert fresh.state() == state
    assert fresh.rate is not session.rate  # the rate limits stay the new session's own


@pytest.mark.parametrize(
    "raw", [b"", b"[]", b"{}", b'{"id": "s"}', b"not json", b'{"id":"s","next_seq":"x"}']
)
def test_a_stored_state_that_is_not_one_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a session state"):
        SessionState.from_json(raw)
