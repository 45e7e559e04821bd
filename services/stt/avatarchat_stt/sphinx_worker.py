"""A PocketSphinx decoder in a process of its own, driven over its stdin and stdout.

PocketSphinx's Python binding holds the GIL while it decodes (``process_raw`` on 10 s of audio
blocks every other thread for ~3 s), so decoders in threads would stall the event loop and could
never use more than one core. Each decoder therefore lives in a child process
(``python -m avatarchat_stt.sphinx_worker``):

- the event loop stays responsive, and streams decode in parallel on several cores;
- a crash inside the C library kills one worker, not the service: the call that used it fails
  with UNAVAILABLE and the pool starts a fresh worker for the next one.

A plain subprocess rather than ``multiprocessing``: it does not re-import the parent's
``__main__``, so the service can be embedded in any script.

Protocol: frames of an opcode byte, a 4-byte little-endian length, and a payload (UTF-8 or PCM).
Requests: ``M`` reset the cepstral mean, ``S`` start an utterance, ``F`` feed PCM, ``C`` cancel
the utterance, ``P`` ask for the partial, ``E`` end the utterance, ``Q`` quit. Only ``P`` and
``E`` are answered: ``T`` + text, or ``X`` + an error message. The worker sends ``R`` once its
decoder has loaded. This module imports nothing heavy at module level.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from typing import IO, Any

READY_TIMEOUT_S = 60.0
_HEADER = struct.Struct("<cI")


def write_frame(stream: IO[bytes], op: bytes, payload: bytes = b"") -> None:
    stream.write(_HEADER.pack(op, len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """(opcode, payload); raises EOFError when the other side has gone."""
    header = _read_exact(stream, _HEADER.size)
    op, size = _HEADER.unpack(header)
    return op, _read_exact(stream, size)


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise EOFError("the pipe closed")
    return data


def _clean(text: str) -> str:
    return " ".join(word for word in text.split() if not word.startswith(("<", "[")))


def serve(options: dict[str, Any], requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker: owns one decoder until ``Q`` or the end of its input."""
    from pocketsphinx import Decoder

    decoder = Decoder(**options)
    initial_cmn = decoder.get_cmn()
    write_frame(answers, b"R")
    in_utterance = False
    failure = ""

    def answer(hyp: Any) -> None:
        if failure:
            write_frame(answers, b"X", failure.encode())
        else:
            text = _clean(hyp.hypstr) if hyp is not None else ""
            write_frame(answers, b"T", text.encode())

    while True:
        try:
            op, payload = read_frame(requests)
        except EOFError:
            return
        try:
            if op == b"F":
                if in_utterance and not failure:
                    decoder.process_raw(payload, False, False)
            elif op == b"S":
                failure = ""
                decoder.start_utt()
                in_utterance = True
            elif op in (b"E", b"C"):
                if in_utterance:
                    in_utterance = False
                    decoder.end_utt()
                if op == b"E":
                    answer(decoder.hyp())
            elif op == b"P":
                answer(decoder.hyp() if in_utterance and not failure else None)
            elif op == b"M":
                decoder.set_cmn(initial_cmn)
            elif op == b"Q":
                return
        except Exception as exc:  # keep serving; the parent decides what to do
            failure = f"{type(exc).__name__}: {exc}"
            if op in (b"E", b"P"):
                write_frame(answers, b"X", failure.encode())


class WorkerDied(RuntimeError):
    """The worker process has gone (crashed or killed)."""


class SphinxProcess:
    """The parent's handle on one worker process. Driven by one thread at a time."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "avatarchat_stt.sphinx_worker", json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the worker's own errors go to the service's log stream
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._answers: IO[bytes] = self._process.stdout
        try:
            self._expect(b"R")
        except WorkerDied:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def reset(self) -> None:
        self._send(b"M")

    def start(self) -> None:
        self._send(b"S")

    def feed(self, pcm: bytes) -> None:
        self._send(b"F", pcm)

    def cancel(self) -> None:
        self._send(b"C")

    def partial(self) -> str:
        self._send(b"P")
        return self._answer()

    def finish(self) -> str:
        self._send(b"E")
        return self._answer()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Asks the worker to quit, and makes sure it has."""
        try:
            write_frame(self._requests, b"Q")
        except (OSError, ValueError):
            pass
        try:
            self._requests.close()
        except OSError:  # the unflushed frame of a dead worker: the pipe is closed regardless
            pass
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout_s)
        self._answers.close()

    def _send(self, op: bytes, payload: bytes = b"") -> None:
        try:
            write_frame(self._requests, op, payload)
        except (OSError, ValueError) as exc:
            raise WorkerDied(self._obituary()) from exc

    def _answer(self) -> str:
        op, payload = self._expect(b"T", b"X")
        if op == b"X":
            raise RuntimeError(f"PocketSphinx failed: {payload.decode(errors='replace')}")
        return payload.decode(errors="replace")

    def _expect(self, *ops: bytes) -> tuple[bytes, bytes]:
        try:
            op, payload = read_frame(self._answers)
        except (EOFError, OSError, ValueError) as exc:
            raise WorkerDied(self._obituary()) from exc
        if op not in ops:
            raise WorkerDied(f"unexpected answer {op!r} from the PocketSphinx worker")
        return op, payload

    def _obituary(self) -> str:
        try:
            code = self._process.wait(0.5)
        except subprocess.TimeoutExpired:
            return f"the PocketSphinx worker (pid {self.pid}) stopped answering"
        how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        return f"the PocketSphinx worker (pid {self.pid}) died: {how}"


def main() -> None:
    # The parent owns shutdown: Ctrl-C or SIGTERM sent to the whole process group must not cut
    # a decode short during the parent's grace period. The worker ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(json.loads(sys.argv[1]), sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
