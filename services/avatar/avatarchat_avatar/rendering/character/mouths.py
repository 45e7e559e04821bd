"""Mouth shapes: one parametric drawing per viseme, at a few reach levels, with and without smile.

Every viseme has its own parameter set (jaw opening from :data:`lipsync.OPENNESS`, width,
rounding, visible teeth and tongue), so the 15 visemes give 15 distinct shapes. A key's
weight picks the nearest level: the shape interpolated that far from the resting mouth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from PIL import Image

from avatarchat_avatar.rendering.character import palette as c
from avatarchat_avatar.rendering.character.geometry import MOUTH_ANCHOR_IN_SPRITE, MOUTH_SIZE
from avatarchat_avatar.rendering.character.sketch import Point, Sketch, smooth_open
from avatarchat_avatar.timeline.lipsync import OPENNESS, VISEMES

MAX_OPEN_PX = 28.0
LEVELS: tuple[float, ...] = (0.5, 0.75, 1.0)
"""Reach levels drawn for every viseme but ``sil`` (drawn once)."""
SMILE_LIFT_PX = 6.0


@dataclass(frozen=True)
class MouthShape:
    """Parameters of a mouth drawing, in pixels around the lip-centre anchor."""

    half_width: float = 22.0
    opening: float = 0.0
    rounding: float = 0.0
    teeth_top: float = 0.0
    teeth_bottom: float = 0.0
    tongue: float = 0.0
    tongue_tip: float = 0.0
    press: float = 0.0
    lip_tuck: float = 0.0
    corner_lift: float = 2.5


REST = MouthShape()
_SHAPES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"half_width": 19, "press": 1},
    "FF": {"half_width": 23, "teeth_top": 1, "lip_tuck": 1},
    "TH": {"half_width": 22, "teeth_top": 0.8, "teeth_bottom": 0.5, "tongue_tip": 1},
    "DD": {"half_width": 24, "teeth_top": 0.8, "teeth_bottom": 0.7, "tongue": 0.3},
    "kk": {"half_width": 24, "teeth_top": 0.7, "teeth_bottom": 0.4, "tongue": 0.6},
    "CH": {"half_width": 17, "rounding": 0.5, "teeth_top": 0.9, "teeth_bottom": 0.9},
    "SS": {"half_width": 27, "teeth_top": 1, "teeth_bottom": 1, "corner_lift": 4},
    "nn": {"half_width": 23, "teeth_top": 0.6, "tongue": 0.8},
    "RR": {"half_width": 16, "rounding": 0.6, "teeth_top": 0.5},
    "aa": {"half_width": 25, "teeth_top": 0.5, "tongue": 0.5},
    "E": {"half_width": 27, "teeth_top": 0.6, "tongue": 0.4},
    "ih": {"half_width": 27, "teeth_top": 0.8, "teeth_bottom": 0.5, "tongue": 0.2},
    "oh": {"half_width": 17, "rounding": 0.85, "teeth_top": 0.3, "tongue": 0.3},
    "ou": {"half_width": 11, "rounding": 1.0},
}
SHAPES: dict[str, MouthShape] = {
    v: MouthShape(opening=OPENNESS[v] * MAX_OPEN_PX, **_SHAPES[v])
    for v in VISEMES  # type: ignore[arg-type]
}


def shape_at(viseme: str, level: float, smile: bool) -> MouthShape:
    """The viseme's shape reached to ``level`` from rest, optionally smiling."""
    target = SHAPES[viseme]
    values = {
        f.name: getattr(REST, f.name) + level * (getattr(target, f.name) - getattr(REST, f.name))
        for f in fields(MouthShape)
    }
    shape = MouthShape(**values)
    if smile:
        shape = replace(
            shape,
            corner_lift=shape.corner_lift + SMILE_LIFT_PX * (1 - shape.rounding),
            half_width=shape.half_width + 3 * (1 - shape.rounding),
        )
    return shape


def draw_mouth(shape: MouthShape) -> Image.Image:
    """One mouth sprite (MOUTH_SIZE, lip centre at MOUTH_ANCHOR_IN_SPRITE)."""
    s = Sketch(*MOUTH_SIZE)
    ax, ay = MOUTH_ANCHOR_IN_SPRITE
    if shape.opening < 1.5:
        _closed(s, shape, ax, ay)
    else:
        _open(s, shape, ax, ay)
    return s.finish()


def _closed(s: Sketch, shape: MouthShape, ax: float, ay: float) -> None:
    w, lift = shape.half_width, shape.corner_lift
    sag = 1.5 + 0.35 * lift
    line = [
        (ax + w * x, ay + sag - (sag + lift) * abs(x) ** 2.2)
        for x in (i / 12 - 1 for i in range(25))
    ]
    if shape.press > 0:
        s.line(
            smooth_open([(ax - w * 0.55, ay + 5), (ax, ay + 7.5), (ax + w * 0.55, ay + 5)]),
            c.LIP,
            3.5,
        )
    s.line(line, c.OUTLINE, 3.0 + 1.5 * shape.press)


def _lip_edges(shape: MouthShape, ax: float, ay: float) -> tuple[list[Point], list[Point]]:
    """Upper and lower inner edges, corner to corner, blending an almond into an ellipse."""
    w, h, r = shape.half_width, shape.opening, shape.rounding
    lift = shape.corner_lift * (1 - r)
    top_rise = 0.2 * h * (1 - r) + r * h * 0.45
    upper, lower = [], []
    centre_y = h * 0.5 - top_rise
    for i in range(25):
        x = -1 + 2 * i / 24
        # Almond: flat top with a slight cupid's bow, deep U below; ellipse: round both ways.
        almond_top = -top_rise * (1 - x**2) ** 0.6 - lift * x**2
        almond_bottom = h * (1 - abs(x) ** 1.8) - lift * x**2
        half_height = math.sqrt(max(0.0, 1 - x**2)) * h * 0.5
        upper.append((ax + w * x, ay + (1 - r) * almond_top + r * (centre_y - half_height)))
        lower.append((ax + w * x, ay + (1 - r) * almond_bottom + r * (centre_y + half_height)))
    return upper, lower


def _open(s: Sketch, shape: MouthShape, ax: float, ay: float) -> None:
    upper, lower = _lip_edges(shape, ax, ay)
    cavity = upper + lower[::-1]
    mask = s.blank()
    mask.polygon(cavity, c.MOUTH_INSIDE)
    inside = s.blank()
    inside.polygon(cavity, c.MOUTH_INSIDE)
    bottom = max(y for _, y in lower)
    top = min(y for _, y in upper)
    inside.ellipse(ax, bottom + 2, shape.half_width * 0.7, (bottom - top) * 0.45, c.MOUTH_DEEP)
    if shape.tongue > 0:
        inside.ellipse(
            ax,
            bottom + 1,
            shape.half_width * 0.62,
            (bottom - top) * 0.32 * shape.tongue + 2,
            c.TONGUE,
        )
    if shape.teeth_bottom > 0:
        band = shape.teeth_bottom * (1.5 + 0.3 * shape.opening)
        inside.polygon([*lower, *[(x, y - band) for x, y in lower[::-1]]], c.TEETH)
    if shape.teeth_top > 0:
        band = shape.teeth_top * (2.5 + 0.35 * shape.opening)
        inside.polygon([*upper, *[(x, y + band) for x, y in upper[::-1]]], c.TEETH)
    if shape.tongue_tip > 0:
        inside.ellipse(ax, top + 6.5, shape.half_width * 0.42, 3.5 * shape.tongue_tip, c.TONGUE)
    s.overlay(inside, clip=mask)
    if shape.lip_tuck > 0:
        tuck = [(x, y + 1.5) for x, y in lower]
        s.line(smooth_open(tuck[4:-4:4] or tuck), c.LIP, 3.0)
    s.line([*cavity, cavity[0]], c.OUTLINE, 2.6)
    lip = [(x, y + 5.5) for x, y in lower[7:18]]
    s.line(lip, (*c.LIP[:3], 150), 2.2)
