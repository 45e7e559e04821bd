"""The ``pocketsphinx`` backend: PocketSphinx 5 with its bundled US English model, decoding as audio
arrives.

``process_raw`` runs the first (tree) search pass on each chunk, so partial hypotheses are
cheap and little work is left when the audio ends; ``end_utt`` then runs the best-path search
over the utterance's lattice (~50 ms for 5 s of speech), and the second (flat-lexicon) pass if
``AVATARCHAT_STT_SECOND_PASS`` asks for it (~200 ms more).

Each decoder runs in a worker process of its own (about 110 MB; see ``sphinx_worker``).
Workers are pooled: started on demand up to ``max_streams``, one warmed at load, and a dead one
is replaced. Each call starts from the same cepstral mean, so results never depend on which call
used a worker before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from pocketsphinx import Config

from avatarchat import log
from avatarchat.config import ConfigError
from avatarchat.errors import InvalidArgument, Unavailable
from avatarchat_stt.backends.base import Backend, Recognizer
from avatarchat_stt.config import PocketsphinxConfig
from avatarchat_stt.sphinx_worker import SphinxProcess, WorkerDied

_log = log.get("avatarchat_stt.pocketsphinx")
MODEL_NAME = "pocketsphinx"


def decoder_options(config: PocketsphinxConfig) -> dict[str, Any]:
    """Keyword arguments for ``Decoder``, typed from PocketSphinx's own parameter table."""
    types = {arg.name: arg.type for arg in Config().describe()}
    options: dict[str, Any] = {"loglevel": "ERROR", "fwdflat": config.second_pass}
    for name, raw in config.extra:
        if name not in types:
            raise ConfigError(f"AVATARCHAT_STT_DECODER_OPTIONS: PocketSphinx has no {name!r}")
        kind = types[name]
        try:
            if kind is bool:
                if raw.lower() not in ("yes", "no", "true", "false", "1", "0"):
                    raise ValueError(raw)
                options[name] = raw.lower() in ("yes", "true", "1")
            else:
                options[name] = kind(raw) if kind in (int, float) else raw
        except ValueError:
            raise ConfigError(
                f"AVATARCHAT_STT_DECODER_OPTIONS: {name} must be a {kind.__name__}, got {raw!r}"
            ) from None
    return options


class _WorkerPool:
    """Idle worker processes, started on demand; thread-safe."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._idle: list[SphinxProcess] = []
        self._all: set[SphinxProcess] = set()
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> SphinxProcess:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                self._all.discard(worker)
        worker = SphinxProcess(self._options)
        with self._lock:
            self._all.add(worker)
            if not self._closed:
                return worker
        worker.stop()
        raise Unavailable("the stt service is shutting down")

    def give(self, worker: SphinxProcess, healthy: bool) -> None:
        with self._lock:
            if healthy and worker.alive and not self._closed:
                self._idle.append(worker)
                return
            self._all.discard(worker)
        worker.stop()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.stop()


class PocketsphinxRecognizer(Recognizer):
    def __init__(self, worker: SphinxProcess, pool: _WorkerPool, release: Callable[[], None]):
        super().__init__(release)
        self._worker = worker
        self._pool = pool
        self._in_utterance = False
        self._healthy = True
        self._call(worker.reset)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except WorkerDied as exc:
            self._healthy = False
            _log.error("pocketsphinx.worker_died", error=str(exc))
            raise Unavailable(
                "speech recognition failed: the recogniser process stopped; please retry"
            ) from exc

    def start(self) -> None:
        self._call(self._worker.start)
        self._in_utterance = True

    def feed(self, pcm: np.ndarray) -> None:
        self._call(self._worker.feed, pcm.astype("<i2", copy=False).tobytes())

    def partial(self) -> str:
        return str(self._call(self._worker.partial))

    def finish(self) -> str:
        self._in_utterance = False
        return str(self._call(self._worker.finish))

    def cancel(self) -> None:
        if self._in_utterance and self._healthy:
            self._in_utterance = False
            self._call(self._worker.cancel)

    def _reset(self) -> None:
        self._pool.give(self._worker, self._healthy)


class PocketsphinxBackend(Backend):
    model = MODEL_NAME

    def __init__(self, config: PocketsphinxConfig, max_streams: int) -> None:
        super().__init__(max_streams)
        self._pool = _WorkerPool(decoder_options(config))

    def check_language(self, language: str) -> str:
        primary = super().check_language(language)
        if primary != "en":
            raise InvalidArgument(
                f"the PocketSphinx backend only recognises English ('en'), not {language!r}; "
                "use AVATARCHAT_STT_BACKEND=whisper with a multilingual model, or groq"
            )
        return primary

    async def load(self) -> None:
        from avatarchat_stt import vad

        await asyncio.to_thread(vad.load)
        await asyncio.to_thread(self._warm)

    def _warm(self) -> None:
        worker = self._pool.take()
        worker.start()
        worker.feed(np.zeros(8000, dtype=np.int16).tobytes())
        worker.finish()
        self._pool.give(worker, healthy=True)
        _log.info("pocketsphinx.loaded", worker_pid=worker.pid)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.close)

    async def _create(self, language: str, release: Callable[[], None]) -> Recognizer:
        try:
            worker = await asyncio.to_thread(self._pool.take)
        except WorkerDied as exc:
            raise Unavailable(f"cannot start a recogniser: {exc}") from exc
        return PocketsphinxRecognizer(worker, self._pool, release)
