"""Runs the whole stack on this machine: ``make run``.

Starts nats-server (JetStream, data under ``--state``), then every service package that is
installed (stt, llm, avatar, edge), each as its own process with its own port, waits until each
reports ready, prints the URL and streams their logs with a name prefix. A service or
nats-server that crashes is restarted, as Kubernetes would restart a pod (a crash loop stops
the stack instead).

Stopping: Ctrl-C, SIGTERM or SIGHUP (a closed terminal) asks every service to shut down
gracefully, all at once; whatever is still running after ``STOP_GRACE_S`` is killed; NATS stops
last. The children run in their own sessions, so the terminal's signals reach only this
supervisor, and they die with it (``PR_SET_PDEATHSIG``) if it is killed outright.

``--replicas N`` runs N processes of every service, as N pods would run: replica ``i`` (from 0)
of a gRPC service listens on its port + 10 i, of the edge on its port + i, and every edge
balances over all the replicas of each service (an ``ipv4:`` target list). With more than one
llm, history goes to NATS KV (``AVATARCHAT_LLM_HISTORY=nats``) unless set otherwise.

The end-to-end tests start the stack through the same ``Stack`` class, on free ports.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat import lifeline
from avatarchat.nats_server import NatsServer

# name, module, readiness kind, default port
SERVICES: tuple[tuple[str, str, str, int], ...] = (
    ("stt", "avatarchat_stt", "grpc", 50051),
    ("llm", "avatarchat_llm", "grpc", 50052),
    ("avatar", "avatarchat_avatar", "grpc", 50053),
    ("edge", "avatarchat_edge", "http", 8080),
)
# How long the services get to stop on their own before they are killed; `make run` must be
# down within 5 s of Ctrl-C, NATS included.
STOP_GRACE_S = 3.5
# A crashed service (or nats-server) is restarted, like a pod, unless it crashes this often.
MAX_RESTARTS, RESTART_WINDOW_S = 3, 60.0
# Ports of replica i: the service's port + i times this step.
REPLICA_PORT_STEP = {"stt": 10, "llm": 10, "avatar": 10, "edge": 1}


def installed_services() -> list[str]:
    """Services whose package has a ``__main__`` module; others are not faked."""
    return [
        name for name, module, _, _ in SERVICES if importlib.util.find_spec(f"{module}.__main__")
    ]


@dataclass
class Stack:
    state_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    nats_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    services: list[str] | None = None
    replicas: int = 1  # processes of each service
    log_prefix: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pumps: dict[str, threading.Thread] = field(default_factory=dict)
    nats: NatsServer | None = None
    # Set by a signal handler: a start that is still waiting for readiness gives up.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.services = self.services if self.services is not None else installed_services()
        for name, _, _, default in SERVICES:
            self.ports.setdefault(name, default)

    @property
    def edge_url(self) -> str:
        return self.url_of(self.ports["edge"])

    @property
    def edge_urls(self) -> list[str]:
        """One URL per edge replica."""
        return [self.url_of(port) for port in self.replica_ports("edge")]

    def url_of(self, port: int) -> str:
        scheme = "https" if self.env.get("AVATARCHAT_EDGE_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{port}"

    def replica_ports(self, service: str) -> list[int]:
        return [self.ports[service] + i * REPLICA_PORT_STEP[service] for i in range(self.replicas)]

    def instances(self) -> list[tuple[str, str, str, str, int]]:
        """(process name, service, module, readiness kind, port) of every process to run."""
        assert self.services is not None
        return [
            (service if i == 0 else f"{service}-{i + 1}", service, module, kind, port)
            for service, module, kind, _ in SERVICES
            if service in self.services
            for i, port in enumerate(self.replica_ports(service))
        ]

    def _instance(self, name: str) -> tuple[str, str, str, str, int]:
        return next(instance for instance in self.instances() if instance[0] == name)

    def _addr(self, service: str) -> str:
        assert self.services is not None
        if service not in self.services:
            return ""
        addrs = [f"127.0.0.1:{port}" for port in self.replica_ports(service)]
        return addrs[0] if len(addrs) == 1 else "ipv4:" + ",".join(addrs)

    def child_env(self) -> dict[str, str]:
        assert self.nats is not None and self.services is not None
        env = dict(os.environ)
        env.update(
            {
                "AVATARCHAT_NATS_URL": self.nats.url,
                "AVATARCHAT_STT_PORT": str(self.ports["stt"]),
                "AVATARCHAT_LLM_PORT": str(self.ports["llm"]),
                "AVATARCHAT_AVATAR_PORT": str(self.ports["avatar"]),
                "AVATARCHAT_EDGE_PORT": str(self.ports["edge"]),
                "AVATARCHAT_STT_ADDR": self._addr("stt"),
                "AVATARCHAT_LLM_ADDR": self._addr("llm"),
                "AVATARCHAT_AVATAR_ADDR": self._addr("avatar"),
            }
        )
        if self.replicas > 1:  # any llm replica may get any turn: history must be shared
            env.setdefault("AVATARCHAT_LLM_HISTORY", "nats")
        # Each service's own graceful stop must fit in the supervisor's STOP_GRACE_S.
        # (a service may spend its grace twice: on in-flight calls, then on its own work queue)
        env.setdefault("AVATARCHAT_SHUTDOWN_GRACE_S", str(STOP_GRACE_S - 2.5))
        if self.log_prefix and sys.stderr.isatty():
            env.setdefault("AVATARCHAT_LOG_FORMAT", "console")
        env.update(self.env)
        return env

    def start(self, timeout_s: float = 180.0) -> Stack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(
            self.state_dir / "nats", port=self.nats_port, log_file=self.state_dir / "nats.log"
        ).start()
        _say(f"nats-server on {self.nats.url} (JetStream data in {self.state_dir / 'nats'})")
        env = self.child_env()
        try:
            for name, service, module, _, port in self.instances():
                self._spawn(name, module, {**env, f"AVATARCHAT_{service.upper()}_PORT": str(port)})
            for name, _, _, kind, port in self.instances():
                self._wait_ready(name, kind, port, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, module: str, env: dict[str, str]) -> None:
        proc = lifeline.spawn(
            [sys.executable, "-m", module],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = proc
        pump = threading.Thread(target=self._pump, args=(name, proc), daemon=True)
        self.pumps[name] = pump
        pump.start()

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        log_path = self.state_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                if self.log_prefix:
                    sys.stderr.write(f"{name:>6} | {line.decode(errors='replace')}")

    def _wait_ready(self, name: str, kind: str, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_note = time.monotonic()
        _say(f"waiting for {name} on port {port} ...")
        while True:
            proc = self.processes[name]
            if proc.poll() is not None:
                log_path = self.state_dir / f"{name}.log"
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {log_path}")
            if _ready(kind, port, self.url_of(port)):
                _say(f"{name} ready on port {port}")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout_s:.0f} s")
            if self.stopping.is_set():
                raise InterruptedError(f"stopped while waiting for {name}")
            if time.monotonic() - last_note > 15:
                _say(f"still waiting for {name} (loading its model?)")
                last_note = time.monotonic()
            time.sleep(0.2)

    def stop_service(self, name: str, timeout_s: float = 30.0) -> None:
        self.stop_services([name], timeout_s)

    def stop_services(self, names: list[str], timeout_s: float) -> None:
        """SIGTERMs ``names`` at once, waits up to ``timeout_s`` in all, then kills the rest."""
        procs = {n: p for n in names if (p := self.processes.pop(n, None)) is not None}
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, proc in procs.items():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop within {timeout_s:.1f} s; killing it")
                proc.kill()
                proc.wait()
        # The log pump ends at EOF once the process is gone; then its pipe can be closed
        # (an unclosed pipe is a ResourceWarning, an error under the test suite's settings).
        for name, proc in procs.items():
            pump = self.pumps.pop(name, None)
            if pump is not None:
                pump.join(timeout=5.0)
            if proc.stdout is not None and (pump is None or not pump.is_alive()):
                proc.stdout.close()

    def supervise(self, restarts: dict[str, list[float]]) -> str | None:
        """Restarts whatever has exited; returns why the stack must stop instead, if it must.

        ``restarts`` holds each name's recent restart times, across calls.
        """
        now = time.monotonic()
        dead = [(n, p.returncode) for n, p in list(self.processes.items()) if p.poll() is not None]
        if self.nats and self.nats.process and self.nats.process.poll() is not None:
            dead.insert(0, ("nats-server", self.nats.process.returncode))
        for name, code in dead:
            recent = [t for t in restarts.get(name, []) if now - t < RESTART_WINDOW_S]
            if len(recent) >= MAX_RESTARTS:
                return f"{name} exited with code {code} {len(recent) + 1} times within a minute"
            restarts[name] = [*recent, now]
            _say(f"{name} exited with code {code}; restarting it")
            if name == "nats-server":
                assert self.nats is not None
                self.nats.stop()
                self.nats.start()
            else:
                self.restart_service(name)
            _say(f"{name} is back")
        return None

    def restart_service(self, name: str, timeout_s: float = 180.0) -> None:
        self.stop_service(name)
        _, service, module, kind, port = self._instance(name)
        self._spawn(
            name, module, {**self.child_env(), f"AVATARCHAT_{service.upper()}_PORT": str(port)}
        )
        self._wait_ready(name, kind, port, timeout_s)

    def stop(self, timeout_s: float = STOP_GRACE_S) -> None:
        self.stop_services([name for name, *_ in reversed(self.instances())], timeout_s)
        if self.nats:
            self.nats.stop()
            self.nats = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ready(kind: str, port: int, edge_url: str) -> bool:
    if kind == "grpc":
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1.0
                )
            return response.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False
    try:
        import ssl

        ctx = ssl._create_unverified_context()
        with urllib.request.urlopen(f"{edge_url}/readyz", timeout=1.0, context=ctx) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _say(message: str) -> None:
    sys.stderr.write(f"  make | {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state", type=Path, default=Path(".state"), help="data and logs folder")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("AVATARCHAT_EDGE_PORT", 8080))
    )
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed cert")
    parser.add_argument(
        "--services",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help="comma-separated subset to run (default: every installed service)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 10),
        metavar="N",
        help="processes of each service (1-9), as N pods would run; edges on --port, --port+1, ...",
    )
    args = parser.parse_args(argv)
    known = [name for name, *_ in SERVICES]
    if args.services is not None and (unknown := set(args.services) - set(known)):
        parser.error(f"unknown service(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    env: dict[str, str] = {}
    if args.tls or os.environ.get("AVATARCHAT_TLS") == "1":
        from avatarchat.selfsigned import ensure_certificate

        cert, key = ensure_certificate(args.state / "tls")
        env["AVATARCHAT_EDGE_TLS_CERT"] = str(cert)
        env["AVATARCHAT_EDGE_TLS_KEY"] = str(key)
    ports = {
        name: int(os.environ.get(f"AVATARCHAT_{name.upper()}_PORT", default))
        for name, _, _, default in SERVICES
    }
    ports["edge"] = args.port
    stack = Stack(
        state_dir=args.state, ports=ports, env=env, services=args.services, replicas=args.replicas
    )
    stop = stack.stopping
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start()
    except InterruptedError:
        _say("stopped")
        return 0
    except (RuntimeError, TimeoutError) as exc:
        _say(f"failed to start: {exc}")
        return 1
    _say(f"avatarchat is up: open {stack.edge_url}/  (Ctrl-C stops everything)")
    for url in stack.edge_urls[1:]:
        _say(f"another edge: {url}/ (a session resumes on any of them)")
    try:
        restarts: dict[str, list[float]] = {}
        while not stop.is_set():
            try:
                reason = stack.supervise(restarts)
            except InterruptedError:
                break
            except (RuntimeError, TimeoutError) as exc:
                reason = f"a restart failed: {exc}"
            if reason is not None:
                _say(f"{reason}; stopping the stack")
                break
            stop.wait(0.5)
    finally:
        _say("stopping ...")
        stack.stop()
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
