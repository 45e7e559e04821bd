"""The character rig: its layers drawn once, and their export for the browser.

:func:`load_rig` draws every layer (about a second, cached for the process); the video
renderer composites them and :func:`export_browser_rig` ships the same images with a
``manifest.json`` that lets a browser composite the identical character from a timeline
(format in docs/timeline.md).
"""

from __future__ import annotations

import functools
import io
import json
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image

from avatarchat_avatar.rendering.character import body, face, geometry, mouths
from avatarchat_avatar.rendering.motion import (
    EYES_CLOSED_FROM,
    EYES_HALF_FROM,
    HAND_MIN_WEIGHT,
    IDLE,
    LIMITS,
    MOTIONS,
    MOUTH_LEVELS,
    SMILE_FROM,
)
from avatarchat_avatar.timeline.catalogue import DURATION_MS, GESTURES
from avatarchat_avatar.timeline.lipsync import OPENNESS, VISEMES

ARMS = ("arm_r", "arm_l")
EYE_STATES = ("open", "half", "closed")
MANIFEST_VERSION = 1
VISEME_EXAMPLES: dict[str, str] = {
    "sil": "silence, pauses, punctuation",
    "PP": "p b m (pat, bat, mat)",
    "FF": "f v (fat, vat)",
    "TH": "θ ð (think, that)",
    "DD": "t d ɾ (tip, dip, butter)",
    "kk": "k g ŋ (cat, go, sing)",
    "CH": "ʃ ʒ tʃ dʒ (she, measure, chin, jam)",
    "SS": "s z (sir, zeal)",
    "nn": "n l (no, lot)",
    "RR": "ɹ ɚ (red, butter)",
    "aa": "ɑ æ ʌ a ɐ (car, cat, cup)",
    "E": "ɛ e ə ɜ (bed, bait, about)",
    "ih": "ɪ i j (tip, see, yes)",
    "oh": "o ɔ (go, thought)",
    "ou": "u ʊ w (food, book, we)",
}
MouthKey = tuple[str, float, bool]


@dataclass(frozen=True)
class Rig:
    """Every drawing of the character, as RGBA images in canvas pixel units."""

    background: Image.Image
    torso: Image.Image
    head: Image.Image
    cheeks: Image.Image
    eyes: dict[str, Image.Image]
    brows: Image.Image
    mouths: dict[MouthKey, Image.Image]
    upper_arms: dict[str, Image.Image]
    forearms: dict[str, Image.Image]
    hands: dict[tuple[str, str], Image.Image]


def mouth_keys() -> list[MouthKey]:
    """Every mouth drawing: sil once, other visemes at each level; plain and smiling."""
    keys: list[MouthKey] = []
    for smile in (False, True):
        for viseme in VISEMES:
            levels = (1.0,) if viseme == "sil" else MOUTH_LEVELS
            keys.extend((viseme, level, smile) for level in levels)
    return keys


_lock = threading.Lock()


@functools.cache
def _build() -> Rig:
    return Rig(
        background=body.background(),
        torso=body.torso(),
        head=face.head_base(),
        cheeks=face.cheeks(),
        eyes={state: face.eyes(state) for state in EYE_STATES},
        brows=face.brows(),
        mouths={key: mouths.draw_mouth(mouths.shape_at(*key)) for key in mouth_keys()},
        upper_arms=_mirrored_pair(body.upper_arm()),
        forearms=_mirrored_pair(body.forearm()),
        hands={
            (arm, shape): body.hand(shape, mirrored=arm == "arm_l")
            for arm in ARMS
            for shape in body.HAND_SHAPES
        },
    )


def load_rig() -> Rig:
    """The rig, drawn on first use (thread-safe) and cached."""
    with _lock:
        return _build()


def _mirrored_pair(image: Image.Image) -> dict[str, Image.Image]:
    return {"arm_r": image, "arm_l": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)}


def mirrored_pivot(pivot: tuple[float, float], width: int, arm: str) -> list[float]:
    """A pivot in an arm image; left-arm images are mirrored right-arm ones."""
    return [width - pivot[0], pivot[1]] if arm == "arm_l" else [pivot[0], pivot[1]]


def mouth_atlas(rig: Rig) -> tuple[Image.Image, dict[str, list[int]]]:
    """All mouth drawings on one sheet, and ``"viseme/level/plain|smile"`` -> [x, y]."""
    width, height = geometry.MOUTH_SIZE
    keys = mouth_keys()
    columns = 10
    rows = -(-len(keys) // columns)
    sheet = Image.new("RGBA", (columns * width, rows * height), (0, 0, 0, 0))
    frames: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        x, y = (index % columns) * width, (index // columns) * height
        sheet.paste(rig.mouths[key], (x, y))
        frames[mouth_frame_name(key)] = [x, y]
    return sheet, frames


def mouth_frame_name(key: MouthKey) -> str:
    viseme, level, smile = key
    return f"{viseme}/{level:g}/{'smile' if smile else 'plain'}"


def export_browser_rig() -> dict[str, bytes]:
    """``manifest.json`` and every PNG it names, for the browser (served at ``/rig/<name>``)."""
    rig = load_rig()
    files: dict[str, Image.Image] = {
        "background.png": rig.background,
        "torso.png": rig.torso,
        "head.png": rig.head,
        "cheeks.png": rig.cheeks,
        "brows.png": rig.brows,
        **{f"eyes_{state}.png": image for state, image in rig.eyes.items()},
        **{f"upper_arm_{arm[-1]}.png": image for arm, image in rig.upper_arms.items()},
        **{f"forearm_{arm[-1]}.png": image for arm, image in rig.forearms.items()},
        **{f"hand_{arm[-1]}_{shape}.png": image for (arm, shape), image in rig.hands.items()},
    }
    atlas, frames = mouth_atlas(rig)
    files["mouths.png"] = atlas
    exported = {name: _png(image) for name, image in files.items()}
    exported["manifest.json"] = json.dumps(_manifest(frames), indent=1).encode()
    return exported


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _manifest(mouth_frames: dict[str, list[int]]) -> dict[str, Any]:
    g = geometry
    return {
        "version": MANIFEST_VERSION,
        "canvas": {"width": g.CANVAS[0], "height": g.CANVAS[1], "fps": g.FPS},
        "draw_order": [
            "background",
            "upper_arm_r",
            "upper_arm_l",
            "torso",
            "head",
            "cheeks",
            "eyes",
            "brows",
            "mouth",
            "forearm_r",
            "hand_r",
            "forearm_l",
            "hand_l",
        ],
        "layers": {
            "background": _box_layer("background.png", (0, 0), "root"),
            "torso": _box_layer("torso.png", g.TORSO_BOX[:2], "body"),
            "head": _box_layer("head.png", g.HEAD_BOX[:2], "head"),
            "cheeks": {
                **_box_layer("cheeks.png", face.CHEEKS_BOX[:2], "face"),
                "dy_channel": "cheeks.dy",
            },
            "eyes": {
                "images": {s: f"eyes_{s}.png" for s in EYE_STATES},
                "x": g.EYES_BOX[0],
                "y": g.EYES_BOX[1],
                "parent": "face",
            },
            "brows": {**_box_layer("brows.png", g.BROWS_BOX[:2], "face"), "dy_channel": "brows.dy"},
            "mouth": {
                "atlas": "mouths.png",
                "frame_size": list(g.MOUTH_SIZE),
                "x": round(g.MOUTH_ANCHOR[0] - g.MOUTH_ANCHOR_IN_SPRITE[0]),
                "y": round(g.MOUTH_ANCHOR[1] - g.MOUTH_ANCHOR_IN_SPRITE[1]),
                "parent": "face",
                "levels": list(MOUTH_LEVELS),
                "frames": mouth_frames,
            },
        },
        "head": {"neck_pivot": list(g.NECK_PIVOT)},
        "arms": {arm: _arm(arm) for arm in ARMS},
        "visemes": {v: {"openness": OPENNESS[v], "examples": VISEME_EXAMPLES[v]} for v in VISEMES},
        "gestures": {
            name: {
                "default_duration_ms": round(DURATION_MS[name]),
                "attack_ms": MOTIONS[name].attack_ms,
                "release_ms": MOTIONS[name].release_ms,
                "pose": dict(MOTIONS[name].pose),
                "oscillate": {ch: list(v) for ch, v in MOTIONS[name].oscillate.items()},
                "hands": dict(MOTIONS[name].hands),
            }
            for name in GESTURES
        },
        "idle": {channel: [list(s) for s in sines] for channel, sines in IDLE.items()},
        "limits": {channel: list(bounds) for channel, bounds in LIMITS.items()},
        "thresholds": {
            "hand_min_weight": HAND_MIN_WEIGHT,
            "eyes_half_from": EYES_HALF_FROM,
            "eyes_closed_from": EYES_CLOSED_FROM,
            "smile_from": SMILE_FROM,
        },
    }


def _box_layer(image: str, origin: tuple[int, int], parent: str) -> dict[str, Any]:
    return {"image": image, "x": origin[0], "y": origin[1], "parent": parent}


def _arm(arm: str) -> dict[str, Any]:
    g = geometry
    return {
        "shoulder": list(g.SHOULDERS[arm]),
        "upper_length": g.UPPER_ARM_LENGTH,
        "fore_length": g.FOREARM_LENGTH,
        "rest_shoulder_deg": g.REST_SHOULDER_DEG[arm],
        "rest_elbow_deg": g.REST_ELBOW_DEG[arm],
        "upper_image": f"upper_arm_{arm[-1]}.png",
        "upper_pivot": mirrored_pivot(body.UPPER_ARM_PIVOT, body.UPPER_ARM_SIZE[0], arm),
        "fore_image": f"forearm_{arm[-1]}.png",
        "fore_pivot": mirrored_pivot(body.FOREARM_PIVOT, body.FOREARM_SIZE[0], arm),
        "hand_images": {shape: f"hand_{arm[-1]}_{shape}.png" for shape in body.HAND_SHAPES},
        "hand_pivot": mirrored_pivot(g.HAND_WRIST_IN_SPRITE, g.HAND_SIZE[0], arm),
    }
