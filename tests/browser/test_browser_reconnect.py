"""The edge goes away and comes back: the page says so, reconnects by itself, resumes (or
starts a new session if the server forgot it) and the conversation continues."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from avatarchat.devstack import Stack
from tests.browser.helpers import SentFrames, open_app, screenshot, send_text

pytestmark = pytest.mark.timeout(300)


def test_edge_restart_reconnects_and_the_conversation_continues(stack: Stack, page: Page) -> None:
    sent = SentFrames(page)
    open_app(page, stack)
    first_session = page.evaluate("() => window.avatarchat.sessionId")
    send_text(page, "Hello there!")
    expect(page.locator(".msg-assistant.done")).to_have_count(1, timeout=90_000)

    stack.stop_service("edge")
    expect(page.locator("#status")).to_have_attribute("data-state", "connecting", timeout=10_000)
    expect(page.locator("#status-text")).to_contain_text("Reconnecting")
    send_text(page, "Are you still there?")  # typed while offline: queued, sent on reconnect
    expect(page.locator(".msg-notice").last).to_contain_text("Offline")
    screenshot(page, "reconnecting")

    stack.restart_service("edge")
    page.wait_for_function(
        "() => window.avatarchat.connected && window.avatarchat.stats.reconnects >= 1",
        timeout=30_000,
    )
    expect(page.locator(".msg-notice.notice-ok, .msg-notice.notice-warn").last).to_contain_text(
        "Reconnected"
    )
    # The new socket asked to resume the old session.
    starts = [f["session_id"] for f in sent.frames if f["type"] == "session.start"]
    assert first_session in starts[1:]
    # The queued message went out and is answered.
    texts = [f["text"] for f in sent.frames if f["type"] == "text"]
    assert texts == ["Hello there!", "Are you still there?"]
    expect(page.locator(".msg-assistant.done")).to_have_count(2, timeout=90_000)
    expect(page.locator("#status")).not_to_have_attribute("data-state", "connecting")
    screenshot(page, "reconnected")
