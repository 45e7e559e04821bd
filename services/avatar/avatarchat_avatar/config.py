"""The avatar service's settings, read once from the environment (see docs/avatar.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from avatarchat.bus import Retention
from avatarchat.config import ConfigError, Env, RuntimeConfig

SPEECH_BACKENDS = ("piper", "elevenlabs")
VIDEO_BACKENDS = ("local", "did")
RENDER_POOLS = ("thread", "process")

# A premade voice every ElevenLabs account has ("George").
DEFAULT_ELEVENLABS_VOICE = "JBFqnCBsd6RMkjVDRZzb"
# The presenter image of D-ID's own quickstart.
DEFAULT_DID_SOURCE_URL = (
    "https://create-images-results.d-id.com/DefaultPresenters/Noelle_f/image.png"
)


@dataclass(frozen=True)
class ElevenLabsConfig:
    """``AVATARCHAT_AVATAR_TTS=elevenlabs``: speech from ElevenLabs' ``/with-timestamps``."""

    api_key: str = field(repr=False)
    base_url: str
    voices: tuple[str, ...]  # the first is the default
    model_id: str
    output_format: str
    timeout_s: float

    @classmethod
    def from_env(cls, env: Env) -> ElevenLabsConfig:
        api_key = env.optional_str("ELEVENLABS_API_KEY")
        if api_key is None:
            raise ConfigError(
                "ELEVENLABS_API_KEY is required when AVATARCHAT_AVATAR_TTS=elevenlabs"
            )
        default_voice = env.str("AVATARCHAT_ELEVENLABS_VOICE", DEFAULT_ELEVENLABS_VOICE)
        extra = env.list("AVATARCHAT_ELEVENLABS_VOICES")
        output_format = env.str("AVATARCHAT_ELEVENLABS_OUTPUT_FORMAT", "pcm_22050").lower()
        if not output_format.startswith(("pcm_", "mp3_")):
            raise ConfigError(
                "AVATARCHAT_ELEVENLABS_OUTPUT_FORMAT must be a pcm_<rate> or mp3_<rate>_<kbps> "
                f"format, got {output_format!r}"
            )
        if output_format.startswith("pcm_") and not output_format[4:].isdigit():
            raise ConfigError(
                f"AVATARCHAT_ELEVENLABS_OUTPUT_FORMAT {output_format!r} has no sample rate"
            )
        return cls(
            api_key=api_key,
            base_url=_url(env, "AVATARCHAT_ELEVENLABS_BASE_URL", "https://api.elevenlabs.io"),
            voices=tuple(dict.fromkeys((default_voice, *extra))),
            model_id=env.str("AVATARCHAT_ELEVENLABS_MODEL", "eleven_flash_v2_5"),
            output_format=output_format,
            timeout_s=env.float("AVATARCHAT_ELEVENLABS_TIMEOUT_S", 20.0, min=1, max=300),
        )


@dataclass(frozen=True)
class DidConfig:
    """``AVATARCHAT_AVATAR_VIDEO=did``: video from D-ID's talks API, fed our own speech."""

    api_key: str = field(repr=False)
    base_url: str
    source_url: str
    poll_initial_s: float
    poll_max_s: float
    timeout_s: float

    @classmethod
    def from_env(cls, env: Env) -> DidConfig:
        api_key = env.optional_str("DID_API_KEY")
        if api_key is None:
            raise ConfigError("DID_API_KEY is required when AVATARCHAT_AVATAR_VIDEO=did")
        source_url = env.str("AVATARCHAT_DID_SOURCE_URL", DEFAULT_DID_SOURCE_URL)
        if not source_url.startswith(("https://", "http://", "s3://")):
            raise ConfigError(
                f"AVATARCHAT_DID_SOURCE_URL must be an http(s) or s3 URL, got {source_url!r}"
            )
        poll_initial_s = env.float("AVATARCHAT_DID_POLL_INITIAL_S", 0.5, min=0.01, max=60)
        return cls(
            api_key=api_key,
            base_url=_url(env, "AVATARCHAT_DID_BASE_URL", "https://api.d-id.com"),
            source_url=source_url,
            poll_initial_s=poll_initial_s,
            poll_max_s=env.float("AVATARCHAT_DID_POLL_MAX_S", 5.0, min=poll_initial_s, max=300),
            timeout_s=env.float("AVATARCHAT_DID_TIMEOUT_S", 180.0, min=1, max=3600),
        )


@dataclass(frozen=True)
class AvatarConfig:
    runtime: RuntimeConfig
    port: int
    workers: int
    speech_workers: int
    render_nice: int
    tts_threads: int
    queue_size: int
    max_text_chars: int
    clip_timeout_s: float
    registry_size: int
    render_pool: str
    retention: Retention
    tts: str
    video: str
    elevenlabs: ElevenLabsConfig | None = None
    did: DidConfig | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AvatarConfig:
        env = Env(environ)
        tts = env.choice("AVATARCHAT_AVATAR_TTS", "piper", SPEECH_BACKENDS)
        video = env.choice("AVATARCHAT_AVATAR_VIDEO", "local", VIDEO_BACKENDS)
        return cls(
            runtime=RuntimeConfig.from_env(environ),
            port=env.int("AVATARCHAT_AVATAR_PORT", 50053, min=0, max=65535),
            workers=env.int("AVATARCHAT_AVATAR_WORKERS", 2, min=1, max=64),
            speech_workers=env.int("AVATARCHAT_AVATAR_SPEECH_WORKERS", 1, min=1, max=64),
            render_nice=env.int("AVATARCHAT_AVATAR_RENDER_NICE", 10, min=0, max=19),
            tts_threads=env.int("AVATARCHAT_AVATAR_TTS_THREADS", 1, min=1, max=64),
            queue_size=env.int("AVATARCHAT_AVATAR_QUEUE_SIZE", 32, min=1, max=10_000),
            max_text_chars=env.int("AVATARCHAT_AVATAR_MAX_TEXT_CHARS", 1000, min=1, max=100_000),
            clip_timeout_s=env.float("AVATARCHAT_AVATAR_CLIP_TIMEOUT_S", 240.0, min=1, max=3600),
            registry_size=env.int("AVATARCHAT_AVATAR_REGISTRY_SIZE", 1000, min=10, max=1_000_000),
            render_pool=env.choice("AVATARCHAT_AVATAR_RENDER_POOL", "thread", RENDER_POOLS),
            retention=Retention.from_env(environ),
            tts=tts,
            video=video,
            elevenlabs=ElevenLabsConfig.from_env(env) if tts == "elevenlabs" else None,
            did=DidConfig.from_env(env) if video == "did" else None,
        )


def _url(env: Env, name: str, default: str) -> str:
    value = env.str(name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must start with http:// or https://, got {value!r}")
    return value
