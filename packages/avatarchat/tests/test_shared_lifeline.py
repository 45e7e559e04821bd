"""lifeline.spawn: the child has its own session and dies with its parent, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatarchat import lifeline
from tests.processes import alive

# A parent that spawns a long sleeper through lifeline, prints its pid, then waits forever.
PARENT = """
import sys, time
from avatarchat import lifeline
child = lifeline.spawn(["sleep", "600"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_child_runs_in_its_own_session_and_execs_the_program() -> None:
    child = lifeline.spawn(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child.pid}/exe").resolve().name != "sleep":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_child_dies_with_its_parent(sig: int) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(sig)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while alive(child):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.02)


def test_a_child_spawned_from_a_thread_that_ends_lives_on() -> None:
    # The kernel's death signal follows the forking thread; lifeline forks on its own thread.
    import threading

    spawned: list[subprocess.Popen[bytes]] = []

    def spawn_then_end() -> None:
        spawned.append(lifeline.spawn(["sleep", "30"]))
        time.sleep(1.0)  # the child has set its death signal by now; then this thread ends

    thread = threading.Thread(target=spawn_then_end)
    thread.start()
    thread.join()
    (child,) = spawned
    try:
        time.sleep(0.5)
        assert child.poll() is None, "the child died with the thread that asked for it"
    finally:
        child.kill()
        child.wait()


def test_spawn_refuses_to_be_told_about_sessions() -> None:
    with pytest.raises(ValueError, match="sets the session"):
        lifeline.spawn(["true"], start_new_session=True)
