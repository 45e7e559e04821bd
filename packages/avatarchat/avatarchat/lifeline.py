"""Child processes that die with their parent, and stay out of the terminal's signals.

``make run`` (``avatarchat.devstack``) and the llm's llama-server supervisor start children with
:func:`spawn`. Each child gets:

- its own session, so Ctrl-C, a closed terminal (SIGHUP) or a signal to the terminal's process
  group reach only the supervisor, which then stops the children in order (NATS last);
- ``PR_SET_PDEATHSIG``: the kernel sends the child SIGTERM when the supervisor dies, even by
  SIGKILL, so no service outlives it and keeps its port busy.

The death signal is tied to the thread that forked, so spawn from a long-lived thread (the
main thread, or the event loop's).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int, sig: int) -> None:
    """Runs in the child between fork and exec."""
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(125)
    # The parent may have died before prctl took effect: then we were re-parented already.
    if os.getppid() != parent_pid:
        os._exit(125)


def spawn(
    argv: Sequence[str], *, death_signal: int = signal.SIGTERM, **popen: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` for a child that dies with this process."""
    parent = os.getpid()
    if "start_new_session" in popen or "preexec_fn" in popen or "process_group" in popen:
        raise ValueError("spawn() sets the session and the death signal itself")
    return subprocess.Popen(list(argv), preexec_fn=lambda: _die_with(parent, death_signal), **popen)
