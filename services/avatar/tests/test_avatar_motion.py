"""Pose evaluation: envelopes, additive gestures, limits, hands, eyes and mouth selection."""

from __future__ import annotations

import math

import pytest

from avatarchat.v1 import events_pb2
from avatarchat_avatar.rendering.motion import IDLE, LIMITS, MOTIONS, Animator, Motion, envelope


def _animator(gestures: list[tuple[str, int, int, float]], visemes=()) -> Animator:
    return Animator(
        events_pb2.Timeline(
            duration_ms=5000,
            gestures=[
                events_pb2.GestureKey(gesture=g, start_ms=s, duration_ms=d, intensity=i)
                for g, s, d, i in gestures
            ],
            visemes=[
                events_pb2.VisemeKey(viseme=v, start_ms=s, end_ms=e, weight=w)
                for v, s, e, w in visemes
            ],
        )
    )


def _idle(channel: str, t: float) -> float:
    return sum(a * math.sin(2 * math.pi * t / p + ph) for a, p, ph in IDLE.get(channel, ()))


def test_envelope_ramps_in_holds_and_ramps_out() -> None:
    motion = Motion(attack_ms=100, release_ms=200)
    assert envelope(motion, -1, 1000) == 0 and envelope(motion, 1001, 1000) == 0
    assert envelope(motion, 0, 1000) == 0
    assert envelope(motion, 50, 1000) == pytest.approx(0.5)
    assert envelope(motion, 500, 1000) == 1
    assert envelope(motion, 900, 1000) == pytest.approx(0.5)
    assert envelope(motion, 1000, 1000) == 0


def test_short_gestures_squeeze_their_ramps() -> None:
    motion = Motion(attack_ms=300, release_ms=300)
    assert envelope(motion, 100, 200) == 1  # peak in the middle
    assert 0 < envelope(motion, 50, 200) < 1


def test_idle_motion_runs_without_gestures() -> None:
    pose = _animator([]).pose(1234)
    for channel in IDLE:
        assert pose[channel] == pytest.approx(_idle(channel, 1234))
    assert pose["arm_r.shoulder"] == 0 and pose.hands == {} and pose.eyes == "open"


def test_gestures_scale_by_intensity_and_add_up() -> None:
    tilt = MOTIONS["head_tilt"].pose["head.rot"]
    one = _animator([("head_tilt", 0, 2000, 0.5)]).pose(1000)
    assert one["head.rot"] - _idle("head.rot", 1000) == pytest.approx(0.5 * tilt)
    two = _animator([("head_tilt", 0, 2000, 0.5), ("shrug", 0, 2000, 1.0)]).pose(1000)
    expected = 0.5 * tilt + MOTIONS["shrug"].pose["head.rot"]
    assert two["head.rot"] - _idle("head.rot", 1000) == pytest.approx(expected)


def test_channels_are_clamped_to_their_limits() -> None:
    pose = _animator([("brow_raise", 0, 2000, 1.0)] * 3).pose(1000)
    assert pose["brows.dy"] == LIMITS["brows.dy"][0]


def test_oscillation_follows_the_gesture_clock() -> None:
    nod = MOTIONS["nod"]
    amplitude, period, _ = nod.oscillate["head.dy"]
    pose = _animator([("nod", 1000, 700, 1.0)]).pose(1000 + period / 4)
    expected = envelope(nod, period / 4, 700) * amplitude
    assert pose["head.dy"] - _idle("head.dy", 1000 + period / 4) == pytest.approx(expected)


def test_strongest_gesture_picks_the_hand_drawing() -> None:
    animator = _animator([("count_1", 0, 1000, 1.0), ("count_2", 750, 1000, 1.0)])
    assert animator.pose(500).hands == {"arm_l": "point"}
    assert animator.pose(1200).hands == {"arm_l": "count_2"}
    assert animator.pose(10).hands == {}  # below the threshold: relaxed


def test_blink_closes_then_opens_the_eyes() -> None:
    animator = _animator([("blink", 100, 160, 1.0)])
    assert [animator.pose(t).eyes for t in (90, 130, 170, 250, 300)] == [
        "open",
        "half",
        "closed",
        "open",
        "open",
    ]


def test_mouth_picks_the_key_level_and_smile() -> None:
    animator = _animator(
        [],
        [
            ("sil", 0, 100, 1.0),
            ("aa", 100, 200, 0.7),
            ("PP", 200, 300, 1.0),
            ("E", 300, 400, 0.625),
            ("zz", 400, 500, 1.0),
        ],
    )
    assert animator.mouth(50) == ("sil", 1.0, False)
    assert animator.mouth(150) == ("aa", 0.75, False)
    assert animator.mouth(250, smile=0.8) == ("PP", 1.0, True)
    assert animator.mouth(350) == ("E", 0.5, False)  # a tie goes to the lower level
    assert animator.mouth(450) == ("sil", 1.0, False)  # unknown viseme
    assert animator.mouth(900) == ("sil", 1.0, False)  # after the last key


def test_unknown_gestures_are_ignored() -> None:
    assert _animator([("moonwalk", 0, 1000, 1.0)]).pose(500).hands == {}
