"""Child processes that die with their parent, and stay out of the terminal's signals.

``make run`` (``avatarchat.devstack``), the llm's llama-server supervisor and the multi-process
tests start children with :func:`spawn`. Each child gets:

- its own session, so Ctrl-C, a closed terminal (SIGHUP) or a signal to the terminal's process
  group reach only the supervisor, which then stops the children in order (NATS last);
- ``PR_SET_PDEATHSIG``: the kernel sends the child SIGTERM when the supervisor dies, even by
  SIGKILL, so no service outlives it and keeps its port busy.

Both are set by a small Python trampoline that then ``exec``s the real program (the death
signal survives ``exec``), not by a ``preexec_fn``: running Python between fork and exec in a
process with gRPC's threads can deadlock or abort the child.

The kernel ties the death signal to the *thread* that forked, not the process: a child spawned
from a worker thread (``asyncio.to_thread``) would be killed when that thread ends. So every
child is forked by one spawner thread that lives as long as the process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# One long-lived thread forks every child (see above); it ends only with the interpreter.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifeline-spawner")

_TRAMPOLINE = """
import ctypes, os, sys
os.setsid()
if sys.platform.startswith("linux"):
    if ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]), 0, 0, 0) != 0:
        sys.exit(125)
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl took effect
    sys.exit(125)
os.execvp(sys.argv[3], sys.argv[3:])
"""


def command(argv: Sequence[str], *, death_signal: int = signal.SIGTERM) -> list[str]:
    """``argv`` wrapped so that it runs in its own session and dies with this process."""
    return [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), str(int(death_signal)), *argv]


def spawn(
    argv: Sequence[str], *, death_signal: int = signal.SIGTERM, **popen: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` for a child that dies with this process."""
    if "start_new_session" in popen or "preexec_fn" in popen or "process_group" in popen:
        raise ValueError("spawn() sets the session and the death signal itself")
    wrapped = command(argv, death_signal=death_signal)

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(wrapped, **popen)

    return _SPAWNER.submit(fork).result()
