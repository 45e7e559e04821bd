"""An in-process stt service on a free port, with the real PocketSphinx model."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import numpy as np
import pytest

from avatarchat.config import RuntimeConfig
from avatarchat.grpc_server import GrpcHost
from avatarchat.nats_server import free_port
from avatarchat.v1 import stt_pb2, stt_pb2_grpc
from avatarchat_stt.backends import create_backend
from avatarchat_stt.config import SttConfig
from avatarchat_stt.server import SERVICE_NAME, SttServicer, register
from tests import speech_corpus

ENCODINGS = {
    "pcm": stt_pb2.AUDIO_ENCODING_PCM_S16LE,
    "wav": stt_pb2.AUDIO_ENCODING_WAV,
    "webm": stt_pb2.AUDIO_ENCODING_WEBM,
    "ogg": stt_pb2.AUDIO_ENCODING_OGG,
    "mp3": stt_pb2.AUDIO_ENCODING_MP3,
}


def base_config(**changes: Any) -> SttConfig:
    """Defaults, independent of the developer's environment."""
    return dataclasses.replace(SttConfig(runtime=RuntimeConfig.from_env({})), **changes)


def audio_format(fmt: str, rate: int = 0) -> stt_pb2.AudioFormat:
    return stt_pb2.AudioFormat(encoding=ENCODINGS[fmt], sample_rate_hz=rate)


class SttClient:
    """A stub to a running stt service, with helpers to build requests and read events."""

    def __init__(self, channel: grpc.aio.Channel, port: int) -> None:
        self.stub = stt_pb2_grpc.SttServiceStub(channel)
        self.channel = channel
        self.port = port

    async def transcribe(
        self, fmt: str, data: bytes, rate: int = 0, language: str = "", deadline_s: float = 120
    ) -> stt_pb2.TranscribeResponse:
        request = stt_pb2.TranscribeRequest(
            format=audio_format(fmt, rate), audio=data, language=language
        )
        return await self.stub.Transcribe(request, timeout=deadline_s)

    @staticmethod
    def requests(
        fmt: str,
        data: bytes,
        *,
        rate: int = 0,
        chunk: int = 8192,
        vad: bool = False,
        silence_ms: int = 0,
        language: str = "",
    ) -> list[stt_pb2.StreamTranscribeRequest]:
        """A config message, then ``data`` in ``chunk``-byte audio messages."""
        config = stt_pb2.StreamConfig(
            format=audio_format(fmt, rate), vad=vad, silence_ms=silence_ms, language=language
        )
        messages = [stt_pb2.StreamTranscribeRequest(config=config)]
        messages += [
            stt_pb2.StreamTranscribeRequest(audio=data[i : i + chunk])
            for i in range(0, len(data), chunk)
        ]
        return messages

    async def stream(
        self,
        requests: Iterable[stt_pb2.StreamTranscribeRequest]
        | AsyncIterable[stt_pb2.StreamTranscribeRequest],
        deadline_s: float = 120,
    ) -> list[stt_pb2.TranscriptEvent]:
        """Every event of one ``StreamTranscribe`` call (raises its error status)."""
        source = requests if isinstance(requests, AsyncIterable) else iter(requests)
        call = self.stub.StreamTranscribe(source, timeout=deadline_s)
        return [event async for event in call]

    @staticmethod
    def kinds(events: list[stt_pb2.TranscriptEvent]) -> list[str]:
        return [str(e.WhichOneof("event")) for e in events]

    @staticmethod
    def finals(events: list[stt_pb2.TranscriptEvent]) -> list[str]:
        return [e.final.text for e in events if e.WhichOneof("event") == "final"]


StartStt = Callable[..., Awaitable[SttClient]]


@pytest.fixture
async def start_stt() -> AsyncIterator[StartStt]:
    """Starts an stt service with ``base_config(**changes)``; returns a client of it."""
    hosts: list[GrpcHost] = []
    channels: list[grpc.aio.Channel] = []
    backends = []

    async def start(**changes: Any) -> SttClient:
        config = base_config(port=free_port(), **changes)
        backend = create_backend(config)
        host = GrpcHost(
            port=config.port,
            service_names=[SERVICE_NAME],
            register=register(SttServicer(config, backend)),
            host="127.0.0.1",
        )
        await host.start()
        hosts.append(host)
        backends.append(backend)
        await backend.load()
        await host.set_serving(True)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        channels.append(channel)
        return SttClient(channel, host.port)

    yield start
    for channel in channels:
        await channel.close()
    for host in hosts:
        await host.stop(0)
    for backend in backends:
        await backend.aclose()


@pytest.fixture
async def stt(start_stt: StartStt) -> SttClient:
    """The local backend with default settings."""
    return await start_stt()


@pytest.fixture(scope="session")
def corpus() -> list[tuple[str, np.ndarray, int]]:
    """(text, int16 PCM, rate) for every reference sentence, synthesised once."""
    return [(text, *speech_corpus.synthesize(text)) for text in speech_corpus.sentences()]
