"""The web UI against the whole stack: a typed conversation with a speaking, moving avatar,
barge-in, and the video mode.

The page runs with "reduce motion" (the context fixture), so the idle head holds still and any
change in the mouth region while the avatar is silent would be a bug; while it speaks, the
lips must move.
"""

from __future__ import annotations

import contextlib

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from avatarchat.devstack import Stack
from tests.browser.helpers import (
    SentFrames,
    open_app,
    sample_mouth,
    sampled_mouth,
    save_docs_screenshot,
    screenshot,
    send_text,
    start_sampling_mouth,
)

pytestmark = pytest.mark.timeout(240)

RECORD_REPLY_STATES = """() => {
  window.__replyTexts = [];
  const log = document.querySelector("#messages");
  new MutationObserver(() => {
    const body = log.querySelector(".msg-assistant:last-child .body");
    const text = body ? body.textContent : "";
    if (text && window.__replyTexts[window.__replyTexts.length - 1] !== text) {
      window.__replyTexts.push(text);
    }
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""


def wait_until_heard(page: Page, timeout_ms: float = 90_000) -> None:
    page.wait_for_function("() => window.avatarchat.audio.heard !== null", timeout=timeout_ms)


def test_typed_message_streams_a_reply_and_the_avatar_speaks(stack: Stack, page: Page) -> None:
    open_app(page, stack)
    page.wait_for_function("() => window.avatarchat.stats.rigLoaded", timeout=20_000)
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")
    page.evaluate(RECORD_REPLY_STATES)
    idle = sample_mouth(page, for_ms=600)

    question = "Please describe the sea in two sentences."
    start_sampling_mouth(page, for_ms=150_000)
    send_text(page, question)
    expect(page.locator(".msg-user .body").last).to_have_text(question)
    expect(page.locator("#status")).to_have_attribute("data-state", "thinking")
    wait_until_heard(page)
    expect(page.locator("#status")).to_have_attribute("data-state", "speaking")
    expect(page.locator("#caption")).to_have_class("caption visible")
    # A representative picture: eyes open, mouth open (not mid-blink or between words).
    with contextlib.suppress(PlaywrightTimeoutError):
        page.wait_for_function(
            """() => { const p = window.avatarchat.pose;
                       return p && p.eyes === 'open' && p.mouth.viseme !== 'sil'; }""",
            timeout=3_000,
        )
    screenshot(page, "conversation-speaking")
    save_docs_screenshot(page)

    expect(page.locator(".msg-assistant.done")).to_have_count(1, timeout=90_000)
    # Every sentence spoken (they may come slower than they play): back to ready, silent.
    expect(page.locator("#status")).to_have_attribute("data-state", "ready", timeout=90_000)
    reply = page.locator(".msg-assistant .body").last.inner_text()
    states = page.evaluate("() => window.__replyTexts")
    assert reply.strip(), "the reply is shown as text"
    assert len(states) >= 2, f"the reply should stream in pieces, saw {states!r}"
    assert states[-1] == reply

    assert max(s["diff"] for s in idle) < 0.5, "a silent mouth holds still"
    talking = sampled_mouth(page)  # over the whole answer, until the page was ready again
    heard = [s for s in talking if s["heard"]]
    assert len(heard) >= 10, "the voice plays"
    moving = [s for s in heard if s["diff"] > 4]
    assert len(moving) >= len(heard) // 4, f"the lips move with the voice: {talking!r}"
    assert len({s["hash"] for s in heard}) >= 5, "the mouth takes several shapes"
    assert max(s["level"] for s in heard) > 0.01, "sound comes out"

    assert page.evaluate("() => window.avatarchat.audio.busy") is False
    screenshot(page, "conversation-done")


def test_escape_interrupts_mid_answer_and_stops_the_audio(stack: Stack, page: Page) -> None:
    sent = SentFrames(page)
    open_app(page, stack)
    send_text(page, "Tell me a long story about a dragon who learns to bake bread.")
    wait_until_heard(page)
    page.keyboard.press("Escape")
    audio = page.evaluate("() => window.avatarchat.audio")
    assert audio["busy"] is False and audio["heard"] is None, "silenced at once"
    after = sample_mouth(page, for_ms=1200, every_ms=60)
    assert all(s["heard"] is None for s in after)
    assert max(s["level"] for s in after) < 0.001, "no sound after the interrupt"
    assert "interrupt" in sent.types()
    expect(page.locator(".msg-assistant.cut")).to_have_count(1)
    screenshot(page, "interrupted")

    # The conversation carries on: the next message gets its own, whole answer.
    send_text(page, "What colour is the sky?")
    expect(page.locator(".msg-assistant.done:not(.cut)")).to_have_count(1, timeout=90_000)


def test_typing_while_the_avatar_talks_barges_in(stack: Stack, page: Page) -> None:
    sent = SentFrames(page)
    open_app(page, stack)
    send_text(page, "Describe a sunny day at the beach in three sentences.")
    wait_until_heard(page)
    page.locator("#message").press_sequentially("W")
    page.wait_for_function("() => !window.avatarchat.audio.busy", timeout=2_000)
    assert "interrupt" in sent.types()
    expect(page.locator("#message")).to_have_value("W")


def test_video_mode_plays_the_rendered_clips(stack: Stack, page: Page) -> None:
    sent = SentFrames(page)
    open_app(page, stack, "?mode=video")
    start = sent.wait_for(page, "session.start")
    assert start["video"] is True
    send_text(page, "Hi there! How are you?")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.avatar-video')].some(
             (v) => v.classList.contains('front') && v.currentTime > 0.2 && !v.paused)""",
        timeout=120_000,
    )
    assert page.evaluate("() => window.avatarchat.audio.busy") is False, "no Web Audio in video"
    screenshot(page, "video-mode")
    expect(page.locator(".msg-assistant.done")).to_have_count(1, timeout=90_000)
