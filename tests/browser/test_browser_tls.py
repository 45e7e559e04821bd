"""Served over HTTPS (``make run TLS=1``), the page is a secure context even on a name other
than localhost, so browsers allow the microphone, and it talks to the edge over ``wss://``.

Only nats-server and the edge run here (with the self-signed certificate ``make run TLS=1``
makes); the page reaches them as https://avatarchat.test, mapped to 127.0.0.1 by Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Playwright, expect

from avatarchat.devstack import Stack
from avatarchat.nats_server import free_port
from avatarchat.selfsigned import ensure_certificate
from tests.browser.helpers import SentFrames, launch, screenshot

TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def tls_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state: Path = tmp_path_factory.mktemp("tls-stack")
    cert, key = ensure_certificate(state / "tls")
    # A name other than localhost is served only with tokens (the DNS-rebinding defence).
    env = {
        "AVATARCHAT_EDGE_TLS_CERT": str(cert),
        "AVATARCHAT_EDGE_TLS_KEY": str(key),
        "AVATARCHAT_EDGE_TOKENS": TOKEN,
    }
    stack = Stack(
        state_dir=state, ports={"edge": free_port()}, env=env, services=["edge"], log_prefix=False
    )
    with stack:
        yield stack


def test_https_page_is_a_secure_context_and_connects_over_wss(
    playwright: Playwright, tls_edge: Stack
) -> None:
    port = tls_edge.ports["edge"]
    browser = launch(
        playwright,
        [
            "--host-resolver-rules=MAP avatarchat.test 127.0.0.1",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    )
    try:
        context = browser.new_context(ignore_https_errors=True)  # the certificate is self-signed
        page = context.new_page()
        sent = SentFrames(page)
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        # How a browser passes its token: in the page's address; the page adds it to /ws.
        page.goto(f"https://avatarchat.test:{port}/?token={TOKEN}")
        page.wait_for_function("() => window.avatarchat.connected", timeout=20_000)
        assert page.evaluate("() => window.isSecureContext") is True
        assert sockets and sockets[0].startswith(f"wss://avatarchat.test:{port}/ws")
        assert f"token={TOKEN}" in sockets[0]
        assert sent.wait_for(page, "session.start")["avatar"] is False  # no avatar deployed
        # Only the edge runs: the page says what is missing instead of failing on the mic.
        expect(page.locator("#stage-frame")).to_have_class("stage-frame no-avatar")
        page.locator("#mic").focus()  # greyed out (aria-disabled) but still says why
        page.keyboard.press("Enter")
        expect(page.locator("#banner-text")).to_contain_text("not available on this server")
        expect(page.locator("#banner-text")).not_to_contain_text("secure")
        screenshot(page, "tls-edge-only")
    finally:
        browser.close()
