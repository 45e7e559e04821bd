"""The gesture catalogue: every gesture name a timeline may hold, and what each one needs.

The planner (:mod:`avatarchat_avatar.timeline.gestures`), the rig's motions and the browser
manifest read the names from here, so none of them depends on another to know what a gesture
is. The names themselves are those of the inline-tag grammar the edge shares
(:mod:`avatarchat.inline_tags`); this module adds, per gesture, the default length, how far
ahead of its word the gesture starts, and the body parts it needs alone.
"""

from __future__ import annotations

from avatarchat.inline_tags import COUNT_GESTURES, GESTURES

__all__ = ["CHANNELS", "COUNT_GESTURES", "DURATION_MS", "GESTURES", "LEAD_MS"]

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

_untimed = (set(GESTURES) ^ set(DURATION_MS)) | (set(GESTURES) ^ set(LEAD_MS))
if _untimed or not set(CHANNELS) <= set(GESTURES):
    raise RuntimeError(f"the gesture catalogue and the tag grammar disagree on {_untimed}")
