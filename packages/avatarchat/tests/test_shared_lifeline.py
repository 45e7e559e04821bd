"""lifeline.spawn: the child has its own session and dies with its parent, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from avatarchat import lifeline
from tests.processes import alive
from tests.waiting import wait_until

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
        wait_until(lambda: Path(f"/proc/{child.pid}/exe").resolve().name == "sleep")
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
    wait_until(lambda: not alive(child), what="the child's death with its parent")


# A child that says "term" and exits on SIGTERM (the death signal), and answers each line on
# stdin with "pong": so "still alive, and never sent its death signal" is an answer, not a wait.
WITNESS = """
import signal, sys
def terminated(*_):
    print("term", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, terminated)
print("ready", flush=True)
for line in sys.stdin:
    print("pong", flush=True)
"""


def test_a_child_spawned_from_a_thread_that_ends_lives_on() -> None:
    # The kernel's death signal follows the forking thread; lifeline forks on its own thread.
    import threading

    spawned: list[subprocess.Popen[bytes]] = []

    def spawn_then_end() -> None:
        child = lifeline.spawn(
            [sys.executable, "-c", WITNESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        spawned.append(child)
        assert child.stdout is not None
        # "ready" comes after the trampoline's prctl and exec: the death signal is armed.
        assert child.stdout.readline() == b"ready\n"

    thread = threading.Thread(target=spawn_then_end)
    thread.start()
    thread.join()
    (child,) = spawned
    assert child.stdin is not None and child.stdout is not None
    try:
        # The kernel sends a death signal while the thread exits, before its /proc entry goes.
        task = Path(f"/proc/self/task/{thread.native_id}")
        wait_until(lambda: not task.exists(), what="the thread's exit")
        child.stdin.write(b"ping\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"pong\n", "the child got the thread's death signal"
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def test_spawn_refuses_to_be_told_about_sessions() -> None:
    with pytest.raises(ValueError, match="sets the session"):
        lifeline.spawn(["true"], start_new_session=True)
