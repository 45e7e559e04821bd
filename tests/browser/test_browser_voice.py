"""Talking to the avatar: Chromium's fake microphone plays a Piper-spoken WAV into the page,
which captures it through its AudioWorklet and streams 16 kHz PCM to the edge."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from avatarchat.devstack import Stack
from tests.browser.helpers import PageErrors, SentFrames, launch, open_app, screenshot
from tests.speech_corpus import silence, synthesize, wav_file

pytestmark = pytest.mark.timeout(240)

SENTENCE = "What is the weather like in London this morning?"


def spoken(text: str, lead_s: float, tail_s: float) -> tuple[Path, float]:
    """A WAV of ``text`` with silence around it, and its length in seconds."""
    pcm, rate = synthesize(text)
    padded = np.concatenate([silence(lead_s, rate), pcm, silence(tail_s, rate)])
    return wav_file(padded, rate), len(padded) / rate


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def mic_browser(playwright: Playwright, wav: Path) -> Browser:
    return launch(
        playwright,
        [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
        ],
    )


@pytest.fixture
def voice_page(
    playwright: Playwright, page_errors: PageErrors, request: pytest.FixtureRequest
) -> Iterator[tuple[Page, float]]:
    """A page whose microphone says SENTENCE once, padded by (lead, tail) seconds of silence."""
    lead_s, tail_s = request.param
    wav, seconds = spoken(SENTENCE, lead_s, tail_s)
    browser = mic_browser(playwright, wav)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["microphone"])
    page = page_errors.watch(context.new_page())
    yield page, seconds
    browser.close()
    assert not page_errors.uncaught, page_errors.uncaught


def check_transcript_and_reply(page: Page) -> None:
    user = page.locator(".msg-user.via-voice .body").first
    expect(user).not_to_be_empty(timeout=60_000)
    heard = words(user.inner_text())
    overlap = len(heard & words(SENTENCE)) / len(words(SENTENCE))
    assert overlap >= 0.5, f"transcript {user.inner_text()!r} is too far from {SENTENCE!r}"
    expect(page.locator(".msg-assistant.done").first).to_be_visible(timeout=90_000)
    assert page.locator(".msg-assistant .body").first.inner_text().strip()


@pytest.mark.parametrize("voice_page", [(0.3, 0.6)], indirect=True, ids=["push-to-talk"])
def test_push_to_talk_with_space_shows_transcript_and_reply(
    stack: Stack, voice_page: tuple[Page, float]
) -> None:
    page, seconds = voice_page
    sent = SentFrames(page)
    open_app(page, stack)
    page.locator("#chat-title").click()  # focus on the page, outside the text box
    page.keyboard.down(" ")
    page.wait_for_function("() => window.avatarchat.state === 'listening'", timeout=10_000)
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(
        "() => Number(document.querySelector('#level').getAttribute('aria-valuenow')) > 5",
        timeout=10_000,
    )
    screenshot(page, "voice-listening")
    page.wait_for_timeout(seconds * 1000)
    page.keyboard.up(" ")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "false")

    start = sent.wait_for(page, "audio.start")
    assert start == {
        "type": "audio.start",
        "format": "pcm_s16le",
        "sample_rate": 16000,
        "mode": "push-to-talk",
    }
    sent.wait_for(page, "audio.end")  # sent once the worklet's last chunk is out
    assert sent.types().count("audio.end") == 1
    assert sent.binary >= seconds / 0.04 * 0.8, "about one binary frame per 40 ms"
    check_transcript_and_reply(page)
    screenshot(page, "voice-reply")


@pytest.mark.parametrize("voice_page", [(1.0, 1.0)], indirect=True, ids=["hands-free"])
def test_hands_free_turn_is_found_by_the_server(
    stack: Stack, voice_page: tuple[Page, float]
) -> None:
    page, _ = voice_page
    sent = SentFrames(page)
    open_app(page, stack)
    page.get_by_role("switch", name="Hands-free").click()
    expect(page.get_by_role("switch", name="Hands-free")).to_have_attribute("aria-checked", "true")
    assert sent.wait_for(page, "audio.start")["mode"] == "hands-free"
    check_transcript_and_reply(page)
    page.get_by_role("switch", name="Hands-free").click()
    expect(page.get_by_role("switch", name="Hands-free")).to_have_attribute("aria-checked", "false")
    sent.wait_for(page, "audio.end")
