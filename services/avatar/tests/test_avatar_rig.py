"""The browser rig export: a manifest whose every reference resolves to a decodable PNG."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from avatarchat_avatar.rendering.motion import CHANNELS, MOUTH_LEVELS
from avatarchat_avatar.rendering.rig import export_browser_rig
from avatarchat_avatar.timeline.catalogue import GESTURES
from avatarchat_avatar.timeline.lipsync import VISEMES


@pytest.fixture(scope="module")
def exported() -> dict[str, bytes]:
    return export_browser_rig()


@pytest.fixture(scope="module")
def manifest(exported: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(exported["manifest.json"])


@pytest.fixture(scope="module")
def images(exported: dict[str, bytes]) -> dict[str, Image.Image]:
    decoded = {}
    for name, data in exported.items():
        if name.endswith(".png"):
            image = Image.open(io.BytesIO(data))
            image.load()
            decoded[name] = image
    return decoded


def _referenced_images(manifest: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for layer in manifest["layers"].values():
        names.update(v for k, v in layer.items() if k in ("image", "atlas"))
        names.update(layer.get("images", {}).values())
    for arm in manifest["arms"].values():
        names.update([arm["upper_image"], arm["fore_image"], *arm["hand_images"].values()])
    return names


def test_exported_names_are_safe_object_names(exported: dict[str, bytes]) -> None:
    assert "manifest.json" in exported
    for name in exported:
        assert name.replace("_", "").replace(".", "").isalnum(), name
        assert name.endswith((".png", ".json"))


def test_every_referenced_image_exists_and_decodes(
    manifest: dict[str, Any], images: dict[str, Image.Image]
) -> None:
    referenced = _referenced_images(manifest)
    assert referenced == set(images), "manifest and exported PNGs must match exactly"
    for name, image in images.items():
        assert image.format == "PNG", name
        assert image.mode == "RGBA", name


def test_layers_sit_inside_the_canvas(
    manifest: dict[str, Any], images: dict[str, Image.Image]
) -> None:
    width, height = manifest["canvas"]["width"], manifest["canvas"]["height"]
    assert (width, height, manifest["canvas"]["fps"]) == (512, 512, 25)
    assert images["background.png"].size == (512, 512)
    assert np.asarray(images["background.png"])[..., 3].min() == 255  # opaque
    for name, layer in manifest["layers"].items():
        image_names = (
            [layer.get("image")] if "image" in layer else list(layer.get("images", {}).values())
        )
        for image_name in image_names:
            w, h = images[image_name].size
            assert 0 <= layer["x"] and layer["x"] + w <= width, name
            assert 0 <= layer["y"] and layer["y"] + h <= height, name


def test_draw_order_names_every_part(manifest: dict[str, Any]) -> None:
    order = manifest["draw_order"]
    assert len(order) == len(set(order))
    arm_parts = {f"{part}_{side}" for part in ("upper_arm", "forearm", "hand") for side in "rl"}
    assert set(order) == set(manifest["layers"]) | arm_parts
    assert order.index("upper_arm_r") < order.index("torso") < order.index("head")
    assert order.index("head") < order.index("mouth") < order.index("hand_r")


def test_mouth_atlas_has_every_viseme_at_every_level(
    manifest: dict[str, Any], images: dict[str, Image.Image]
) -> None:
    mouth = manifest["layers"]["mouth"]
    atlas = images[mouth["atlas"]]
    fw, fh = mouth["frame_size"]
    assert mouth["levels"] == list(MOUTH_LEVELS)
    for smile in ("plain", "smile"):
        for viseme in VISEMES:
            levels = [1.0] if viseme == "sil" else MOUTH_LEVELS
            for level in levels:
                x, y = mouth["frames"][f"{viseme}/{level:g}/{smile}"]
                assert 0 <= x and x + fw <= atlas.width and 0 <= y and y + fh <= atlas.height


def test_mouth_has_at_least_nine_distinct_shapes(
    manifest: dict[str, Any], images: dict[str, Image.Image]
) -> None:
    mouth = manifest["layers"]["mouth"]
    atlas = np.asarray(images[mouth["atlas"]]).astype(np.int16)
    fw, fh = mouth["frame_size"]
    shapes = []
    for viseme in VISEMES:
        x, y = mouth["frames"][f"{viseme}/1/plain"]
        shapes.append(atlas[y : y + fh, x : x + fw])
    distinct: list[np.ndarray] = []
    for shape in shapes:
        if all(np.abs(shape - other).mean() > 1.0 for other in distinct):
            distinct.append(shape)
    assert len(distinct) >= 9
    assert len(distinct) == len(VISEMES)


def test_eye_states_differ(images: dict[str, Image.Image]) -> None:
    open_, closed = (
        np.asarray(images[f"eyes_{s}.png"]).astype(np.int16) for s in ("open", "closed")
    )
    assert np.abs(open_ - closed).mean() > 5


def test_gestures_are_complete_and_use_known_channels(manifest: dict[str, Any]) -> None:
    gestures = manifest["gestures"]
    assert set(gestures) == set(GESTURES)
    hand_shapes = set(manifest["arms"]["arm_r"]["hand_images"])
    for name, motion in gestures.items():
        assert motion["attack_ms"] > 0 and motion["release_ms"] > 0, name
        assert motion["default_duration_ms"] > 0, name
        assert set(motion["pose"]) | set(motion["oscillate"]) <= set(CHANNELS), name
        for arm, hand in motion["hands"].items():
            assert arm in manifest["arms"] and hand in hand_shapes, name
        for amplitude_period_phase in motion["oscillate"].values():
            assert len(amplitude_period_phase) == 3 and amplitude_period_phase[1] > 0
    assert set(manifest["idle"]) <= set(CHANNELS)


def test_visemes_are_documented_with_openness(manifest: dict[str, Any]) -> None:
    assert list(manifest["visemes"]) == list(VISEMES)
    for entry in manifest["visemes"].values():
        assert 0 <= entry["openness"] <= 1 and entry["examples"]


def test_arms_are_mirror_images(manifest: dict[str, Any], images: dict[str, Image.Image]) -> None:
    right, left = manifest["arms"]["arm_r"], manifest["arms"]["arm_l"]
    assert right["shoulder"][0] + left["shoulder"][0] == 512
    assert right["rest_shoulder_deg"] == -left["rest_shoulder_deg"]
    mirrored = images[right["upper_image"]].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert np.array_equal(np.asarray(mirrored), np.asarray(images[left["upper_image"]]))


def test_export_is_deterministic(exported: dict[str, bytes]) -> None:
    assert export_browser_rig() == exported
