"""Composites the rig into video frames, with almost no work per frame.

Everything a frame needs that depends on a continuous value is quantised and cached: the
background with the torso (and the arms while they rest) per quarter pixel of breathing, and
every rotated sprite per rotation step (0.2 degrees for the head, 1 degree for the smaller parts).
A frame is then a copy of a cached base, a handful of blends of cached sprites straight into
YUV planes (:mod:`avatarchat_avatar.rendering.planes`), and no colour conversion.

Positions are rounded to whole pixels; the browser rig draws at fractional positions, which is
the only difference between the two.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from avatarchat_avatar.rendering.character import body, face, geometry
from avatarchat_avatar.rendering.motion import Pose
from avatarchat_avatar.rendering.planes import TRANSPARENT, PlanarFrame, PlanarSprite, to_ycbcr
from avatarchat_avatar.rendering.rig import ARMS, MouthKey, Rig, load_rig

BREATH_STEP_PX = 0.25
HEAD_STEP_DEG = 0.2
PART_STEP_DEG = 1.0
REST_TOLERANCE = 0.05
Point = tuple[float, float]


class Compositor:
    """Frames of the character for poses. Thread-safe: caches are lru_caches."""

    def __init__(self, rig: Rig | None = None) -> None:
        rig = rig or load_rig()
        self._drawings, self._face_anchors = _drawings(rig)
        self._background = PlanarFrame.from_opaque(to_ycbcr(rig.background))
        # Bounded: a head turn is ~0.8 MB (idle sway needs ~20 of them), a small part ~60 kB.
        self._rotated_head = functools.lru_cache(maxsize=96)(self._rotate)
        self._rotated_part = functools.lru_cache(maxsize=1536)(self._rotate)
        self._base = functools.lru_cache(maxsize=32)(self._build_base)
        self._torso = functools.lru_cache(maxsize=32)(self._shifted_torso)

    def frame(self, pose: Pose, mouth: MouthKey) -> np.ndarray:
        """The frame as a (768, 512) uint8 yuv420p array (Y plane, then U, then V)."""
        return self.compose(pose, mouth).yuv420()

    def compose(self, pose: Pose, mouth: MouthKey) -> PlanarFrame:
        """The frame for ``pose`` with the ``mouth`` drawing."""
        breath = round(pose["body.dy"] / BREATH_STEP_PX) * BREATH_STEP_PX
        resting = tuple(_at_rest(pose, arm) for arm in ARMS)
        frame = self._base(breath, resting).copy()
        if not all(resting):
            # A moving upper arm goes between the background and the torso.
            for arm, rest in zip(ARMS, resting, strict=True):
                if not rest:
                    self._upper_arm(frame, pose, arm, breath)
            frame.blend(*self._torso(breath))
            for arm, rest in zip(ARMS, resting, strict=True):
                if rest:
                    self._lower_arm(frame, Pose({}, {}), arm, breath)
        self._head(frame, pose, mouth, breath)
        for arm, rest in zip(ARMS, resting, strict=True):
            if not rest:
                self._lower_arm(frame, pose, arm, breath)
        return frame

    def _head(self, frame: PlanarFrame, pose: Pose, mouth: MouthKey, breath: float) -> None:
        """The head turned about the neck, then each face part turned and moved with it."""
        angle = round(pose["head.rot"] / HEAD_STEP_DEG) * HEAD_STEP_DEG
        nx, ny = geometry.NECK_PIVOT
        shift = (pose["head.dx"], pose["head.dy"] + breath)
        _place(frame, self._rotated_head("head", angle), (nx + shift[0], ny + shift[1]))
        part_angle = round(pose["head.rot"] / PART_STEP_DEG) * PART_STEP_DEG
        viseme, level, smile = mouth
        parts = (
            ("cheeks", pose["cheeks.dy"]),
            (f"eyes:{pose.eyes}", 0.0),
            ("brows", pose["brows.dy"]),
            (f"mouth:{viseme}/{level:g}/{int(smile)}", 0.0),
        )
        for key, dy in parts:
            cx, cy = self._face_anchors[key]
            at = (cx + pose["face.dx"], cy + pose["face.dy"] + dy)
            turned = _rotate_about(at, geometry.NECK_PIVOT, angle)
            target = (turned[0] + shift[0], turned[1] + shift[1])
            _place(frame, self._rotated_part(key, part_angle), target)

    def _upper_arm(self, frame: PlanarFrame, pose: Pose, arm: str, breath: float) -> None:
        shoulder, _, _ = _arm_angles(pose, arm)
        sx, sy = geometry.SHOULDERS[arm]
        sprite = self._rotated_part(f"upper:{arm}", _step(shoulder))
        _place(frame, sprite, (sx, sy + breath + pose["shoulders.dy"]))

    def _lower_arm(self, frame: PlanarFrame, pose: Pose, arm: str, breath: float) -> None:
        shoulder, forearm, hand_angle = _arm_angles(pose, arm)
        sx, sy = geometry.SHOULDERS[arm]
        elbow = _along(
            (sx, sy + breath + pose["shoulders.dy"]), shoulder, geometry.UPPER_ARM_LENGTH
        )
        wrist = _along(elbow, forearm, geometry.FOREARM_LENGTH)
        _place(frame, self._rotated_part(f"fore:{arm}", _step(forearm)), elbow)
        hand = pose.hands.get(arm, "relaxed")
        _place(frame, self._rotated_part(f"hand:{arm}:{hand}", _step(hand_angle)), wrist)

    def _rotate(self, key: str, angle: float) -> PlanarSprite:
        """The drawing turned clockwise by ``angle`` degrees, with its pivot followed."""
        drawing = self._drawings[key]
        if abs(angle) < 1e-6:
            return drawing
        w, h = drawing.size
        turned = drawing.ycbcra.rotate(
            -angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=TRANSPARENT
        )
        px, py = _rotate_about(drawing.pivot, (w / 2, h / 2), angle)
        return PlanarSprite(turned, (px + (turned.width - w) / 2, py + (turned.height - h) / 2))

    def _build_base(self, breath: float, resting: tuple[bool, ...]) -> PlanarFrame:
        """Background and resting upper arms; when both arms rest, also the torso and the
        resting forearms and hands (otherwise they are drawn per frame, over a moving arm)."""
        frame = self._background.copy()
        for arm, rest in zip(ARMS, resting, strict=True):
            if rest:
                sx, sy = geometry.SHOULDERS[arm]
                sprite = self._rotated_part(f"upper:{arm}", geometry.REST_SHOULDER_DEG[arm])
                _place(frame, sprite, (sx, sy + breath))
        if all(resting):
            frame.blend(*self._torso(breath))
            for arm in ARMS:
                self._lower_arm(frame, Pose({}, {}), arm, breath)
        return frame

    def _shifted_torso(self, breath: float) -> tuple[PlanarSprite, tuple[int, int]]:
        """The torso moved down by ``breath`` pixels (resampled: quarter pixels show)."""
        torso = self._drawings["torso"].ycbcra
        shifted = torso.transform(
            (torso.width, torso.height + 4),
            Image.Transform.AFFINE,
            (1, 0, 0, 0, 1, -2 - breath),
            resample=Image.Resampling.BILINEAR,
            fillcolor=TRANSPARENT,
        )
        return PlanarSprite(shifted, (0.0, 0.0)), (geometry.TORSO_BOX[0], geometry.TORSO_BOX[1] - 2)


def _drawings(rig: Rig) -> tuple[dict[str, PlanarSprite], dict[str, Point]]:
    """Every drawing in Y'CbCr with its pivot, and where face parts sit on the canvas."""
    hx, hy = geometry.HEAD_BOX[:2]
    nx, ny = geometry.NECK_PIVOT
    drawings = {
        "torso": PlanarSprite(to_ycbcr(rig.torso), (0.0, 0.0)),
        "head": PlanarSprite(to_ycbcr(rig.head), (nx - hx, ny - hy)),
    }
    mouth_origin = (
        geometry.MOUTH_ANCHOR[0] - geometry.MOUTH_ANCHOR_IN_SPRITE[0],
        geometry.MOUTH_ANCHOR[1] - geometry.MOUTH_ANCHOR_IN_SPRITE[1],
    )
    face_parts: dict[str, tuple[Image.Image, Point]] = {
        "cheeks": (rig.cheeks, face.CHEEKS_BOX[:2]),
        "brows": (rig.brows, geometry.BROWS_BOX[:2]),
        **{f"eyes:{state}": (image, geometry.EYES_BOX[:2]) for state, image in rig.eyes.items()},
        **{
            f"mouth:{viseme}/{level:g}/{int(smile)}": (image, mouth_origin)
            for (viseme, level, smile), image in rig.mouths.items()
        },
    }
    anchors: dict[str, Point] = {}
    for key, (image, (x, y)) in face_parts.items():
        centre = (image.width / 2, image.height / 2)
        drawings[key] = PlanarSprite(to_ycbcr(image), centre)
        anchors[key] = (x + centre[0], y + centre[1])
    for arm in ARMS:
        drawings[f"upper:{arm}"] = PlanarSprite(
            to_ycbcr(rig.upper_arms[arm]),
            _mirrored(body.UPPER_ARM_PIVOT, body.UPPER_ARM_SIZE[0], arm),
        )
        drawings[f"fore:{arm}"] = PlanarSprite(
            to_ycbcr(rig.forearms[arm]), _mirrored(body.FOREARM_PIVOT, body.FOREARM_SIZE[0], arm)
        )
        for shape in body.HAND_SHAPES:
            drawings[f"hand:{arm}:{shape}"] = PlanarSprite(
                to_ycbcr(rig.hands[(arm, shape)]),
                _mirrored(geometry.HAND_WRIST_IN_SPRITE, geometry.HAND_SIZE[0], arm),
            )
    return drawings, anchors


def _mirrored(pivot: Point, width: int, arm: str) -> Point:
    """Left-arm drawings are mirrored right-arm ones."""
    return (width - pivot[0], pivot[1]) if arm == "arm_l" else pivot


def _arm_angles(pose: Pose, arm: str) -> tuple[float, float, float]:
    """World angles of the upper arm, the forearm and the hand (degrees, clockwise)."""
    shoulder = geometry.REST_SHOULDER_DEG[arm] + pose[f"{arm}.shoulder"]
    forearm = shoulder + geometry.REST_ELBOW_DEG[arm] + pose[f"{arm}.elbow"]
    return shoulder, forearm, forearm + pose[f"{arm}.hand"]


def _at_rest(pose: Pose, arm: str) -> bool:
    channels = (f"{arm}.shoulder", f"{arm}.elbow", f"{arm}.hand", "shoulders.dy")
    return all(abs(pose[c]) < REST_TOLERANCE for c in channels) and arm not in pose.hands


def _step(angle: float) -> float:
    return round(angle / PART_STEP_DEG) * PART_STEP_DEG


def _along(start: Point, angle: float, length: float) -> Point:
    """The point ``length`` away from ``start`` in direction ``angle`` (0 = down, clockwise)."""
    a = math.radians(angle)
    return (start[0] - length * math.sin(a), start[1] + length * math.cos(a))


def _rotate_about(point: Point, centre: Point, angle: float) -> Point:
    """``point`` turned clockwise (on screen, y down) by ``angle`` degrees about ``centre``."""
    a = math.radians(angle)
    dx, dy = point[0] - centre[0], point[1] - centre[1]
    return (
        centre[0] + dx * math.cos(a) - dy * math.sin(a),
        centre[1] + dx * math.sin(a) + dy * math.cos(a),
    )


def _origin(sprite: PlanarSprite, target: Point) -> tuple[int, int]:
    """Top-left (whole pixels) that puts the sprite's pivot on ``target``."""
    return (round(target[0] - sprite.pivot[0]), round(target[1] - sprite.pivot[1]))


def _place(frame: PlanarFrame, sprite: PlanarSprite, target: Point) -> None:
    frame.blend(sprite, _origin(sprite, target))
