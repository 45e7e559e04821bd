"""Speech recognition backends: ``whisper`` (faster-whisper, the local default), ``pocketsphinx``
(lighter, weaker on real voices) and ``groq`` (Whisper on Groq). Each is one module behind the
``Backend``/``Recognizer`` seam in ``base``, with its settings in ``config``."""

from __future__ import annotations

from avatarchat_stt.backends.base import Backend, Recognizer
from avatarchat_stt.config import SttConfig

__all__ = ["Backend", "Recognizer", "create_backend"]


def create_backend(config: SttConfig) -> Backend:
    """The backend ``config.backend`` names; its model is loaded later by ``load()``."""
    if config.backend == "groq":
        from avatarchat_stt.backends.groq import GroqBackend

        assert config.groq is not None
        return GroqBackend(config.groq, max_streams=config.max_streams)
    if config.backend == "pocketsphinx":
        from avatarchat_stt.backends.pocketsphinx import PocketsphinxBackend

        return PocketsphinxBackend(config.pocketsphinx, max_streams=config.max_streams)
    from avatarchat_stt.backends.whisper import WhisperBackend

    return WhisperBackend(config.whisper, max_streams=config.max_streams)
