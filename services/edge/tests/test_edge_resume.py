"""SessionCustody against a real nats-server: checkpoints save what changed, and refresh the
rest before the TTL (an injected clock stands in for the passing time)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from avatarchat import bus
from avatarchat.nats_server import NatsServer
from avatarchat_edge.limits import TokenBucket
from avatarchat_edge.nats_link import NatsLink
from avatarchat_edge.protocol import ErrorCode, ProtocolError
from avatarchat_edge.resume import SessionCustody
from avatarchat_edge.session_store import SessionClaims, SessionStore
from avatarchat_edge.sessions import Session, SessionRegistry
from tests.clocks import ManualClock as Clock

TTL_S = 60.0


class Socket:
    """A holder that records being asked to let go."""

    def __init__(self) -> None:
        self.surrendered = 0

    async def surrender(self) -> None:
        self.surrendered += 1


def _session(session_id: str) -> Session:
    return Session(
        id=session_id,
        avatar=False,
        video=True,
        rate=TokenBucket(5, 20),
        audio_rate=TokenBucket(100, 200),
    )


@pytest.fixture
async def link(fresh_nats_server: NatsServer) -> AsyncIterator[NatsLink]:
    nats = NatsLink(fresh_nats_server.url)
    nats.start()
    await nats.client()
    yield nats
    await nats.close()


def _custody(link: NatsLink, clock: Clock) -> SessionCustody:
    registry = SessionRegistry(ttl_s=TTL_S, max_remembered=100, make_session=_session, clock=clock)
    store = SessionStore(link, ttl_s=TTL_S, retention=bus.Retention())
    return SessionCustody(
        registry, store=store, claims=SessionClaims(link), ttl_s=TTL_S, clock=clock
    )


async def test_checkpoints_save_changes_and_refresh_before_the_ttl(link: NatsLink) -> None:
    clock = Clock()
    custody = _custody(link, clock)
    session = custody.sessions.create(Socket())
    assert await custody.checkpoint() == 1  # new
    assert await custody.checkpoint() == 0  # unchanged
    session.allocate_seq()
    assert await custody.checkpoint() == 1  # changed
    clock.now += TTL_S / 2 - 1
    assert await custody.checkpoint() == 0
    clock.now += 2
    assert await custody.checkpoint() == 1  # refreshed, so the bucket's TTL never drops it
    stored = await SessionStore(link, ttl_s=TTL_S, retention=bus.Retention()).load(session.id)
    assert stored == session.state()


async def test_a_claim_makes_the_holder_let_go_and_save(link: NatsLink) -> None:
    clock = Clock()
    here, there = _custody(link, clock), _custody(link, clock)
    socket = Socket()
    session = here.sessions.create(socket)

    async def let_go() -> None:
        await socket.surrender()
        session.note_turn("t1", 0.0)  # the last change, made while letting go
        await here.leave(session, socket)

    await here.acquire(session, let_go)
    found = await there.find(session.id, current="other")
    assert socket.surrendered == 1
    assert found.turns == 1 and found.state() == session.state()
    with pytest.raises(ProtocolError, match="unknown or has expired") as caught:
        await there.find("0" * 32, current="other")
    assert caught.value.code == ErrorCode.UNKNOWN_SESSION


def _claim_from_elsewhere(url: str, session_id: str) -> str:
    """Another edge's claim, from a thread with its own loop and connection."""

    async def claim() -> str:
        nc = await nats.connect(url)
        try:
            await nc.request(bus.session_claim_subject(session_id), b"", timeout=0.5)
            return "answered"
        except NoRespondersError:
            return "nobody holds it"
        except NatsTimeoutError:
            return "held"  # delivered to the holder, whose loop is blocked here
        finally:
            await nc.close()

    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(asyncio.run(claim())))
    thread.start()
    thread.join()
    return outcome[0]


async def test_a_hold_is_in_force_at_the_server_when_it_returns(
    link: NatsLink, fresh_nats_server: NatsServer
) -> None:
    """A socket answers its client once it holds the session, and the client may resume on
    another edge at once, while this edge's loop has not run again (a busy or descheduled
    process): that edge's claim must already find the hold."""
    session_id = "e" * 32
    let_go_calls: list[str] = []

    async def let_go() -> None:
        let_go_calls.append(session_id)

    hold = await SessionClaims(link).hold(session_id, let_go)
    # The claim runs while this loop is blocked: nothing this connection still had to send
    # can reach the server in the meantime.
    outcome = _claim_from_elsewhere(fresh_nats_server.url, session_id)
    await hold.release()
    assert outcome == "held"


async def test_a_resume_with_nats_down_says_so(link: NatsLink, fresh_nats_server: Any) -> None:
    custody = _custody(link, Clock())
    await asyncio.to_thread(fresh_nats_server.stop)
    with pytest.raises(ProtocolError, match="cannot be resumed right now") as caught:
        await custody.find("0" * 32, current="mine")
    assert caught.value.code == ErrorCode.SESSIONS_UNAVAILABLE
