"""The avatar service's configuration: defaults, overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest

from avatarchat.config import ConfigError
from avatarchat_avatar.config import DEFAULT_ELEVENLABS_VOICE, AvatarConfig


def test_defaults() -> None:
    config = AvatarConfig.from_env({})
    assert config.port == 50053
    assert config.workers == 2
    assert config.queue_size == 32
    assert config.max_text_chars == 1000
    assert config.tts == "piper" and config.video == "local"
    assert config.elevenlabs is None and config.did is None
    assert config.render_pool == "thread"
    assert (config.speech_workers, config.render_nice, config.tts_threads) == (1, 10, 1)
    assert config.runtime.nats_url == "nats://127.0.0.1:4222"
    assert config.retention.clips_ttl_s == 3600.0


def test_overrides() -> None:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_AVATAR_PORT": "6000",
            "AVATARCHAT_AVATAR_WORKERS": "3",
            "AVATARCHAT_AVATAR_QUEUE_SIZE": "5",
            "AVATARCHAT_AVATAR_MAX_TEXT_CHARS": "200",
            "AVATARCHAT_AVATAR_RENDER_POOL": "process",
            "AVATARCHAT_AVATAR_SPEECH_WORKERS": "2",
            "AVATARCHAT_AVATAR_RENDER_NICE": "0",
            "AVATARCHAT_AVATAR_TTS_THREADS": "2",
            "AVATARCHAT_CLIPS_TTL_S": "60",
            "AVATARCHAT_EVENTS_MAX_AGE_S": "30",
        }
    )
    assert (config.port, config.workers, config.queue_size, config.max_text_chars) == (
        6000,
        3,
        5,
        200,
    )
    assert config.render_pool == "process"
    assert (config.speech_workers, config.render_nice, config.tts_threads) == (2, 0, 2)
    assert config.retention.clips_ttl_s == 60 and config.retention.events_max_age_s == 30


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"AVATARCHAT_AVATAR_WORKERS": "0"}, "AVATARCHAT_AVATAR_WORKERS"),
        ({"AVATARCHAT_AVATAR_QUEUE_SIZE": "many"}, "AVATARCHAT_AVATAR_QUEUE_SIZE"),
        ({"AVATARCHAT_AVATAR_PORT": "70000"}, "AVATARCHAT_AVATAR_PORT"),
        ({"AVATARCHAT_AVATAR_TTS": "espeak"}, "AVATARCHAT_AVATAR_TTS"),
        ({"AVATARCHAT_AVATAR_VIDEO": "unreal"}, "AVATARCHAT_AVATAR_VIDEO"),
        ({"AVATARCHAT_AVATAR_RENDER_POOL": "gpu"}, "AVATARCHAT_AVATAR_RENDER_POOL"),
        ({"AVATARCHAT_AVATAR_SPEECH_WORKERS": "0"}, "AVATARCHAT_AVATAR_SPEECH_WORKERS"),
        ({"AVATARCHAT_AVATAR_RENDER_NICE": "20"}, "AVATARCHAT_AVATAR_RENDER_NICE"),
        ({"AVATARCHAT_AVATAR_RENDER_NICE": "-5"}, "AVATARCHAT_AVATAR_RENDER_NICE"),
        ({"AVATARCHAT_AVATAR_TTS_THREADS": "x"}, "AVATARCHAT_AVATAR_TTS_THREADS"),
        ({"AVATARCHAT_AVATAR_TTS": "elevenlabs"}, "ELEVENLABS_API_KEY"),
        ({"AVATARCHAT_AVATAR_VIDEO": "did"}, "DID_API_KEY"),
        (
            {
                "AVATARCHAT_AVATAR_TTS": "elevenlabs",
                "ELEVENLABS_API_KEY": "k",
                "AVATARCHAT_ELEVENLABS_OUTPUT_FORMAT": "ulaw_8000",
            },
            "AVATARCHAT_ELEVENLABS_OUTPUT_FORMAT",
        ),
        (
            {
                "AVATARCHAT_AVATAR_TTS": "elevenlabs",
                "ELEVENLABS_API_KEY": "k",
                "AVATARCHAT_ELEVENLABS_BASE_URL": "api.elevenlabs.io",
            },
            "AVATARCHAT_ELEVENLABS_BASE_URL",
        ),
        (
            {
                "AVATARCHAT_AVATAR_VIDEO": "did",
                "DID_API_KEY": "k",
                "AVATARCHAT_DID_SOURCE_URL": "face.png",
            },
            "AVATARCHAT_DID_SOURCE_URL",
        ),
        (
            {
                "AVATARCHAT_AVATAR_VIDEO": "did",
                "DID_API_KEY": "k",
                "AVATARCHAT_DID_POLL_INITIAL_S": "2",
                "AVATARCHAT_DID_POLL_MAX_S": "1",
            },
            "AVATARCHAT_DID_POLL_MAX_S",
        ),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        AvatarConfig.from_env(environ)


def test_elevenlabs_settings_and_secret_not_in_repr() -> None:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_AVATAR_TTS": "ElevenLabs",
            "ELEVENLABS_API_KEY": "sk-very-secret",
            "AVATARCHAT_ELEVENLABS_BASE_URL": "http://127.0.0.1:9/",
            "AVATARCHAT_ELEVENLABS_VOICES": "voiceB, voiceC,,",
        }
    )
    assert config.elevenlabs is not None
    assert config.elevenlabs.base_url == "http://127.0.0.1:9"
    assert config.elevenlabs.voices == (DEFAULT_ELEVENLABS_VOICE, "voiceB", "voiceC")
    assert config.elevenlabs.output_format == "pcm_22050"
    assert "sk-very-secret" not in repr(config)


def test_did_settings_and_secret_not_in_repr() -> None:
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_AVATAR_VIDEO": "did",
            "DID_API_KEY": "dXNlcg==:very-secret",
            "AVATARCHAT_DID_SOURCE_URL": "https://example.org/face.png",
        }
    )
    assert config.did is not None
    assert config.did.base_url == "https://api.d-id.com"
    assert config.did.source_url == "https://example.org/face.png"
    assert "very-secret" not in repr(config)
