"""``avatarchat.backoff`` with an injected clock and sleep: no real time passes."""

from __future__ import annotations

import pytest

from avatarchat.backoff import Backoff


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def backoff(fake: FakeTime, initial_s: float = 0.1, max_s: float = 1.0, **kw: float) -> Backoff:
    return Backoff(initial_s, max_s, clock=fake.clock, sleep=fake.sleep, **kw)


async def test_waits_double_up_to_the_cap() -> None:
    fake = FakeTime()
    b = backoff(fake)
    for _ in range(6):
        assert await b.wait()
    assert fake.slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert fake.now == pytest.approx(100.0 + sum(fake.slept))


async def test_reset_starts_again_from_the_first_wait() -> None:
    fake = FakeTime()
    b = backoff(fake, 0.2, 2.0)
    await b.wait()
    await b.wait()
    assert b.delay == pytest.approx(0.8)
    b.reset()
    assert b.delay == pytest.approx(0.2)
    await b.wait()
    assert fake.slept == pytest.approx([0.2, 0.4, 0.2])


async def test_another_factor() -> None:
    fake = FakeTime()
    b = backoff(fake, 1.0, 10.0, factor=3.0)
    for _ in range(4):
        await b.wait()
    assert fake.slept == pytest.approx([1.0, 3.0, 9.0, 10.0])


async def test_a_wait_that_would_pass_the_deadline_is_not_slept() -> None:
    fake = FakeTime()
    b = backoff(fake, 0.1, 2.0)
    deadline = b.deadline(1.0)  # 101.0 on the fake clock
    assert deadline == pytest.approx(101.0)
    waited = [await b.wait(deadline) for _ in range(5)]
    # 0.1 + 0.2 + 0.4 = 0.7 s; the next wait (0.8 s) would end at 101.5: refused at once.
    assert waited == [True, True, True, False, False]
    assert fake.slept == pytest.approx([0.1, 0.2, 0.4])
    assert fake.now == pytest.approx(100.7)
    assert b.delay == pytest.approx(0.8)  # a refused wait does not grow


async def test_a_wait_that_ends_exactly_at_the_deadline_is_slept() -> None:
    fake = FakeTime(0.0)
    b = backoff(fake, 0.5, 0.5)
    assert await b.wait(0.5)
    assert not await b.wait(0.5)
    assert fake.slept == [0.5]


@pytest.mark.parametrize(
    ("initial_s", "max_s", "factor", "needle"),
    [
        (0.0, 1.0, 2.0, "initial_s"),
        (float("nan"), 1.0, 2.0, "initial_s"),
        (1.0, 0.5, 2.0, "max_s"),
        (0.1, float("inf"), 2.0, "max_s"),
        (0.1, 1.0, 0.5, "factor"),
    ],
)
def test_bad_settings_are_refused(
    initial_s: float, max_s: float, factor: float, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        Backoff(initial_s, max_s, factor=factor)
