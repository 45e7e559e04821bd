"""The ``groq`` backend: Whisper (``whisper-large-v3-turbo`` by default) on Groq, through the
official SDK's ``audio.transcriptions.create``.

Whisper transcribes whole recordings, so a recogniser buffers the utterance (already decoded to
16 kHz mono, which keeps uploads small: 32 kB per second) and sends it as WAV when the utterance
ends. Provider errors become status codes a client can act on, by the shared vendor base
(``avatarchat.vendor_http``): this module only says that a refused request is about the audio.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable

import groq
import numpy as np

from avatarchat import log
from avatarchat.errors import InvalidArgument, Unavailable
from avatarchat.vendor_http import SdkErrors, Vendor
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


# Whisper is sent one recording: a request Groq refuses is about that audio.
_AUDIO_REFUSED = (InvalidArgument, "{vendor} could not transcribe the audio: {detail}")
GROQ = Vendor(
    "Groq",
    key_setting="GROQ_API_KEY",
    timeout_setting="AVATARCHAT_STT_GROQ_TIMEOUT_S",
    url_setting="AVATARCHAT_GROQ_BASE_URL",
    statuses={
        400: _AUDIO_REFUSED,
        404: _AUDIO_REFUSED,
        422: _AUDIO_REFUSED,
        413: (
            InvalidArgument,
            "the audio is too large for {vendor}: {detail}; send a shorter recording",
        ),
    },
    sdk=SdkErrors.of(groq),
)


class GroqRecognizer(Recognizer):
    def __init__(
        self,
        client: groq.Groq,
        vendor: Vendor,
        model: str,
        language: str,
        release: Callable[[], None],
    ) -> None:
        super().__init__(release)
        self._client = client
        self._vendor = vendor
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
        with self._vendor.call():  # maps and logs a failure
            result = self._client.audio.transcriptions.create(
                model=self._model,
                file=("audio.wav", wav_bytes(pcm), "audio/wav"),
                language=self._language,
                response_format="json",
                temperature=0.0,
            )
        return " ".join(str(result.text).split())

    def cancel(self) -> None:
        self._chunks = []


class GroqBackend(Backend):
    def __init__(self, config: GroqConfig, max_streams: int) -> None:
        super().__init__(max_streams)
        self.model = config.model
        self._config = config
        self._vendor = GROQ.using(base_url=config.base_url)
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
        return GroqRecognizer(self._client, self._vendor, self.model, language, release)
