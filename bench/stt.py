"""stt scenario of ``make bench``: end of speech to final transcript, decode RTF and WER.

Utterances of ~5 s (two reference sentences from ``tests/speech_corpus.py`` with a short pause)
are streamed to ``StreamTranscribe`` in 100 ms chunks at real-time pace, as a microphone would
send them. The latency is measured from the moment the last chunk is handed to gRPC (the end of
speech, as the client knows it) to the arrival of the final transcript. The decode real-time
factor comes from ``Transcribe`` on the same utterances (wall time / audio duration).

    .venv/bin/python -m bench.stt 127.0.0.1:50051      # against a running stt service
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np

from avatarchat.v1 import stt_pb2, stt_pb2_grpc
from tests import speech_corpus

RATE = 16000
CHUNK_MS = 100
PCM = stt_pb2.AUDIO_ENCODING_PCM_S16LE
WEBM = stt_pb2.AUDIO_ENCODING_WEBM


def utterances() -> list[tuple[str, np.ndarray]]:
    """Sentence i followed by sentence i+1 (wrapping): each sentence appears twice, ~5 s each."""
    texts = speech_corpus.sentences()
    clips = [speech_corpus.resample(*speech_corpus.synthesize(t), RATE) for t in texts]
    pairs = []
    for i in range(len(texts)):
        j = (i + 1) % len(texts)
        audio = speech_corpus.join([clips[i], clips[j]], RATE, gap_s=0.25, pad_s=0.2)
        pairs.append((f"{texts[i]} {texts[j]}", audio))
    return pairs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def stream_once(
    stub: stt_pb2_grpc.SttServiceStub, encoding: int, data: bytes, chunks: int, pace: float
) -> tuple[str, float]:
    """Streams ``data`` in ``chunks`` pieces over the audio's duration / ``pace``."""
    size = -(-len(data) // chunks)
    interval = CHUNK_MS / 1000 / pace
    last_sent = 0.0

    async def requests() -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        nonlocal last_sent
        fmt = stt_pb2.AudioFormat(encoding=encoding, sample_rate_hz=RATE)  # type: ignore[arg-type]
        yield stt_pb2.StreamTranscribeRequest(config=stt_pb2.StreamConfig(format=fmt))
        started = time.perf_counter()
        for index, start in enumerate(range(0, len(data), size)):
            # keep to the wall clock of a live microphone
            await asyncio.sleep(max(0.0, started + index * interval - time.perf_counter()))
            last_sent = time.perf_counter()
            yield stt_pb2.StreamTranscribeRequest(audio=data[start : start + size])

    async for event in stub.StreamTranscribe(requests(), timeout=120):
        if event.WhichOneof("event") == "final":
            return event.final.text, (time.perf_counter() - last_sent) * 1000
    raise RuntimeError("the stream ended without a final transcript")


async def run(addr: str, pace: float = 1.0, webm_utterances: int = 12) -> dict[str, Any]:
    """Runs the scenario against the stt service at ``addr`` (host:port)."""
    pairs = await asyncio.to_thread(utterances)
    durations = [len(audio) / RATE for _, audio in pairs]
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        warm = pairs[0][1][:RATE].tobytes()
        await stream_once(stub, PCM, warm, 5, pace=10.0)

        pcm_latency, pcm_text = [], []
        for _, audio in pairs:
            chunks = int(np.ceil(len(audio) / RATE * 1000 / CHUNK_MS))
            text, ms = await stream_once(stub, PCM, audio.tobytes(), chunks, pace)
            pcm_text.append(text)
            pcm_latency.append(ms)

        webm_latency, webm_text = [], []
        for _, audio in pairs[:webm_utterances]:
            data = speech_corpus.encode(audio, RATE, "webm")
            chunks = int(np.ceil(len(audio) / RATE * 1000 / CHUNK_MS))
            text, ms = await stream_once(stub, WEBM, data, chunks, pace)
            webm_text.append(text)
            webm_latency.append(ms)

        unary_text, wall = [], 0.0
        for _, audio in pairs:
            request = stt_pb2.TranscribeRequest(
                format=stt_pb2.AudioFormat(encoding=PCM, sample_rate_hz=RATE),
                audio=audio.tobytes(),
            )
            started = time.perf_counter()
            response = await stub.Transcribe(request, timeout=120)
            wall += time.perf_counter() - started
            unary_text.append(response.text)

    refs = [text for text, _ in pairs]
    return {
        "utterances": len(pairs),
        "utterance_s_mean": round(statistics.fmean(durations), 2),
        "pcm: end of speech to final p50 (ms)": round(_percentile(pcm_latency, 0.5), 1),
        "pcm: end of speech to final p95 (ms)": round(_percentile(pcm_latency, 0.95), 1),
        "webm: end of speech to final p50 (ms)": round(_percentile(webm_latency, 0.5), 1),
        "webm: end of speech to final p95 (ms)": round(_percentile(webm_latency, 0.95), 1),
        "decode RTF (Transcribe wall / audio)": round(wall / sum(durations), 3),
        "WER streamed pcm": round(speech_corpus.word_error_rate(refs, pcm_text), 3),
        "WER streamed webm": round(
            speech_corpus.word_error_rate(refs[:webm_utterances], webm_text), 3
        ),
        "WER Transcribe pcm": round(speech_corpus.word_error_rate(refs, unary_text), 3),
    }


if __name__ == "__main__":
    result = asyncio.run(run(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
    for key, value in result.items():
        print(f"{key:<42} {value}")
