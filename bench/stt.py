"""stt scenario of ``make bench``: latency to the final transcript, decode RTF, and WER per
backend on synthetic and real human speech.

Speech sets (``tests/speech_corpus.py``, one text normaliser for all):
- ``piper``: twelve ~5 s utterances (pairs of the reference sentences, Piper's voice);
- ``librivox``: five read sentences by a human (16 kHz, 3-7 s);
- ``telephone``: 28 prompts by a human, 8 kHz telephone audio (1.6-7 s).

For the service under test (the stack's, the default backend):
- push-to-talk latency: each utterance is streamed to ``StreamTranscribe`` in 100 ms chunks at
  real-time pace, as a microphone would send it; the time runs from the moment the last chunk
  is handed to gRPC (``audio.end``, as the client knows it) to the arrival of the final. Piper
  pairs as PCM and WebM/Opus, the LibriVox sentences as PCM;
- hands-free: the LibriVox sentences with 1.5 s of silence between, streamed with ``vad``; the
  time from ``speech_ended`` (end of turn) to its ``final``;
- WER of every set streamed and through ``Transcribe`` (telephone audio goes in as 8 kHz PCM),
  and the decode real-time factor (``Transcribe`` wall time / audio).

Every other local backend (``AVATARCHAT_STT_BACKEND``) is started as a process of its own on a
free port, and gets the WER and RTF rows through ``Transcribe``. So do two variants of the
default, for comparison: Whisper with both cores (``AVATARCHAT_STT_WHISPER_THREADS=2``), and
with faster-whisper's standard 30 s encoder window (``AVATARCHAT_STT_WHISPER_WINDOW_S=30``).

End of turn (in-process, no service): every real recording, once whole and once with 1 s of
silence inserted at its quietest point near the middle (a speaker looking for the next words),
through the end-pointer with the silence rule (600 ms) and with Smart Turn (asked at 300 ms,
at most 1.5 s): how many paused sentences are cut in two, and how much later complete sentences
end (including the model's own time).

    .venv/bin/python -m bench.stt 127.0.0.1:50051      # against a running stt service
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat.nats_server import free_port
from avatarchat.v1 import stt_pb2, stt_pb2_grpc
from tests import speech_corpus

RATE = 16000
CHUNK_MS = 100
PCM = stt_pb2.AUDIO_ENCODING_PCM_S16LE
WEBM = stt_pb2.AUDIO_ENCODING_WEBM
OTHER_BACKENDS = ("pocketsphinx",)  # groq needs a key and the network: not measured here
# (text, int16 mono, rate)
Clip = tuple[str, np.ndarray, int]


def piper_pairs() -> list[Clip]:
    """Sentence i followed by sentence i+1 (wrapping): each sentence appears twice, ~5 s each."""
    texts = speech_corpus.sentences()
    clips = [speech_corpus.resample(*speech_corpus.synthesize(t), RATE) for t in texts]
    pairs = []
    for i in range(len(texts)):
        j = (i + 1) % len(texts)
        audio = speech_corpus.join([clips[i], clips[j]], RATE, gap_s=0.25, pad_s=0.2)
        pairs.append((f"{texts[i]} {texts[j]}", audio, RATE))
    return pairs


def speech_sets() -> dict[str, list[Clip]]:
    sets = {"piper": piper_pairs()}
    for name in speech_corpus.REAL_SETS:
        sets[name] = [(r.text, r.pcm, r.rate) for r in speech_corpus.real_speech(name)]
    return sets


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _chunks(data: bytes, seconds: float) -> Iterator[bytes]:
    count = max(1, int(np.ceil(seconds * 1000 / CHUNK_MS)))
    size = -(-len(data) // count)
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def stream_once(
    stub: stt_pb2_grpc.SttServiceStub,
    encoding: int,
    data: bytes,
    seconds: float,
    *,
    rate: int = RATE,
    pace: float = 1.0,
    vad: bool = False,
) -> list[tuple[str, str, float]]:
    """Streams ``data`` (``seconds`` long) in 100 ms chunks at ``pace`` × real time. Returns
    (event kind, text, ms after the last chunk was sent) for every speech_ended and final."""
    last_sent = 0.0

    async def requests() -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        nonlocal last_sent
        fmt = stt_pb2.AudioFormat(encoding=encoding, sample_rate_hz=rate)  # type: ignore[arg-type]
        yield stt_pb2.StreamTranscribeRequest(config=stt_pb2.StreamConfig(format=fmt, vad=vad))
        started = time.perf_counter()
        for index, chunk in enumerate(_chunks(data, seconds)):
            # keep to the wall clock of a live microphone
            await asyncio.sleep(
                max(0.0, started + index * CHUNK_MS / 1000 / pace - time.perf_counter())
            )
            last_sent = time.perf_counter()
            yield stt_pb2.StreamTranscribeRequest(audio=chunk)

    marks = []
    async for event in stub.StreamTranscribe(requests(), timeout=300):
        kind = event.WhichOneof("event")
        if kind in ("speech_ended", "final"):
            text = event.final.text if kind == "final" else ""
            marks.append((kind, text, (time.perf_counter() - last_sent) * 1000))
    if not any(kind == "final" for kind, _, _ in marks):
        raise RuntimeError("the stream ended without a final transcript")
    return marks


async def push_to_talk(
    stub: stt_pb2_grpc.SttServiceStub, clips: list[Clip], encoding: int
) -> tuple[list[str], list[float]]:
    texts, latency = [], []
    for _, pcm, rate in clips:
        audio = speech_corpus.resample(pcm, rate, RATE)
        data = audio.tobytes() if encoding == PCM else speech_corpus.encode(audio, RATE, "webm")
        marks = await stream_once(stub, encoding, data, audio.size / RATE)
        _, text, ms = marks[-1]
        texts.append(text)
        latency.append(ms)
    return texts, latency


async def hands_free(stub: stt_pb2_grpc.SttServiceStub, clips: list[Clip]) -> list[float]:
    """Milliseconds from each ``speech_ended`` to its ``final``."""
    audio = speech_corpus.join(
        [speech_corpus.resample(pcm, rate, RATE) for _, pcm, rate in clips], RATE, gap_s=1.5
    )
    marks = await stream_once(stub, PCM, audio.tobytes(), audio.size / RATE, vad=True)
    gaps, ended = [], None
    for kind, _, ms in marks:
        if kind == "speech_ended":
            ended = ms
        elif ended is not None:
            gaps.append(ms - ended)
            ended = None
    return gaps


async def transcribe_set(
    stub: stt_pb2_grpc.SttServiceStub, clips: list[Clip]
) -> tuple[list[str], float, str]:
    """Transcripts, wall time / audio, and the model name, through ``Transcribe``."""
    texts, wall, audio_s, model = [], 0.0, 0.0, ""
    for _, pcm, rate in clips:
        request = stt_pb2.TranscribeRequest(
            format=stt_pb2.AudioFormat(encoding=PCM, sample_rate_hz=rate), audio=pcm.tobytes()
        )
        started = time.perf_counter()
        response = await stub.Transcribe(request, timeout=300)
        wall += time.perf_counter() - started
        audio_s += pcm.size / rate
        texts.append(response.text)
        model = response.model
    return texts, wall / audio_s, model


def _wer(clips: list[Clip], texts: list[str]) -> float:
    return round(speech_corpus.word_error_rate([t for t, _, _ in clips], texts), 3)


async def measure_default(addr: str, sets: dict[str, list[Clip]]) -> dict[str, Any]:
    """Every row for the service at ``addr``."""
    rows: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = stt_pb2_grpc.SttServiceStub(channel)
        await stream_once(stub, PCM, sets["piper"][0][1][:RATE].tobytes(), 1.0, pace=10.0)
        durations = [pcm.size / rate for clips in sets.values() for _, pcm, rate in clips]
        rows["utterances"] = len(durations)
        rows["utterance_s_mean"] = round(statistics.fmean(durations), 2)
        for name, clips, encoding in (
            ("piper pcm", sets["piper"], PCM),
            ("piper webm", sets["piper"], WEBM),
            ("librivox pcm", sets["librivox"], PCM),
        ):
            texts, latency = await push_to_talk(stub, clips, encoding)
            rows[f"{name}: audio.end to final p50 (ms)"] = round(_percentile(latency, 0.5), 1)
            rows[f"{name}: audio.end to final p95 (ms)"] = round(_percentile(latency, 0.95), 1)
            rows[f"WER streamed {name}"] = _wer(clips, texts)
        gaps = await hands_free(stub, sets["librivox"])
        rows["hands-free librivox: speech_ended to final p50 (ms)"] = round(
            _percentile(gaps, 0.5), 1
        )
        rows["hands-free librivox: speech_ended to final max (ms)"] = round(max(gaps), 1)
        rows.update(await transcribe_rows(stub, sets))
    return rows


async def transcribe_rows(
    stub: stt_pb2_grpc.SttServiceStub, sets: dict[str, list[Clip]]
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, clips in sets.items():
        texts, rtf, model = await transcribe_set(stub, clips)
        rows[f"{model}: WER Transcribe {name}"] = _wer(clips, texts)
        rows[f"{model}: decode RTF {name}"] = round(rtf, 3)
    return rows


@contextlib.asynccontextmanager
async def stt_process(backend: str, **settings: str) -> AsyncIterator[str]:
    """``python -m avatarchat_stt`` with ``backend`` (and other ``AVATARCHAT_STT_*`` settings)
    on a free port, until it is SERVING."""
    port = free_port()
    env = {
        **os.environ,
        **settings,
        "AVATARCHAT_STT_BACKEND": backend,
        "AVATARCHAT_STT_PORT": str(port),
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - starts at once; waited for below
        [sys.executable, "-m", "avatarchat_stt"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    addr = f"127.0.0.1:{port}"
    try:
        async with grpc.aio.insecure_channel(addr) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"stt with {backend} exited with {process.returncode}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stt with {backend} did not start within 120 s")
                await asyncio.sleep(0.2)
        yield addr
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _with_pause(pcm: np.ndarray, pause_s: float = 1.0) -> np.ndarray:
    """``pcm`` (16 kHz) with silence inserted at its quietest 32 ms in the middle 30-70 %."""
    frame = 512
    lo, hi = int(pcm.size * 0.3) // frame, int(pcm.size * 0.7) // frame
    energy = [float(np.mean(np.abs(pcm[i * frame : (i + 1) * frame]))) for i in range(lo, hi)]
    cut = (lo + int(np.argmin(energy))) * frame + frame // 2
    return np.concatenate([pcm[:cut], speech_corpus.silence(pause_s, RATE), pcm[cut:]])


def end_of_turn_rows(clips: list[Clip]) -> dict[str, Any]:
    """Cut-offs on paused sentences and end delay on complete ones, silence rule vs Smart Turn."""
    from avatarchat_stt.smart_turn import SmartTurn, default_model_path
    from avatarchat_stt.vad import Endpointer, Framer, SpeechEnded

    model = SmartTurn(default_model_path())
    checks: list[float] = []

    class Timed:
        def complete(self, pcm: np.ndarray) -> bool:
            started = time.perf_counter()
            answer = model.complete(pcm)
            checks.append((time.perf_counter() - started) * 1000)
            return answer

    def turns(audio: np.ndarray, smart: bool) -> list[tuple[int, int]]:
        """(end of speech, where the turn was declared) per turn, in ms of the stream."""
        # the service's defaults: silence rule at 600 ms; Smart Turn asked at 300, at most 1500
        if smart:
            endpointer = Endpointer(0.5, 300, 150, turn=Timed(), max_silence_ms=1500)
        else:
            endpointer = Endpointer(0.5, 600, 150)
        found = []
        for frame in Framer().push(audio):
            event = endpointer.push(frame)
            if isinstance(event, SpeechEnded):
                found.append((event.offset_ms, endpointer.position_ms))
        return found

    pad = speech_corpus.silence(0.5, RATE)
    rows: dict[str, Any] = {"end of turn: sentences": len(clips)}
    for label, smart in (("silence 600 ms", False), ("smart-turn", True)):
        checks.clear()
        cut = delays = 0.0
        for _, pcm, rate in clips:
            audio = speech_corpus.resample(pcm, rate, RATE)
            paused = turns(
                np.concatenate([pad, _with_pause(audio), speech_corpus.silence(3, RATE)]), smart
            )
            cut += len(paused) > 1
            whole = turns(np.concatenate([pad, audio, speech_corpus.silence(3, RATE)]), smart)
            delays += whole[-1][1] - whole[-1][0] if whole else 0
        rows[f"end of turn {label}: paused sentences cut in two"] = int(cut)
        mean_check = statistics.fmean(checks) if checks else 0.0
        rows[f"end of turn {label}: complete sentence end delay mean (ms)"] = round(
            delays / len(clips) + mean_check, 1
        )
    return rows


async def run(addr: str, other_backends: tuple[str, ...] = OTHER_BACKENDS) -> dict[str, Any]:
    """Runs the scenario against the stt service at ``addr`` (host:port), then the other local
    backends in processes of their own."""
    sets = await asyncio.to_thread(speech_sets)
    rows = await measure_default(addr, sets)
    real = sets["librivox"] + sets["telephone"]
    rows.update(await asyncio.to_thread(end_of_turn_rows, real))
    for backend in other_backends:
        async with stt_process(backend) as other, grpc.aio.insecure_channel(other) as channel:
            rows.update(await transcribe_rows(stt_pb2_grpc.SttServiceStub(channel), sets))
    # The default leaves a core to the llm; with both cores (as a dedicated pod has them), and
    # with faster-whisper's standard 30 s encoder window instead of the 10 s one:
    variants = {
        "whisper 2 threads": {"AVATARCHAT_STT_WHISPER_THREADS": "2"},
        "whisper 30 s window": {"AVATARCHAT_STT_WHISPER_WINDOW_S": "30"},
    }
    for variant, settings in variants.items():
        async with (
            stt_process("whisper", **settings) as other,
            grpc.aio.insecure_channel(other) as channel,
        ):
            stub = stt_pb2_grpc.SttServiceStub(channel)
            for name in ("piper", "librivox", "telephone"):
                texts, latency = await push_to_talk(stub, sets[name], PCM)
                label = f"{variant}, {name} pcm"
                rows[f"{label}: audio.end to final p50 (ms)"] = round(_percentile(latency, 0.5), 1)
                rows[f"{label}: audio.end to final p95 (ms)"] = round(_percentile(latency, 0.95), 1)
                rows[f"{label}: WER streamed"] = _wer(sets[name], texts)
    return rows


if __name__ == "__main__":
    result = asyncio.run(run(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
    for key, value in result.items():
        print(f"{key:<56} {value}")
