"""Helpers for the browser tests: launching Chromium, screenshots, opening the app."""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import wave
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, WebSocket

from avatarchat.devstack import Stack

CHROMIUM = os.environ.get("AVATARCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
STATIC = ROOT / "services/edge/avatarchat_edge/static"


def launch(playwright: Playwright, extra_args: list[str] | None = None) -> Browser:
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + (extra_args or [])
    )


class PageErrors:
    """Uncaught exceptions and console errors of a page, checked at the end of a test."""

    def __init__(self) -> None:
        self.uncaught: list[str] = []
        self.console: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.uncaught.append(str(error)))
        page.on(
            "console",
            lambda message: self.console.append(message.text) if message.type == "error" else None,
        )
        return page


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    options.setdefault("viewport", {"width": 1280, "height": 800})
    return browser.new_context(**options)


def screenshot(page: Page, name: str) -> Path:
    """Saves a screenshot as a test artefact and returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_app(page: Page, stack: Stack, query: str = "", timeout_ms: float = 20_000) -> Page:
    """Opens the UI and waits until its session is ready."""
    page.goto(f"{stack.edge_url}/{query}")
    page.wait_for_function(
        "() => window.avatarchat && window.avatarchat.connected", timeout=timeout_ms
    )
    return page


DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"


def save_docs_screenshot(page: Page) -> Path | None:
    """With AVATARCHAT_UPDATE_DOCS_SCREENSHOT=1, refreshes docs/screenshot.png (README), as a
    256-colour PNG to stay small; otherwise does nothing (the file is committed)."""
    if os.environ.get("AVATARCHAT_UPDATE_DOCS_SCREENSHOT") != "1":
        return None
    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(DOCS_SCREENSHOT, optimize=True)
    return DOCS_SCREENSHOT


# Samples the canvas's mouth region every `everyMs` for `forMs` (or until `untilReady` and the
# page is back to "ready" after having been busy): for each sample, whether a clip was being
# heard, the output level, a hash of the pixels, and their mean absolute difference from the
# first sample's pixels (0-255).
SAMPLE_MOUTH = """
async ([forMs, everyMs, untilReady]) => {
  const canvas = document.querySelector("#avatar-canvas");
  const ctx = canvas.getContext("2d");
  const box = window.avatarchat.mouthRegion;
  const grab = () => ctx.getImageData(Math.round(box.x), Math.round(box.y),
                                       Math.round(box.w), Math.round(box.h)).data;
  const first = grab();
  const samples = [];
  const end = performance.now() + forMs;
  let busy = false;
  while (performance.now() < end) {
    if (window.avatarchat.state !== "ready") busy = true;
    else if (untilReady && busy) break;
    await new Promise((r) => setTimeout(r, everyMs));
    const now = grab();
    let diff = 0;
    let hash = 0;
    for (let i = 0; i < now.length; i += 4) {
      diff += Math.abs(now[i] - first[i]) + Math.abs(now[i + 1] - first[i + 1])
            + Math.abs(now[i + 2] - first[i + 2]);
      hash = (hash * 31 + now[i] + 7 * now[i + 1] + 13 * now[i + 2]) % 1000000007;
    }
    const audio = window.avatarchat.audio;
    samples.push({heard: audio.heard, level: audio.level, hash,
                  diff: diff / (now.length / 4 * 3)});
  }
  return samples;
}
"""


def sample_mouth(page: Page, for_ms: int, every_ms: int = 40) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = page.evaluate(SAMPLE_MOUTH, [for_ms, every_ms, False])
    return samples


def start_sampling_mouth(page: Page, for_ms: int, every_ms: int = 40) -> None:
    """Samples in the background until the page is ready again after a turn (or ``for_ms``);
    collect with sampled_mouth."""
    page.evaluate(
        f"(args) => {{ window.__mouthSamples = ({SAMPLE_MOUTH})(args); }}",
        [for_ms, every_ms, True],
    )


def sampled_mouth(page: Page) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = page.evaluate("() => window.__mouthSamples")
    return samples


class SentFrames:
    """The JSON frames the page sends on its WebSockets (attach before the page connects)."""

    def __init__(self, page: Page) -> None:
        self.frames: list[dict[str, Any]] = []
        self.binary = 0
        page.on("websocket", self._socket)

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framesent", self._sent)

    def _sent(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.binary += 1
            return
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if isinstance(frame, dict):
            self.frames.append(frame)

    def types(self) -> list[str]:
        return [str(f.get("type")) for f in self.frames]

    def wait_for(self, page: Page, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first sent frame of type ``kind``, waiting for it (events arrive as the page
        runs)."""
        for _ in range(int(timeout_s * 10)):
            for frame in self.frames:
                if frame.get("type") == kind:
                    return frame
            page.wait_for_timeout(100)
        raise AssertionError(f"the page sent no {kind!r} frame; it sent {self.types()}")


def send_text(page: Page, text: str) -> None:
    """Types a message and sends it with Enter, as a person would."""
    page.locator("#message").fill(text)
    page.locator("#message").press("Enter")


def tone_wav(seconds: float, freq: float, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.4 * np.sin(2 * math.pi * freq * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """``static/``, plus WAV fixtures at ``/fixtures/`` and the avatar's real browser rig at
    ``/rig/`` (from ``export_browser_rig``, as the edge would serve it), and a blank page."""

    fixtures: ClassVar[dict[str, bytes]] = {}
    rig: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path == "/blank":
            self._send(b"<!doctype html><title>units</title>", "text/html")
        elif self.path.startswith("/fixtures/") and self.path[10:] in self.fixtures:
            self._send(self.fixtures[self.path[10:]], "audio/wav")
        elif self.path.startswith("/rig/") and self.path[5:] in self.rig:
            name = self.path[5:]
            self._send(
                self.rig[name], "application/json" if name.endswith(".json") else "image/png"
            )
        else:
            super().do_GET()

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass
