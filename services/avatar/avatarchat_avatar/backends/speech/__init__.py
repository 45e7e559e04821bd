"""Text-to-speech backends: ``piper`` (local) and ``elevenlabs``."""
