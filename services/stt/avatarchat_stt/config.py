"""The stt service's settings, read once from the environment (see ``docs/stt.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from avatarchat.config import ConfigError, Env, RuntimeConfig

BACKENDS = ("local", "groq")
DEFAULT_GROQ_BASE_URL = "https://api.groq.com"
DEFAULT_GROQ_MODEL = "whisper-large-v3-turbo"


@dataclass(frozen=True)
class GroqConfig:
    api_key: str
    base_url: str
    model: str
    timeout_s: float
    max_retries: int

    def __repr__(self) -> str:  # never print the key
        return (
            f"GroqConfig(api_key='***', base_url={self.base_url!r}, model={self.model!r}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )


@dataclass(frozen=True)
class PocketsphinxConfig:
    # Second (flat-lexicon) search pass at the end of each utterance. Off by default: it costs
    # ~40 ms of CPU per second of speech *after* the last chunk (≈ 200 ms for a 5 s utterance,
    # which alone nearly spends the 300 ms budget) for ~10-20 % fewer word errors.
    second_pass: bool = False
    # Extra decoder settings (name=value, comma-separated) passed to pocketsphinx.Decoder.
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SttConfig:
    runtime: RuntimeConfig
    port: int = 50051
    backend: str = "local"
    language: str = "en"
    max_audio_s: float = 60.0
    max_audio_bytes: int = 15 * 1024 * 1024
    max_stream_s: float = 3600.0
    max_streams: int = 4
    silence_ms: int = 600
    min_speech_ms: int = 150
    vad_aggressiveness: int = 2
    partial_interval_ms: int = 200
    pocketsphinx: PocketsphinxConfig = PocketsphinxConfig()
    groq: GroqConfig | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SttConfig:
        env = Env(environ)
        backend = env.choice("AVATARCHAT_STT_BACKEND", "local", BACKENDS)
        return cls(
            runtime=RuntimeConfig.from_env(environ),
            port=env.int("AVATARCHAT_STT_PORT", 50051, min=0, max=65535),
            backend=backend,
            language=env.str("AVATARCHAT_STT_LANGUAGE", "en"),
            max_audio_s=env.float("AVATARCHAT_STT_MAX_AUDIO_S", 60.0, min=1, max=3600),
            max_audio_bytes=env.int(
                "AVATARCHAT_STT_MAX_AUDIO_BYTES", 15 * 1024 * 1024, min=1024, max=1 << 30
            ),
            max_stream_s=env.float("AVATARCHAT_STT_MAX_STREAM_S", 3600.0, min=1, max=86400),
            max_streams=env.int("AVATARCHAT_STT_MAX_STREAMS", 4, min=1, max=256),
            silence_ms=env.int("AVATARCHAT_STT_SILENCE_MS", 600, min=90, max=10_000),
            min_speech_ms=env.int("AVATARCHAT_STT_MIN_SPEECH_MS", 150, min=30, max=5_000),
            vad_aggressiveness=env.int("AVATARCHAT_STT_VAD_AGGRESSIVENESS", 2, min=0, max=3),
            partial_interval_ms=env.int(
                "AVATARCHAT_STT_PARTIAL_INTERVAL_MS", 200, min=0, max=10_000
            ),
            pocketsphinx=PocketsphinxConfig(
                second_pass=env.bool("AVATARCHAT_STT_SECOND_PASS", False),
                extra=_decoder_options(env.list("AVATARCHAT_STT_DECODER_OPTIONS")),
            ),
            groq=_groq(env) if backend == "groq" else None,
        )


def _groq(env: Env) -> GroqConfig:
    api_key = env.optional_str("GROQ_API_KEY")
    if api_key is None:
        raise ConfigError("GROQ_API_KEY is required when AVATARCHAT_STT_BACKEND=groq")
    base_url = env.str("AVATARCHAT_GROQ_BASE_URL", DEFAULT_GROQ_BASE_URL)
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"AVATARCHAT_GROQ_BASE_URL must be an http(s) URL, got {base_url!r}")
    return GroqConfig(
        api_key=api_key,
        base_url=base_url.rstrip("/"),
        model=env.str("AVATARCHAT_STT_GROQ_MODEL", DEFAULT_GROQ_MODEL),
        timeout_s=env.float("AVATARCHAT_STT_GROQ_TIMEOUT_S", 30.0, min=1, max=600),
        max_retries=env.int("AVATARCHAT_STT_GROQ_MAX_RETRIES", 1, min=0, max=10),
    )


def _decoder_options(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    options = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(
                f"AVATARCHAT_STT_DECODER_OPTIONS items must look like name=value, got {item!r}"
            )
        options.append((name.strip().lstrip("-"), value.strip()))
    return tuple(options)
