"""TokenBucket, the per-session rate limit, against an injected clock (no waiting)."""

from __future__ import annotations

import itertools

import pytest

from avatarchat_edge.limits import TokenBucket, retry_after_ms
from tests.clocks import ManualClock as Clock


def passes(bucket: TokenBucket, takes: int) -> int:
    return sum(bucket.take() == 0.0 for _ in range(takes))


def test_a_full_bucket_lets_the_burst_through_at_once() -> None:
    bucket = TokenBucket(5, 10, clock=Clock())
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.2)  # one token comes back every 1/5 s


def test_the_wait_is_the_time_until_the_next_token() -> None:
    clock = Clock()
    bucket = TokenBucket(4, 1, clock=clock)
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.1
    assert bucket.take() == pytest.approx(0.15)
    clock.now += 0.15
    assert bucket.take() == 0.0


def test_refused_frames_cost_nothing() -> None:
    """A flood at one instant does not dig the bucket deeper: the next token is still 1/rate
    away, however many frames were refused."""
    clock = Clock()
    bucket = TokenBucket(4, 2, clock=clock)
    assert passes(bucket, 1000) == 2
    clock.now += 0.25
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.25)


def test_an_idle_bucket_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(5, 10, clock=clock)
    assert passes(bucket, 10) == 10
    clock.now += 3600
    assert passes(bucket, 100) == 10


def test_a_steady_sender_gets_the_burst_then_the_rate() -> None:
    """Ten simulated seconds of a frame every 1/64 s (times exact in binary): the burst of 10,
    then 4 a second, the last of them due at t = 10 s, just after the last frame."""
    clock = Clock()
    bucket = TokenBucket(4, 10, clock=clock)
    passed = []
    for step in range(640):
        if bucket.take() == 0.0:
            passed.append(step)
        clock.now += 1 / 64
    assert len(passed) == 10 + 39
    assert passed[:10] == list(range(10))
    gaps = {b - a for a, b in itertools.pairwise(passed[10:])}
    assert gaps == {16}  # one frame every 16 steps = 1/4 s once the burst is spent


def test_time_before_the_bucket_was_made_does_not_count() -> None:
    clock = Clock(now=0.0)
    clock.now = 1000.0
    bucket = TokenBucket(1, 1, clock=clock)
    assert passes(bucket, 5) == 1  # it starts full, not with 1000 s of tokens


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (5, 0)])
def test_refuses_settings_that_would_never_let_anything_through(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(rate, burst, clock=Clock())


@pytest.mark.parametrize(
    ("wait_s", "ms"), [(0.2, 200), (0.2001, 201), (0.0000001, 1), (0.0, 1), (1.5, 1500)]
)
def test_retry_after_rounds_up_to_a_whole_millisecond(wait_s: float, ms: int) -> None:
    assert retry_after_ms(wait_s) == ms
