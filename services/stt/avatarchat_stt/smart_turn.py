"""Semantic end of turn: Pipecat's Smart Turn v3.2 (``smart-turn-v3.2-cpu.onnx``, BSD-2-Clause)
on the audio of the utterance.

The model hears the last 8 s of the utterance (Whisper log-mel features, 80 × 800, computed by
faster-whisper's numpy feature extractor) and says how likely it is that the speaker has
finished their thought. It tells "I'd like to book a table for..." (a pause mid-sentence) from
"I'd like to book a table." when both are followed by the same silence. About 8 MB, int8; one
onnxruntime thread, roughly 20-60 ms per check.

Only the model file is taken from the ``pipecat-ai`` wheel, at install time, by
``python -m avatarchat_stt.fetch_smart_turn`` (pinned by sha256): the wheel's dependency tree
(numba, resampy, openai, …) is not needed for one ONNX file.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from avatarchat.config import ConfigError
from avatarchat_stt.audio_format import TARGET_RATE

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
WINDOW_S = 8
_WINDOW = WINDOW_S * TARGET_RATE
_NORM_EPS = 1e-7


def default_model_path() -> Path:
    """Where ``fetch_smart_turn`` installs the model: ``<venv>/share/avatarchat/``."""
    return Path(sys.prefix) / "share" / "avatarchat" / MODEL_FILE


class SmartTurn:
    """One ONNX session, shared by every stream (``run`` is thread-safe)."""

    def __init__(self, path: Path, threshold: float = 0.5) -> None:
        if not path.is_file():
            raise ConfigError(
                f"AVATARCHAT_STT_SMART_TURN_MODEL: {str(path)!r} does not exist; install it with "
                "`python -m avatarchat_stt.fetch_smart_turn` (make install does), or set "
                "AVATARCHAT_STT_END_OF_TURN=silence"
            )
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"], sess_options=options
        )
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
        self._lock = threading.Lock()  # the feature extractor keeps no state, but be safe
        self.threshold = threshold
        self.path = path

    def probability(self, pcm: np.ndarray) -> float:
        """How likely the utterance in ``pcm`` (16 kHz int16, any length) is complete."""
        audio = pcm[-_WINDOW:].astype(np.float32) / 32768.0
        if audio.size < _WINDOW:  # the model was trained on left-padded windows
            audio = np.pad(audio, (_WINDOW - audio.size, 0))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + _NORM_EPS)
        with self._lock:
            features = self._features(audio, padding=0)
        features = features[:, :800][np.newaxis].astype(np.float32)
        outputs = self._session.run(None, {"input_features": features})
        return float(np.asarray(outputs[0]).reshape(-1)[0])

    def complete(self, pcm: np.ndarray) -> bool:
        return self.probability(pcm) > self.threshold
