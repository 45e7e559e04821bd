"""`make run` stops cleanly: real supervisor, real nats-server, real edge and avatar processes.

Each case starts ``python -m avatarchat.devstack`` in its own session (as a terminal would run
it), signals it, and watches every process it started through /proc until it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatarchat.nats_server import free_port
from tests.processes import alive
from tests.waiting import wait_until

STOP_BUDGET_S = 5.0


def _children(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found[int(entry.name)] = cmdline
    return found


class RunningStack:
    def __init__(self, tmp_path: Path) -> None:
        self.log_path = tmp_path / "devstack.out"
        env = dict(os.environ, AVATARCHAT_LOG_FORMAT="json")
        for name in ("STT", "LLM", "AVATAR"):
            env[f"AVATARCHAT_{name}_PORT"] = str(free_port())
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "avatarchat.devstack",
                "--state",
                str(tmp_path / "state"),
                "--port",
                str(free_port()),
                "--services",
                "avatar,edge",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while b"avatarchat is up" not in self.log_path.read_bytes():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        self.children = _children(self.proc.pid)
        assert len(self.children) == 3, self.children  # nats-server, avatar, edge

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pid_of(self, needle: str) -> int:
        return next(pid for pid, cmd in self.children.items() if needle in cmd)

    def watch_until_gone(self, budget_s: float) -> dict[int, float]:
        """Seconds after now at which each child (and the supervisor) was last seen alive."""
        start = time.monotonic()
        pids = [*self.children, self.proc.pid]
        gone: dict[int, float] = {}
        while len(gone) < len(pids) and time.monotonic() - start < budget_s + 5:
            self.proc.poll()  # reap the supervisor
            seen = time.monotonic() - start  # one time per sweep: same sweep, same moment
            for pid in pids:
                if pid not in gone and not alive(pid):
                    gone[pid] = seen
            time.sleep(0.02)
        still = [self.children.get(pid, "supervisor") for pid in pids if pid not in gone]
        assert not still, f"still running: {still}\n{self.output()}"
        return gone

    def close(self) -> None:
        for pid in [*self.children, self.proc.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@pytest.fixture
def stack(tmp_path: Path):
    running = RunningStack(tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_everything_in_time_and_nats_last(stack: RunningStack, sig: int) -> None:
    # What a terminal does: Ctrl-C and hang-up go to the whole foreground process group.
    os.killpg(stack.proc.pid, sig)
    gone = stack.watch_until_gone(STOP_BUDGET_S)
    assert max(gone.values()) <= STOP_BUDGET_S, gone
    nats = stack.pid_of("nats-server")
    services = [pid for pid in stack.children if pid != nats]
    assert gone[nats] >= max(gone[pid] for pid in services), gone
    assert "killing it" not in stack.output()  # each service stopped on its own, in its grace
    assert stack.proc.returncode == 0


def test_killed_supervisor_takes_its_children_along(stack: RunningStack) -> None:
    os.kill(stack.proc.pid, signal.SIGKILL)
    gone = stack.watch_until_gone(STOP_BUDGET_S)
    assert max(gone.values()) <= STOP_BUDGET_S, gone


def test_services_stop_within_their_grace_when_nats_died_first(stack: RunningStack) -> None:
    nats = stack.pid_of("nats-server")
    os.kill(nats, signal.SIGKILL)
    wait_until(lambda: not alive(nats), what="nats-server's death")
    os.killpg(stack.proc.pid, signal.SIGTERM)
    gone = stack.watch_until_gone(STOP_BUDGET_S)
    assert max(gone.values()) <= STOP_BUDGET_S, gone
    assert "killing it" not in stack.output(), stack.output()


def test_a_crashed_service_is_restarted(stack: RunningStack) -> None:
    edge = stack.pid_of("avatarchat_edge")
    os.kill(edge, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while b"edge is back" not in stack.log_path.read_bytes():
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.1)
    now = _children(stack.proc.pid)
    assert edge not in now and any("avatarchat_edge" in cmd for cmd in now.values()), now
    stack.children = now
    os.killpg(stack.proc.pid, signal.SIGINT)
    stack.watch_until_gone(STOP_BUDGET_S)
