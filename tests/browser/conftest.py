"""Browser fixtures: Debian's Chromium, headless, driven by Playwright's sync API.

The whole stack comes from the root ``stack`` fixture (started once per session). Each test gets
a fresh browser context; pages that throw uncaught errors fail the test. Screenshots go to
``artifacts/screenshots/`` (gitignored).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.helpers import (
    CHROMIUM,
    STATIC,
    PageErrors,
    StaticHandler,
    launch,
    new_context,
    tone_wav,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Playwright's sync API keeps an event loop running in the main thread while the
    # session-scoped browser lives, which would break every asyncio test after it: run the
    # browser tests last.
    items.sort(key=lambda item: "tests/browser/" in str(item.fspath))
    if Path(CHROMIUM).exists() or os.environ.get("CI"):
        return  # in CI a missing Chromium is a failure, not a skip
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (make system-deps installs it)")
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    running = launch(playwright)
    yield running
    running.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = new_context(browser, reduced_motion="reduce")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, page_errors: PageErrors) -> Iterator[Page]:
    page = page_errors.watch(context.new_page())
    yield page
    assert not page_errors.uncaught, f"uncaught errors in the page: {page_errors.uncaught}"


@pytest.fixture(scope="session")
def static_url() -> Iterator[str]:
    """The UI's static files alone (no edge behind them), plus WAV fixtures and the rig."""
    StaticHandler.fixtures = {
        "a.wav": tone_wav(0.6, 220),
        "b.wav": tone_wav(0.4, 330),
        "c.wav": tone_wav(0.5, 440),
    }
    from avatarchat_avatar.rendering.rig import export_browser_rig

    StaticHandler.rig = export_browser_rig()
    handler = functools.partial(StaticHandler, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
