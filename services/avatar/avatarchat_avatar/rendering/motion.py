"""How the rig moves: gesture motions, idle motion, and the pose at any time of a timeline.

A pose is a set of named channels (``head.rot`` in degrees, clockwise; the others in pixels or
0-1), plus a hand drawing per arm. Each gesture ramps in over ``attack_ms`` and out over
``release_ms`` (smoothstep), and adds ``intensity x envelope x (pose + oscillation)`` to its
channels; overlapping gestures add up. Idle motion is a sum of sines of the clip time. The
browser rig evaluates exactly this from the manifest (docs/timeline.md); nothing here is
specific to the video renderer.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from avatarchat.v1 import events_pb2
from avatarchat_avatar.timeline.catalogue import COUNT_GESTURES, GESTURES
from avatarchat_avatar.timeline.lipsync import VISEMES

CHANNELS: tuple[str, ...] = (
    "body.dy",
    "shoulders.dy",
    "head.rot",
    "head.dx",
    "head.dy",
    "face.dx",
    "face.dy",
    "brows.dy",
    "cheeks.dy",
    "eyes.blink",
    "mouth.smile",
    "arm_r.shoulder",
    "arm_r.elbow",
    "arm_r.hand",
    "arm_l.shoulder",
    "arm_l.elbow",
    "arm_l.hand",
)


@dataclass(frozen=True)
class Motion:
    """How one gesture moves the rig."""

    attack_ms: float
    release_ms: float
    pose: Mapping[str, float] = field(default_factory=dict)
    oscillate: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    """channel -> (amplitude, period_ms, phase_rad): adds amplitude*sin(2*pi*t/period + phase)."""
    hands: Mapping[str, str] = field(default_factory=dict)
    """arm -> hand drawing while the gesture dominates that arm."""


_COUNT_HANDS = ("point", "count_2", "count_3", "count_4", "open")
MOTIONS: dict[str, Motion] = {
    "wave": Motion(
        300,
        350,
        {"arm_r.shoulder": 23, "arm_r.elbow": 141, "head.rot": -2},
        {"arm_r.elbow": (14, 420, 0.0)},
        {"arm_r": "open"},
    ),
    "nod": Motion(100, 150, oscillate={"head.dy": (5, 350, 0.0), "face.dy": (3, 350, 0.0)}),
    "shake": Motion(
        120,
        200,
        oscillate={"face.dx": (7, 450, 0.0), "head.dx": (3, 450, 0.0), "head.rot": (1.2, 450, 0.0)},
    ),
    "head_tilt": Motion(300, 400, {"head.rot": 7, "face.dx": 2}),
    "brow_raise": Motion(120, 250, {"brows.dy": -8}),
    "beat": Motion(
        180,
        260,
        {"arm_r.shoulder": -6, "arm_r.elbow": -140, "arm_r.hand": 10},
        hands={"arm_r": "point"},
    ),
    **{
        name: Motion(
            250,
            250,
            {"arm_l.shoulder": 4, "arm_l.elbow": 147, "arm_l.hand": 35},
            hands={"arm_l": hand},
        )
        for name, hand in zip(COUNT_GESTURES, _COUNT_HANDS, strict=True)
    },
    "open_hands": Motion(
        300,
        350,
        {
            "arm_r.shoulder": 6,
            "arm_r.elbow": 132,
            "arm_r.hand": -25,
            "arm_l.shoulder": -6,
            "arm_l.elbow": -132,
            "arm_l.hand": 25,
            "brows.dy": -3,
        },
        hands={"arm_r": "open", "arm_l": "open"},
    ),
    "shrug": Motion(
        250,
        350,
        {
            "shoulders.dy": -9,
            "arm_r.shoulder": 8,
            "arm_r.elbow": 136,
            "arm_r.hand": -25,
            "arm_l.shoulder": -8,
            "arm_l.elbow": -136,
            "arm_l.hand": 25,
            "head.rot": 5,
            "head.dy": 4,
            "brows.dy": -7,
        },
        hands={"arm_r": "open", "arm_l": "open"},
    ),
    "smile": Motion(300, 400, {"mouth.smile": 1.0, "cheeks.dy": -3}),
    "blink": Motion(60, 100, {"eyes.blink": 1.0}),
}
if set(MOTIONS) != set(GESTURES):
    raise RuntimeError(f"gestures without a motion: {set(GESTURES) ^ set(MOTIONS)}")

IDLE: dict[str, tuple[tuple[float, float, float], ...]] = {
    "body.dy": ((1.4, 4200, 0.0),),
    "head.rot": ((1.1, 5300, 0.7), (0.5, 2300, 1.9)),
    "head.dx": ((1.5, 6100, 2.3),),
    "head.dy": ((0.8, 3700, 0.4),),
}
"""channel -> sines (amplitude, period_ms, phase_rad) of the clip time, always on."""

LIMITS: dict[str, tuple[float, float]] = {
    "brows.dy": (-10.0, 4.0),
    "eyes.blink": (0.0, 1.0),
    "mouth.smile": (0.0, 1.0),
    "head.rot": (-12.0, 12.0),
    "face.dx": (-10.0, 10.0),
}
"""Channels are clamped to these ranges after summing (overlapping gestures add up)."""

HAND_MIN_WEIGHT = 0.35
"""A gesture's hand drawing shows while intensity x envelope is at least this."""
EYES_HALF_FROM, EYES_CLOSED_FROM = 0.3, 0.75
SMILE_FROM = 0.5
MOUTH_LEVELS: tuple[float, ...] = (0.5, 0.75, 1.0)


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def envelope(motion: Motion, elapsed_ms: float, duration_ms: float) -> float:
    """0 outside the gesture, ramping to 1 over the attack and back over the release."""
    if elapsed_ms < 0 or elapsed_ms > duration_ms or duration_ms <= 0:
        return 0.0
    attack = min(motion.attack_ms, duration_ms / 2)
    release = min(motion.release_ms, duration_ms / 2)
    if elapsed_ms < attack:
        return smoothstep(elapsed_ms / attack)
    if elapsed_ms > duration_ms - release:
        return smoothstep((duration_ms - elapsed_ms) / release)
    return 1.0


@dataclass(frozen=True)
class Pose:
    values: dict[str, float]
    hands: dict[str, str]

    def __getitem__(self, channel: str) -> float:
        return self.values.get(channel, 0.0)

    @property
    def eyes(self) -> str:
        blink = self["eyes.blink"]
        if blink >= EYES_CLOSED_FROM:
            return "closed"
        return "half" if blink >= EYES_HALF_FROM else "open"


class Animator:
    """Evaluates a timeline: the pose and the mouth drawing at any millisecond."""

    def __init__(self, timeline: events_pb2.Timeline) -> None:
        self._gestures = [
            (g.start_ms, g.duration_ms, g.intensity, MOTIONS[g.gesture])
            for g in timeline.gestures
            if g.gesture in MOTIONS
        ]
        self._visemes = list(timeline.visemes)
        self._starts = [k.start_ms for k in self._visemes]

    def pose(self, t_ms: float) -> Pose:
        values = {
            channel: sum(a * math.sin(2 * math.pi * t_ms / p + ph) for a, p, ph in sines)
            for channel, sines in IDLE.items()
        }
        best_hand: dict[str, tuple[float, str]] = {}
        for start, duration, intensity, motion in self._gestures:
            elapsed = t_ms - start
            weight = intensity * envelope(motion, elapsed, duration)
            if weight <= 0:
                continue
            for channel, value in motion.pose.items():
                values[channel] = values.get(channel, 0.0) + weight * value
            for channel, (amplitude, period, phase) in motion.oscillate.items():
                wave = amplitude * math.sin(2 * math.pi * elapsed / period + phase)
                values[channel] = values.get(channel, 0.0) + weight * wave
            for arm, hand in motion.hands.items():
                if weight >= HAND_MIN_WEIGHT and weight > best_hand.get(arm, (0.0, ""))[0]:
                    best_hand[arm] = (weight, hand)
        for channel, (low, high) in LIMITS.items():
            if channel in values:
                values[channel] = min(high, max(low, values[channel]))
        return Pose(values, {arm: hand for arm, (_, hand) in best_hand.items()})

    def mouth(self, t_ms: float, smile: float = 0.0) -> tuple[str, float, bool]:
        """(viseme, level, smiling) of the mouth drawing to show at ``t_ms``."""
        index = bisect.bisect_right(self._starts, t_ms) - 1
        if index < 0 or t_ms >= self._visemes[index].end_ms:
            return ("sil", 1.0, smile >= SMILE_FROM)
        key = self._visemes[index]
        if key.viseme == "sil" or key.viseme not in VISEMES:
            return ("sil", 1.0, smile >= SMILE_FROM)
        level = min(MOUTH_LEVELS, key=lambda lv: abs(lv - key.weight))
        return (key.viseme, level, smile >= SMILE_FROM)
