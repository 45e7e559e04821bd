"""The body: background, torso with neck and hoodie, arm segments and hands."""

from __future__ import annotations

from PIL import Image

from avatarchat_avatar.rendering.character import palette as c
from avatarchat_avatar.rendering.character.geometry import (
    CANVAS,
    FOREARM_LENGTH,
    FOREARM_WIDTH,
    HAND_SIZE,
    HAND_WRIST_IN_SPRITE,
    TORSO_BOX,
    UPPER_ARM_LENGTH,
    UPPER_ARM_WIDTH,
)
from avatarchat_avatar.rendering.character.sketch import (
    Point,
    Sketch,
    mirror,
    smooth_closed,
    smooth_open,
)

UPPER_ARM_SIZE = (72, 150)
UPPER_ARM_PIVOT = (36.0, 30.0)
FOREARM_SIZE = (64, 132)
FOREARM_PIVOT = (32.0, 22.0)
HAND_SCALE = 1.3
HAND_SHAPES = ("relaxed", "open", "point", "count_2", "count_3", "count_4")
"""Hand drawings; count_1 uses "point" and count_5 uses "open"."""


def background() -> Image.Image:
    """An opaque warm gradient with a soft light disc behind the head."""
    width, height = CANVAS
    top, bottom = c.BACKGROUND_TOP, c.BACKGROUND_BOTTOM
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", CANVAS, bottom), Image.new("RGB", CANVAS, top), gradient
    ).convert("RGBA")
    s = Sketch(width, height)
    glow = s.blank()
    glow.ellipse(256, 236, 206, 206, c.BACKDROP)
    s.overlay(glow, blur=18)
    for x, y, r in ((70, 90, 10), (448, 140, 7), (420, 60, 4), (96, 250, 5), (452, 300, 9)):
        s.ellipse(x, y, r, r, (255, 255, 255, 120))
    image.alpha_composite(s.finish())
    return image


def _torso_outline() -> list[Point]:
    left = [(224, 352), (178, 364), (146, 380), (128, 404), (128, 450), (124, 520)]
    return smooth_closed([*left, *mirror(left[::-1], 256)])


def torso() -> Image.Image:
    """Neck, hoodie with hood and drawstrings, shirt collar."""
    s = Sketch.for_box(TORSO_BOX)
    s.polygon(
        smooth_closed([(200, 356), (216, 334), (256, 344), (296, 334), (312, 356), (256, 380)]),
        c.HOODIE_SHADE,
        c.OUTLINE,
        3,
    )
    neck = [(232, 286), (231, 346), (256, 362), (281, 346), (280, 286)]
    s.polygon(neck, c.SKIN, c.OUTLINE, 3)
    jaw_shadow = s.blank()
    jaw_shadow.ellipse(256, 300, 34, 20, c.SKIN_SHADE)
    s.overlay(jaw_shadow, blur=4)
    outline = _torso_outline()
    body = s.blank()
    body.polygon(outline, c.HOODIE)
    shade = s.blank()
    shade.ellipse(126, 470, 30, 120, c.HOODIE_SHADE)
    shade.ellipse(386, 470, 30, 120, c.HOODIE_SHADE)
    shade.ellipse(256, 372, 70, 14, c.HOODIE_SHADE)
    body.overlay(shade, clip=body, blur=12)
    light = s.blank()
    light.ellipse(200, 420, 40, 50, c.HOODIE_LIGHT)
    body.overlay(light, clip=body, blur=20)
    s.overlay(body)
    s.line([*outline, outline[0]], c.OUTLINE, 3)
    collar = smooth_closed([(222, 350), (256, 398), (290, 350), (256, 364)])
    s.polygon(collar, c.SHIRT, c.OUTLINE, 2.5)
    s.line(smooth_open([(206, 354), (232, 378), (256, 404), (280, 378), (306, 354)]), c.OUTLINE, 3)
    for x, sway in ((238, -4), (274, 4)):
        string = smooth_open([(x, 392), (x + sway * 0.5, 430), (x + sway, 466)])
        s.line(string, c.OUTLINE, 5)
        s.line(string, c.STRING, 2.6)
        s.ellipse(x + sway, 470, 3.5, 5, c.HOODIE_SHADE, c.OUTLINE, 1.5)
    s.line(smooth_open([(170, 500), (200, 488), (312, 488), (342, 500)]), c.HOODIE_SHADE, 3)
    return s.finish()


def upper_arm() -> Image.Image:
    """Sleeve from the shoulder (pivot at UPPER_ARM_PIVOT) pointing down."""
    s = Sketch(*UPPER_ARM_SIZE)
    px, py = UPPER_ARM_PIVOT
    half = UPPER_ARM_WIDTH / 2
    shape = smooth_closed(
        [
            (px, py - 24),
            (px + half, py - 4),
            (px + half - 2, py + 60),
            (px + half - 5, py + UPPER_ARM_LENGTH),
            (px, py + UPPER_ARM_LENGTH + 14),
            (px - half + 5, py + UPPER_ARM_LENGTH),
            (px - half + 2, py + 60),
            (px - half, py - 4),
        ]
    )
    _sleeve(s, shape, fold_y=py + 70)
    return s.finish()


def forearm() -> Image.Image:
    """Sleeve from the elbow (pivot at FOREARM_PIVOT) to a ribbed cuff at the wrist."""
    s = Sketch(*FOREARM_SIZE)
    px, py = FOREARM_PIVOT
    half = FOREARM_WIDTH / 2
    wrist = py + FOREARM_LENGTH
    shape = smooth_closed(
        [
            (px, py - 12),
            (px + half + 2, py),
            (px + half, wrist - 30),
            (px + half - 4, wrist),
            (px, wrist + 4),
            (px - half + 4, wrist),
            (px - half, wrist - 30),
            (px - half - 2, py),
        ]
    )
    _sleeve(s, shape, fold_y=py + 40)
    cuff = [
        (px - half + 3, wrist - 16),
        (px + half - 3, wrist - 16),
        (px + half - 4, wrist + 2),
        (px - half + 4, wrist + 2),
    ]
    s.polygon(cuff, c.HOODIE_SHADE, c.OUTLINE, 2.5)
    for dx in (-10, -3, 4, 11):
        s.line([(px + dx, wrist - 14), (px + dx, wrist)], c.HOODIE, 1.5)
    return s.finish()


def _sleeve(s: Sketch, shape: list[Point], fold_y: float) -> None:
    sleeve = s.blank()
    sleeve.polygon(shape, c.HOODIE)
    shade = s.blank()
    shade.ellipse(s.width * 0.78, s.height * 0.55, s.width * 0.3, s.height * 0.6, c.HOODIE_SHADE)
    sleeve.overlay(shade, clip=sleeve, blur=6)
    s.overlay(sleeve)
    s.line([*shape, shape[0]], c.OUTLINE, 3)
    x = s.width / 2
    s.line(
        smooth_open([(x - 12, fold_y), (x - 2, fold_y + 6), (x + 8, fold_y + 3)]),
        c.HOODIE_SHADE,
        2.5,
    )


def hand(shape: str, mirrored: bool = False) -> Image.Image:
    """A hand pointing down from the wrist; the thumb is on the left unless ``mirrored``."""
    s = Sketch(*HAND_SIZE)
    wx, wy = HAND_WRIST_IN_SPRITE
    k = HAND_SCALE

    def at(x: float, y: float) -> Point:
        return (wx + k * x, wy + k * y)

    extended = _extended_fingers(shape)
    palm = smooth_closed([at(-15, 0), at(15, 0), at(18, 22), at(15, 38), at(-15, 38), at(-18, 22)])
    finger_x = (-12.5, -4.0, 4.5, 12.5)  # index .. pinky
    lengths = (24.0, 27.0, 25.0, 19.0)
    spread = 5.0 if shape == "open" else 1.5
    for i, (fx, length) in enumerate(zip(finger_x, lengths, strict=True)):
        reach = length if extended[i] else 8.0
        finger = [at(fx, 30), at(fx + (i - 1.5) * spread, 34 + reach)]
        s.line(finger, c.OUTLINE, 10.5 * k)
        s.line(finger, c.SKIN, 7 * k)
    s.polygon(palm, c.SKIN, c.OUTLINE, 2.5)
    for i, fx in enumerate(finger_x):
        if not extended[i]:
            s.line([at(fx - 3, 37), at(fx + 3, 37)], c.SKIN_SHADE, 2)
    if extended[4]:
        thumb = smooth_open([at(-14, 14), at(-26, 30), at(-28, 40)])
        s.line(thumb, c.OUTLINE, 11 * k)
        s.line(thumb, c.SKIN, 7.5 * k)
    else:
        s.line(smooth_open([at(-16, 16), at(-9, 25), at(-1, 27)]), c.SKIN_SHADE, 2.5)
    image = s.finish()
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else image


def _extended_fingers(shape: str) -> tuple[bool, bool, bool, bool, bool]:
    """Index, middle, ring, pinky, thumb."""
    return {
        "relaxed": (True, True, True, True, False),
        "open": (True, True, True, True, True),
        "point": (True, False, False, False, False),
        "count_2": (True, True, False, False, False),
        "count_3": (True, True, True, False, False),
        "count_4": (True, True, True, True, False),
    }[shape]
