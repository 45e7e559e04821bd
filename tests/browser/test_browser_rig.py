"""The browser rig draws the same character, in the same pose, as the avatar's video renderer.

The page's Rig (rig.js) and pose code (rig-motion.js) run in Chromium on the avatar service's
real exported rig (``export_browser_rig``); the reference is the service's own compositor, the
one that renders the MP4s, for the same timeline and time. Small differences come from the
video's 4:2:0 chroma and its whole-pixel, whole-degree placement of rotated parts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from avatarchat.v1 import events_pb2
from avatarchat_avatar.rendering.compositor import Compositor
from avatarchat_avatar.rendering.motion import Animator
from tests.browser.helpers import screenshot

DRAW = """
async ([timeline, ms]) => {
  const {Rig} = await import("/js/rig.js");
  const {composePose} = await import("/js/rig-motion.js");
  const {normalizeTimeline} = await import("/js/timeline.js");
  const rig = new Rig({base: "/rig/", scale: 1});
  const manifest = await rig.load();
  const canvas = document.createElement("canvas");
  rig.fit(canvas);
  document.body.append(canvas);
  const ctx = canvas.getContext("2d");
  const clip = {timeline: normalizeTimeline(timeline)};
  // The idle sines run on the clock given here, so at `ms` they match the renderer's.
  const pose = composePose(manifest, {clip, ms}, {blink: 0, sway: 1, offsets: {}}, ms);
  rig.draw(ctx, pose);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let binary = "";
  for (let i = 0; i < data.length; i += 1) binary += String.fromCharCode(data[i]);
  return {rgba: btoa(binary), pose};
}
"""


def yuv420_to_rgb(frame: np.ndarray) -> np.ndarray:
    """BT.709 limited-range yuv420p (Y plane, then U, then V, each plane row-major)."""
    height, width = frame.shape[0] * 2 // 3, frame.shape[1]
    y = frame[:height].astype(np.float64)
    planes = frame[height:].reshape(-1)
    quarter = height * width // 4
    u = planes[:quarter].reshape(height // 2, width // 2).repeat(2, 0).repeat(2, 1) - 128.0
    v = planes[quarter:].reshape(height // 2, width // 2).repeat(2, 0).repeat(2, 1) - 128.0
    luma = (y - 16.0) * 255 / 219
    u *= 255 / 224
    v *= 255 / 224
    rgb = np.stack([luma + 1.5748 * v, luma - 0.1873 * u - 0.4681 * v, luma + 1.8556 * u], axis=-1)
    return np.clip(rgb, 0, 255)


@pytest.fixture
def blank(browser: Browser, static_url: str) -> Iterator[Page]:
    context = browser.new_context(device_scale_factor=1)
    page = context.new_page()
    page.goto(f"{static_url}/blank")
    yield page
    context.close()


TIMELINE = events_pb2.Timeline(
    duration_ms=2000,
    visemes=[
        events_pb2.VisemeKey(start_ms=0, end_ms=400, viseme="aa", weight=1.0),
        events_pb2.VisemeKey(start_ms=400, end_ms=900, viseme="ou", weight=0.7),
        events_pb2.VisemeKey(start_ms=900, end_ms=2000, viseme="E", weight=0.5),
    ],
    gestures=[
        events_pb2.GestureKey(start_ms=300, duration_ms=1500, gesture="wave", intensity=1.0),
        events_pb2.GestureKey(start_ms=800, duration_ms=800, gesture="count_3", intensity=0.9),
        events_pb2.GestureKey(start_ms=1000, duration_ms=700, gesture="nod", intensity=0.8),
        events_pb2.GestureKey(start_ms=0, duration_ms=1400, gesture="head_tilt", intensity=1.0),
    ],
)


def timeline_json() -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(
        TIMELINE, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@pytest.mark.parametrize("ms", [100, 1250])
def test_browser_rig_matches_the_video_renderer(blank: Page, ms: int) -> None:
    drawn = blank.evaluate(DRAW, [timeline_json(), ms])
    browser_rgb = (
        np.frombuffer(base64.b64decode(drawn["rgba"]), np.uint8)
        .reshape(512, 512, 4)[..., :3]
        .astype(np.float64)
    )
    animator = Animator(TIMELINE)
    pose = animator.pose(ms)
    mouth = animator.mouth(ms, pose["mouth.smile"])
    video_rgb = yuv420_to_rgb(Compositor().frame(pose, mouth))

    # The same drawing choices: mouth, eyes and hands.
    assert drawn["pose"]["mouth"] == {"viseme": mouth[0], "level": mouth[1], "smile": mouth[2]}
    assert drawn["pose"]["eyes"] == pose.eyes
    assert drawn["pose"]["hands"] == pose.hands
    for channel, value in pose.values.items():
        # (intensities are float32 in the protobuf, shortest decimals in the JSON)
        assert drawn["pose"]["values"].get(channel, 0) == pytest.approx(value, abs=1e-4), channel

    difference = np.abs(browser_rgb - video_rgb).mean(axis=-1)
    assert difference.mean() < 4, f"mean difference {difference.mean():.2f} over the frame"
    # Every part is where the renderer puts it: no region of the picture differs much.
    tiles = difference.reshape(16, 32, 16, 32).mean(axis=(1, 3))
    assert tiles.max() < 25, f"a 32x32 tile differs by {tiles.max():.1f} on average"
    if ms == 1250:
        screenshot(blank, "rig-gesture")


IDLE_WATCH = """
async ([forMs]) => {
  const canvas = document.querySelector("#avatar-canvas");
  const ctx = canvas.getContext("2d");
  const box = window.avatarchat.mouthRegion;  // the face moves with the head and the breath
  const grab = () => ctx.getImageData(box.x, box.y, box.w, box.h).data;
  const first = grab();
  const eyes = new Set();
  let maxDiff = 0;
  const end = performance.now() + forMs;
  for (let tick = 0; performance.now() < end; tick += 1) {
    await new Promise((r) => setTimeout(r, 25));
    eyes.add(window.avatarchat.pose.eyes);
    if (tick % 8) continue;
    const now = grab();
    let diff = 0;
    for (let i = 0; i < now.length; i += 4) diff += Math.abs(now[i] - first[i]);
    maxDiff = Math.max(maxDiff, diff / (now.length / 4));
  }
  return {eyes: [...eyes].sort(), maxDiff};
}
"""


@pytest.mark.parametrize("reduced", [False, True], ids=["motion", "reduced-motion"])
def test_idle_avatar_breathes_and_blinks(browser: Browser, static_url: str, reduced: bool) -> None:
    context = browser.new_context(reduced_motion="reduce" if reduced else "no-preference")
    try:
        page = context.new_page()
        page.goto(f"{static_url}/")  # no server behind it: the avatar idles
        page.wait_for_function("() => window.avatarchat.pose", timeout=20_000)
        watched = page.evaluate(IDLE_WATCH, [9000])
    finally:
        context.close()
    assert "open" in watched["eyes"] and {"half", "closed"} & set(watched["eyes"]), "it blinks"
    if reduced:
        assert watched["maxDiff"] == 0, "with reduce motion the head holds still"
    else:
        assert watched["maxDiff"] > 3, "the head and body move a little (breathing, sway)"


FRAME_RATE = """
async ([ms]) => {
  const stats = () => window.avatarchat.stats;
  const start = {frames: stats().frames, ticks: stats().ticks, t: performance.now()};
  await new Promise((r) => setTimeout(r, ms));
  const s = (performance.now() - start.t) / 1000;
  return {drawn: (stats().frames - start.frames) / s, ticks: (stats().ticks - start.ticks) / s};
}
"""

HIDE = """
(state) => {
  Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}
"""


@pytest.mark.parametrize("reduced", [False, True], ids=["motion", "reduced-motion"])
def test_idle_page_is_frugal_and_stops_while_hidden(
    browser: Browser, static_url: str, reduced: bool
) -> None:
    context = browser.new_context(reduced_motion="reduce" if reduced else "no-preference")
    try:
        page = context.new_page()
        page.goto(f"{static_url}/")  # no server behind it: the avatar idles
        page.wait_for_function("() => window.avatarchat.stats.rigLoaded", timeout=20_000)
        rate = page.evaluate(FRAME_RATE, [3000])
        # The idle loop runs at IDLE_FPS (10), far below the display's 60 Hz.
        assert 3 <= rate["ticks"] <= 12, rate
        assert rate["drawn"] <= rate["ticks"], rate
        if reduced:
            # Nothing moves but the blinks: most ticks draw nothing.
            assert rate["drawn"] < rate["ticks"] / 2, rate
        page.evaluate(HIDE, "hidden")
        hidden = page.evaluate(FRAME_RATE, [1500])
        assert hidden["ticks"] == 0 and hidden["drawn"] == 0, hidden
        page.evaluate(HIDE, "visible")
        page.wait_for_function("() => window.avatarchat.stats.ticks > 0")
        again = page.evaluate(FRAME_RATE, [1500])
        assert again["ticks"] >= 3, again
    finally:
        context.close()
