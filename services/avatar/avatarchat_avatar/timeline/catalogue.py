"""The gesture catalogue: every gesture name a timeline may hold, and what each one needs.

The planner (:mod:`avatarchat_avatar.timeline.gestures`), the inline-tag parser, the rig's motions
and the browser manifest all read the names from here, so none of them depends on another to
know what a gesture is. Per gesture it gives the default length, how far ahead of its word the
gesture starts, and the body parts it needs alone.
"""

from __future__ import annotations

COUNT_GESTURES = tuple(f"count_{n}" for n in range(1, 6))
GESTURES: tuple[str, ...] = (
    "wave",
    "nod",
    "shake",
    "head_tilt",
    "brow_raise",
    "beat",
    *COUNT_GESTURES,
    "open_hands",
    "shrug",
    "smile",
    "blink",
)
"""Every gesture name a timeline may contain."""

DURATION_MS: dict[str, float] = {
    "wave": 1500,
    "nod": 700,
    "shake": 900,
    "head_tilt": 1400,
    "brow_raise": 700,
    "beat": 550,
    **dict.fromkeys(COUNT_GESTURES, 800.0),
    "open_hands": 1300,
    "shrug": 1300,
    "smile": 2000,
    "blink": 160,
}
"""Default length of each gesture."""

LEAD_MS: dict[str, float] = {
    "wave": 250,
    "nod": 120,
    "shake": 120,
    "head_tilt": 150,
    "brow_raise": 100,
    "beat": 180,
    **dict.fromkeys(COUNT_GESTURES, 250.0),
    "open_hands": 250,
    "shrug": 200,
    "smile": 250,
    "blink": 0,
}
"""How long before its word a gesture starts, so that its stroke lands on the word."""

CHANNELS: dict[str, tuple[str, ...]] = {
    "wave": ("arm_r",),
    "beat": ("arm_r",),
    **dict.fromkeys(COUNT_GESTURES, ("arm_l",)),
    "open_hands": ("arm_l", "arm_r"),
    "shrug": ("arm_l", "arm_r"),
    "nod": ("head",),
    "shake": ("head",),
}
"""Body parts a gesture needs alone; two gestures on one channel may not overlap."""
