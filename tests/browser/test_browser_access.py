"""Keyboard operation, labels, focus and the microphone's explanations, on the static page.

These need no services: the page is served by the ``static_url`` server, so its socket keeps
retrying in the background, which is also what a person sees while the server is down.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from tests.browser.helpers import PageErrors, launch, new_context, screenshot


@pytest.fixture
def offline_page(browser: Browser, static_url: str, page_errors: PageErrors) -> Iterator[Page]:
    context = new_context(browser)
    page = page_errors.watch(context.new_page())
    page.goto(f"{static_url}/")
    yield page
    context.close()
    assert not page_errors.uncaught, page_errors.uncaught


def test_every_control_has_a_name_and_is_reachable_by_tab(offline_page: Page) -> None:
    page = offline_page
    for role, name in [
        ("button", "Send"),
        ("button", "Push to talk"),
        ("switch", "Hands-free"),
        ("button", "New chat"),
        ("button", "Keyboard shortcuts"),
        ("textbox", "Message to the avatar"),
        ("radio", "Live"),
        ("radio", "Video"),
        ("log", "Conversation"),
        ("meter", "Microphone level"),
        ("status", None),
    ]:
        locator = page.get_by_role(role, name=name) if name else page.get_by_role(role)
        expect(locator.first).to_be_attached()
    reached = set()
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id || document.activeElement.name"))
    assert {"message", "send", "mic", "hands-free", "new-chat", "help-button", "mode"} <= reached


def test_focus_is_visible(offline_page: Page) -> None:
    page = offline_page
    page.keyboard.press("Tab")  # the skip link comes first and shows itself
    expect(page.locator(".skip-link")).to_be_focused()
    assert (
        page.evaluate("() => document.querySelector('.skip-link').getBoundingClientRect().top") > 0
    )
    page.locator("#send").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_shortcuts_dialog_and_text_box_from_the_keyboard(offline_page: Page) -> None:
    page = offline_page
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    screenshot(page, "shortcuts-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("/")
    expect(page.locator("#message")).to_be_focused()


def test_hands_free_switch_and_mode_radios_work_by_keyboard(offline_page: Page) -> None:
    page = offline_page
    page.locator("input[name=mode][value=rig]").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("input[name=mode][value=video]")).to_be_checked()
    expect(page.locator("#stage-frame")).to_have_attribute("data-mode", "video")
    page.keyboard.press("Alt+v")
    expect(page.locator("#stage-frame")).to_have_attribute("data-mode", "rig")
    page.keyboard.press("Alt+m")
    expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")


def test_the_page_says_when_the_server_is_unreachable(offline_page: Page) -> None:
    expect(offline_page.locator("#status")).to_have_attribute("data-state", "connecting")
    expect(offline_page.locator("#status-text")).to_contain_text("onnect")


def test_no_microphone_says_so(offline_page: Page) -> None:
    # This machine has no audio input device: getUserMedia fails with NotFoundError.
    page = offline_page
    page.locator("#mic").click()
    expect(page.locator("#banner-text")).to_contain_text("No microphone was found")
    expect(page.locator("#mic")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#status")).to_have_attribute("data-state", "connecting")


def test_mic_permission_denied_says_why(playwright: Playwright, static_url: str) -> None:
    # A (fake) microphone exists, but the page was not granted it: headless Chromium denies.
    browser = launch(playwright, ["--use-fake-device-for-media-stream"])
    try:
        page = browser.new_page()
        page.goto(f"{static_url}/")
        page.keyboard.press("Tab")  # focus leaves the body so Space would not scroll
        page.locator("#mic").click()
        banner = page.locator("#banner-text")
        expect(banner).to_contain_text("Microphone access is blocked")
        expect(banner).to_contain_text("site settings")
        screenshot(page, "mic-blocked")
    finally:
        browser.close()


def test_mic_on_an_insecure_page_explains_https(playwright: Playwright, static_url: str) -> None:
    port = static_url.rsplit(":", 1)[1]
    # A name that maps to 127.0.0.1 but, unlike localhost, is not a secure context over http.
    browser = launch(playwright, ["--host-resolver-rules=MAP avatarchat.test 127.0.0.1"])
    try:
        page = browser.new_page()
        page.goto(f"http://avatarchat.test:{port}/")
        assert page.evaluate("() => window.isSecureContext") is False
        expect(page.locator("#mic")).to_have_class("mic blocked")
        page.locator("#mic").click()
        banner = page.locator("#banner-text")
        expect(banner).to_contain_text("needs a secure page")
        expect(banner).to_contain_text("http://avatarchat.test")
        expect(banner).to_contain_text("HTTPS")
        screenshot(page, "mic-insecure-context")
    finally:
        browser.close()
