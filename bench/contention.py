"""Bench scenario ``contention``: turns on a machine that is busy with something else.

On a 2-core box the llm shares the CPUs with the avatar, the browser showing the page, and
whatever else runs. Three measurements, each against the running stack:

- ``page idle CPU``: cores used by headless Chromium showing the idle page (``cores``);
- turns through ``/ws`` while a CPU-bound process spins on one core (first delta p50/p95);
- turns typed into the page while headless Chromium shows it: Enter to the first reply text
  visible in the page, and the first delta seen by a second ``/ws`` client meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.browser.helpers import launch

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(exe_name: str) -> float:
    """User + system CPU seconds of every live process whose command is ``exe_name``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "exe")).name != exe_name:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


@contextmanager
def busy_core() -> Iterator[subprocess.Popen[bytes]]:
    """A process that spins on one CPU until the block exits."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


@contextmanager
def page_open(edge_url: str, *, reduced_motion: bool = False) -> Iterator[Any]:
    """Headless Chromium showing the app, connected; yields the Playwright page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800},
                reduced_motion="reduce" if reduced_motion else "no-preference",
            )
            page = context.new_page()
            page.goto(f"{edge_url}/")
            page.wait_for_function(
                "() => window.avatarchat && window.avatarchat.connected", timeout=60_000
            )
            yield page
        finally:
            browser.close()


def page_idle_cpu(edge_url: str, seconds: float = 10.0) -> dict[str, float]:
    """Cores Chromium uses while the idle page is shown, and the frames it drew meanwhile."""
    with page_open(edge_url) as page:
        page.wait_for_timeout(3000)  # rig loaded, first layout done
        frames0 = page.evaluate("() => window.avatarchat.stats.frames")
        cpu0, t0 = _cpu_seconds("chromium"), time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        cpu1, t1 = _cpu_seconds("chromium"), time.monotonic()
        frames1 = page.evaluate("() => window.avatarchat.stats.frames")
    return {
        "cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "frames_per_s": round((frames1 - frames0) / (t1 - t0), 1),
    }


def typed_turns(edge_url: str, prompts: list[str]) -> list[float]:
    """Enter in the page to the reply's first text in the page, in ms, for each prompt."""
    visible: list[float] = []
    with page_open(edge_url) as page:
        for prompt in prompts:
            done = page.locator(".msg-assistant.done").count()
            page.locator("#message").fill(prompt)
            started = time.perf_counter()
            page.locator("#message").press("Enter")
            page.wait_for_function(
                "(n) => { const m = document.querySelectorAll('.msg-assistant');"
                " return m.length > n && m[n].querySelector('.body')?.textContent.trim(); }",
                arg=done,
                timeout=60_000,
            )
            visible.append((time.perf_counter() - started) * 1000)
            page.locator(".msg-assistant.done").nth(done).wait_for(timeout=120_000)
    return visible


async def run(edge_url: str, prompts: list[str]) -> list[dict[str, Any]]:
    from bench.__main__ import summarise
    from bench.edge_ws import run_ws

    ws_url = edge_url.replace("http", "ws", 1) + "/ws"
    await run_ws(ws_url, prompts[:2])  # warm-up
    rows: list[dict[str, Any]] = []
    idle = await asyncio.to_thread(page_idle_cpu, edge_url)
    rows.append({"metric": "page idle: Chromium CPU", "unit": "cores", "value": idle["cores"]})
    rows.append({"metric": "page idle: frames drawn", "unit": "1/s", "value": idle["frames_per_s"]})
    with busy_core():
        turns = await run_ws(ws_url, prompts)
    rows.append(summarise("one core busy: ws first reply.delta", [t["ttfd_ms"] for t in turns]))
    seen = await asyncio.to_thread(typed_turns, edge_url, prompts[: max(3, len(prompts) // 2)])
    rows.append(summarise("page open: Enter to first reply text visible", seen))
    with page_open_in_thread(edge_url):
        turns = await run_ws(ws_url, prompts)
    rows.append(summarise("page open: ws first reply.delta", [t["ttfd_ms"] for t in turns]))
    return rows


@contextmanager
def page_open_in_thread(edge_url: str) -> Iterator[None]:
    """Keeps the page open in a worker thread (Playwright's sync API owns its thread)."""
    import threading

    opened, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with page_open(edge_url) as page:
                opened.set()
                while not release.is_set():
                    page.wait_for_timeout(200)
        except BaseException as exc:  # reported to the caller
            failure.append(exc)
            opened.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    opened.wait(90)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        thread.join(30)
