"""The ``groq`` backend: Whisper (``whisper-large-v3-turbo`` by default) on Groq, through the
official SDK's ``audio.transcriptions.create``.

Whisper transcribes whole recordings, so a recogniser buffers the utterance (already decoded to
16 kHz mono, which keeps uploads small: 32 kB per second) and sends it as WAV when the utterance
ends. Provider errors become status codes a client can act on.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from typing import Any

import groq
import numpy as np

from avatarchat import log
from avatarchat.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from avatarchat_stt.audio_format import TARGET_RATE
from avatarchat_stt.backends.base import Backend, Recognizer
from avatarchat_stt.config import GroqConfig

_log = log.get("avatarchat_stt.groq")


def wav_bytes(pcm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TARGET_RATE)
        out.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buffer.getvalue()


def _provider_message(exc: groq.APIStatusError) -> str:
    body: Any = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return f"HTTP {exc.status_code}"


def _retry_after(exc: groq.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    return None


def map_groq_error(exc: Exception) -> ServiceError:
    """One place where Groq failures become domain errors (and so status codes)."""
    if isinstance(exc, groq.APITimeoutError):
        return DeadlineExceeded("Groq did not answer in time (AVATARCHAT_STT_GROQ_TIMEOUT_S)")
    if isinstance(exc, groq.APIConnectionError):
        return Unavailable("cannot reach Groq; check AVATARCHAT_GROQ_BASE_URL and the network")
    if not isinstance(exc, groq.APIStatusError):
        return Unavailable(f"Groq request failed ({type(exc).__name__})")
    said = _provider_message(exc)
    status = exc.status_code
    if status == 401:
        return Unauthenticated(f"Groq rejected the API key: {said}; check GROQ_API_KEY")
    if status == 403:
        return PermissionDenied(f"Groq refused the request: {said}")
    if status == 413:
        return InvalidArgument(f"the audio is too large for Groq: {said}; send a shorter recording")
    if status == 429:
        return ResourceExhausted(f"Groq rate limit: {said}", retry_after_s=_retry_after(exc))
    if status in (400, 404, 422):
        return InvalidArgument(f"Groq could not transcribe the audio: {said}")
    return Unavailable(f"Groq failed with HTTP {status}: {said}")


class GroqRecognizer(Recognizer):
    def __init__(
        self, client: groq.Groq, model: str, language: str, release: Callable[[], None]
    ) -> None:
        super().__init__(release)
        self._client = client
        self._model = model
        self._language = language
        self._chunks: list[np.ndarray] = []

    def start(self) -> None:
        self._chunks = []

    def feed(self, pcm: np.ndarray) -> None:
        self._chunks.append(pcm)

    def finish(self) -> str:
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = []
        if not pcm.size:
            return ""
        try:
            result = self._client.audio.transcriptions.create(
                model=self._model,
                file=("audio.wav", wav_bytes(pcm), "audio/wav"),
                language=self._language,
                response_format="json",
                temperature=0.0,
            )
        except groq.GroqError as exc:
            mapped = map_groq_error(exc)
            _log.warning("groq.failed", code=mapped.code.name, error=mapped.message)
            raise mapped from exc
        return " ".join(str(result.text).split())

    def cancel(self) -> None:
        self._chunks = []


class GroqBackend(Backend):
    def __init__(self, config: GroqConfig, max_streams: int) -> None:
        super().__init__(max_streams)
        self.model = config.model
        self._config = config
        self._client: groq.Groq | None = None

    async def load(self) -> None:
        config = self._config
        self._client = groq.Groq(
            api_key=config.api_key,
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        _log.info("groq.ready", base_url=config.base_url, model=config.model)

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _create(self, language: str, release: Callable[[], None]) -> Recognizer:
        if self._client is None:
            raise Unavailable("the Groq backend is not loaded yet")
        return GroqRecognizer(self._client, self.model, language, release)
