"""The head: hair, ears, face, nose (one static image) and the eyes, brows and cheeks."""

from __future__ import annotations

import math

from PIL import Image

from avatarchat_avatar.rendering.character import palette as c
from avatarchat_avatar.rendering.character.geometry import (
    BROWS_BOX,
    CHEEK_CENTERS,
    EYE_CENTERS,
    EYES_BOX,
    FACE_CENTER_X,
    HEAD_BOX,
    NOSE_CENTER,
)
from avatarchat_avatar.rendering.character.sketch import (
    Point,
    Sketch,
    mirror,
    path,
    smooth_closed,
    smooth_open,
    tapered_stroke,
)

EYE_RX, EYE_RY = 21.0, 25.0
CHEEKS_BOX = (164, 244, 348, 282)


def face_outline() -> list[Point]:
    """The face from the crown round the jaw, symmetric about the centre line."""
    x = FACE_CENTER_X
    right = path(
        (x, 86),
        ((x + 64, 86), (x + 100, 120), (x + 100, 184)),
        ((x + 101, 236), (x + 88, 276), (x + 58, 302)),
        ((x + 38, 320), (x + 20, 328), (x, 328)),
    )
    return right + mirror(right[::-1], x)[1:-1]


def _hair_back() -> list[Point]:
    return smooth_closed(
        [
            (150, 214),
            (134, 150),
            (144, 84),
            (184, 38),
            (256, 20),
            (328, 38),
            (368, 84),
            (378, 150),
            (362, 214),
            (256, 190),
        ]
    )


def _hair_front() -> list[Point]:
    return smooth_closed(
        [
            (148, 206),
            (136, 150),
            (142, 98),
            (166, 56),
            (206, 30),
            (258, 18),
            (304, 14),
            (346, 26),
            (374, 60),
            (382, 104),
            (376, 158),
            (364, 206),
            (356, 204),
            (352, 160),
            (342, 130),
            (322, 114),
            (296, 108),
            (270, 114),
            (250, 124),
            (236, 142),
            (230, 124),
            (214, 128),
            (198, 146),
            (194, 128),
            (178, 136),
            (166, 160),
            (160, 204),
        ]
    )


HAIR_STRANDS = (
    [(340, 34), (296, 52), (258, 90), (238, 130)],
    [(300, 22), (248, 40), (214, 86), (200, 136)],
    [(366, 84), (336, 96), (304, 104)],
    [(196, 44), (172, 80), (166, 120)],
)


def head_base() -> Image.Image:
    """Hair, ears, face with shading, and nose: everything on the head that never changes."""
    s = Sketch.for_box(HEAD_BOX)
    s.polygon(_hair_back(), c.HAIR_SHADE, c.OUTLINE, 3)
    for ex in (FACE_CENTER_X - 102, FACE_CENTER_X + 102):
        s.ellipse(ex, 222, 15, 24, c.SKIN, c.OUTLINE, 3)
        inner = smooth_open(
            [
                (ex, 208),
                (ex + (6 if ex < FACE_CENTER_X else -6), 220),
                (ex + (2 if ex < FACE_CENTER_X else -2), 234),
            ]
        )
        s.line(inner, c.SKIN_SHADE, 3.5)
    outline = face_outline()
    s.polygon(outline, c.SKIN)
    face_mask = s.blank()
    face_mask.polygon(outline, c.SKIN)
    shade = s.blank()
    shade.ellipse(FACE_CENTER_X + 96, 250, 40, 90, c.SKIN_SHADE)
    shade.ellipse(FACE_CENTER_X, 128, 120, 34, c.SKIN_SHADE)
    s.overlay(shade, clip=face_mask, blur=10)
    light = s.blank()
    light.ellipse(FACE_CENTER_X - 52, 214, 30, 34, c.SKIN_LIGHT)
    s.overlay(light, clip=face_mask, blur=12)
    s.line([*outline, outline[0]], c.OUTLINE, 3)
    _nose(s)
    s.polygon(_hair_front(), c.HAIR, c.OUTLINE, 3)
    for strand in HAIR_STRANDS:
        s.polygon(
            tapered_stroke(smooth_open(strand), lambda t: 2.4 * math.sin(math.pi * t)), c.HAIR_LIGHT
        )
    return s.finish()


def _nose(s: Sketch) -> None:
    nx, ny = NOSE_CENTER
    shadow = s.blank()
    shadow.ellipse(nx + 8, ny + 2, 9, 12, c.SKIN_SHADE)
    s.overlay(shadow, blur=3)
    s.line(smooth_open([(nx - 9, ny + 6), (nx - 2, ny + 10), (nx + 7, ny + 7)]), c.OUTLINE, 2.6)
    glint = s.blank()
    glint.ellipse(nx - 3, ny - 1, 4, 3, c.SKIN_LIGHT)
    s.overlay(glint, blur=1.5)


def eyes(state: str) -> Image.Image:
    """Both eyes: ``open``, ``half`` (mid-blink) or ``closed``."""
    s = Sketch.for_box(EYES_BOX)
    for index, (cx, cy) in enumerate(EYE_CENTERS):
        outward = -1.0 if index == 0 else 1.0
        if state == "closed":
            lid = smooth_open([(cx - EYE_RX - 1, cy + 2), (cx, cy + 10), (cx + EYE_RX + 1, cy + 2)])
            s.line(lid, c.LASH, 4)
            continue
        _eyeball(s, cx, cy)
        if state == "half":
            _half_lid(s, cx, cy)
        else:
            _lash_line(s, cx, cy, outward)
    return s.finish()


def _eyeball(s: Sketch, cx: float, cy: float) -> None:
    white = s.blank()
    white.ellipse(cx, cy, EYE_RX, EYE_RY, c.EYE_WHITE)
    s.overlay(white)
    iris = s.blank()
    iris.ellipse(cx + 1, cy + 3, 16, 17, c.IRIS_DARK)
    iris.ellipse(cx + 1, cy + 4.5, 13.5, 14, c.IRIS)
    iris.ellipse(cx + 1, cy + 4, 7.5, 8, c.PUPIL)
    iris.ellipse(cx - 4.5, cy - 2.5, 5, 5, c.EYE_WHITE)
    iris.ellipse(cx + 6.5, cy + 10, 2.2, 2.2, c.EYE_WHITE)
    s.overlay(iris, clip=white)
    s.ellipse(cx, cy, EYE_RX, EYE_RY, None, c.OUTLINE, 2)


def _lash_line(s: Sketch, cx: float, cy: float, outward: float) -> None:
    arc = [
        (cx + EYE_RX * math.cos(a), cy + EYE_RY * math.sin(a))
        for a in (math.radians(d) for d in range(200, 341, 10))
    ]
    if outward < 0:
        arc = arc[::-1]
    # From the inner corner to the outer one, thickening outwards, with a small flick.
    flick = (arc[-1][0] + outward * 6, arc[-1][1] - 5)
    s.polygon(
        tapered_stroke([*arc, flick], lambda t: 1.2 + 2.4 * math.sin(math.pi * t**0.7)), c.LASH
    )


def _half_lid(s: Sketch, cx: float, cy: float) -> None:
    lid_y = cy + 1
    top = [
        (cx + (EYE_RX + 2) * math.cos(a), cy + (EYE_RY + 2) * math.sin(a))
        for a in (math.radians(d) for d in range(180, 361, 10))
    ]
    edge = smooth_open([(cx + EYE_RX + 1, lid_y), (cx, lid_y + 4), (cx - EYE_RX - 1, lid_y)])
    s.polygon(top + edge, c.SKIN)
    s.line(edge, c.LASH, 3.5)


def brows() -> Image.Image:
    """Both eyebrows: thick, softly arched, tapering outwards."""
    s = Sketch.for_box(BROWS_BOX)
    for index, (cx, _cy) in enumerate(EYE_CENTERS):
        outward = -1.0 if index == 0 else 1.0
        inner = (cx - outward * 22, 161.0)
        top = (cx + outward * 2, 152.0)
        outer = (cx + outward * 26, 161.0)
        centre = smooth_open([inner, top, outer], steps=10)
        s.polygon(tapered_stroke(centre, lambda t: 5.2 - 2.8 * t), c.BROW)
    return s.finish()


def cheeks() -> Image.Image:
    """Soft blush, raised a little when smiling."""
    s = Sketch.for_box(CHEEKS_BOX)
    blush = s.blank()
    for cx, cy in CHEEK_CENTERS:
        blush.ellipse(cx, cy, 17, 9, c.BLUSH)
    s.overlay(blush, blur=4)
    return s.finish()
