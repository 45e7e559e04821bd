"""``avatarchat.v1.SttService``: request validation, limits, and the two RPCs.

Errors are raised as ``avatarchat.errors`` exceptions; the shared interceptor turns them into
status codes. Decoding and recognition never run on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from avatarchat import log
from avatarchat.errors import InvalidArgument, ServiceError
from avatarchat.v1 import stt_pb2, stt_pb2_grpc
from avatarchat_stt.audio_format import TARGET_RATE, Limits, spec_from_proto
from avatarchat_stt.backends.base import Backend
from avatarchat_stt.config import SttConfig
from avatarchat_stt.decoding import decode_all
from avatarchat_stt.pipeline import StreamOptions, transcribe
from avatarchat_stt.smart_turn import SmartTurn, default_model_path
from avatarchat_stt.stream_session import StreamSession, drain

SERVICE_NAME = "avatarchat.v1.SttService"
_log = log.get("avatarchat_stt.server")
MIN_SILENCE_MS = 90
MAX_SILENCE_MS = 10_000


class SttServicer(stt_pb2_grpc.SttServiceServicer):
    def __init__(self, config: SttConfig, backend: Backend) -> None:
        self._config = config
        self._backend = backend
        self._limits = Limits(max_bytes=config.max_audio_bytes, max_seconds=config.max_audio_s)
        # Hands-free streams run for a whole conversation: a cap on the stream's duration,
        # while each utterance is capped at max_audio_s (see StreamOptions.max_utterance_ms).
        self._hands_free_limits = Limits(max_bytes=1 << 62, max_seconds=config.max_stream_s)
        self._turn = _smart_turn(config)

    def _options(self, *, vad: bool, silence_ms: int = 0) -> StreamOptions:
        config = self._config
        return StreamOptions(
            vad=vad,
            # With Smart Turn the server's silence is where the model is asked.
            silence_ms=silence_ms or (config.turn_check_ms if self._turn else config.silence_ms),
            min_speech_ms=config.min_speech_ms,
            vad_threshold=config.vad_threshold,
            partial_interval_ms=config.partial_interval_ms,
            early_decode_ms=config.early_decode_ms,
            max_utterance_ms=int(config.max_audio_s * 1000),
            turn=self._turn,
            turn_max_silence_ms=config.turn_max_silence_ms,
        )

    async def Transcribe(
        self, request: stt_pb2.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.TranscribeResponse:
        spec = spec_from_proto(request.format)
        language = request.language or self._config.language
        self._backend.check_language(language)
        self._limits.check_bytes(len(request.audio))
        model = self._backend.model
        if not request.audio:
            return stt_pb2.TranscribeResponse(text="", audio_ms=0, model=model)
        pcm = await asyncio.to_thread(decode_all, request.audio, spec, self._limits)
        recognizer = await self._backend.open(language)
        text = await transcribe(recognizer, pcm, self._options(vad=False))
        return stt_pb2.TranscribeResponse(
            text=text, audio_ms=pcm.size * 1000 // TARGET_RATE, model=model
        )

    async def StreamTranscribe(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamTranscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        try:
            config = await _first_config(request_iterator)
            spec = spec_from_proto(config.format)
            silence_ms = self._check_silence(config.silence_ms)
            recognizer = await self._backend.open(config.language or self._config.language)
        except ServiceError:
            await drain(request_iterator)
            raise
        try:
            session = StreamSession(
                spec=spec,
                limits=self._hands_free_limits if config.vad else self._limits,
                recognizer=recognizer,
                options=self._options(vad=config.vad, silence_ms=silence_ms),
                check_bytes=not config.vad,
            )
        except BaseException:
            recognizer.close()
            raise
        try:
            async for event in session.run(request_iterator):
                yield event
        finally:
            session.abort()

    def _check_silence(self, silence_ms: int) -> int:
        if silence_ms and not MIN_SILENCE_MS <= silence_ms <= MAX_SILENCE_MS:
            raise InvalidArgument(
                f"config.silence_ms must be {MIN_SILENCE_MS}-{MAX_SILENCE_MS} ms "
                f"(or 0 for the server's {self._config.silence_ms} ms), got {silence_ms}"
            )
        return silence_ms


def _smart_turn(config: SttConfig) -> SmartTurn | None:
    """The end-of-turn model that ``AVATARCHAT_STT_END_OF_TURN`` asks for (loads ~0.1 s)."""
    path = Path(config.smart_turn_model) if config.smart_turn_model else default_model_path()
    if config.end_of_turn == "silence":
        return None
    if config.end_of_turn == "auto" and not path.is_file():
        _log.warning(
            "stt.smart_turn_missing",
            path=str(path),
            using="silence",
            fix="python -m avatarchat_stt.fetch_smart_turn",
        )
        return None
    return SmartTurn(path)  # ConfigError if the file is missing


async def _first_config(
    requests: AsyncIterator[stt_pb2.StreamTranscribeRequest],
) -> stt_pb2.StreamConfig:
    try:
        first = await anext(aiter(requests))
    except StopAsyncIteration:
        raise InvalidArgument("the stream ended before its config message") from None
    if first.WhichOneof("payload") != "config":
        raise InvalidArgument(
            "the first message must carry config (format, language, vad); audio comes after it"
        )
    return first.config


def register(servicer: SttServicer):  # type: ignore[no-untyped-def]
    """For ``GrpcHost(register=...)``."""

    def add(server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, server)

    return add
