"""``SttConfig.from_env``: defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from avatarchat.config import ConfigError
from avatarchat_stt.backends.pocketsphinx import decoder_options
from avatarchat_stt.config import PocketsphinxConfig, SttConfig


def test_defaults() -> None:
    config = SttConfig.from_env({})
    assert (config.port, config.backend, config.language) == (50051, "local", "en")
    assert (config.max_audio_s, config.max_audio_bytes) == (60.0, 15 * 1024 * 1024)
    assert (config.silence_ms, config.min_speech_ms, config.vad_aggressiveness) == (600, 150, 2)
    assert config.max_streams == 4 and config.max_stream_s == 3600
    assert config.pocketsphinx == PocketsphinxConfig(second_pass=False, extra=())
    assert config.groq is None


def test_overrides() -> None:
    config = SttConfig.from_env(
        {
            "AVATARCHAT_STT_PORT": "6000",
            "AVATARCHAT_STT_MAX_AUDIO_S": "30",
            "AVATARCHAT_STT_MAX_AUDIO_BYTES": "2000000",
            "AVATARCHAT_STT_SILENCE_MS": "900",
            "AVATARCHAT_STT_MIN_SPEECH_MS": "200",
            "AVATARCHAT_STT_VAD_AGGRESSIVENESS": "3",
            "AVATARCHAT_STT_MAX_STREAMS": "8",
            "AVATARCHAT_STT_SECOND_PASS": "true",
            "AVATARCHAT_STT_DECODER_OPTIONS": "beam=1e-40, topn=2",
            "AVATARCHAT_STT_PARTIAL_INTERVAL_MS": "0",
            "AVATARCHAT_STT_MAX_STREAM_S": "600",
        }
    )
    assert config.port == 6000 and config.max_audio_s == 30 and config.max_audio_bytes == 2000000
    assert (config.silence_ms, config.min_speech_ms, config.vad_aggressiveness) == (900, 200, 3)
    assert config.max_streams == 8 and config.partial_interval_ms == 0
    assert config.max_stream_s == 600
    options = decoder_options(config.pocketsphinx)
    assert options["fwdflat"] is True
    assert options["beam"] == 1e-40 and options["topn"] == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AVATARCHAT_STT_PORT": "http"}, "AVATARCHAT_STT_PORT must be an integer"),
        ({"AVATARCHAT_STT_SILENCE_MS": "10"}, "AVATARCHAT_STT_SILENCE_MS must be >= 90"),
        ({"AVATARCHAT_STT_VAD_AGGRESSIVENESS": "5"}, "VAD_AGGRESSIVENESS must be <= 3"),
        ({"AVATARCHAT_STT_MAX_AUDIO_BYTES": "0"}, "AVATARCHAT_STT_MAX_AUDIO_BYTES must be >= 1024"),
        ({"AVATARCHAT_STT_DECODER_OPTIONS": "beam"}, "must look like name=value"),
        ({"AVATARCHAT_STT_SECOND_PASS": "maybe"}, "SECOND_PASS must be true or false"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SttConfig.from_env(env)


def test_decoder_options_are_typed_by_pocketsphinx() -> None:
    with pytest.raises(ConfigError, match="PocketSphinx has no 'bogus'"):
        decoder_options(PocketsphinxConfig(extra=(("bogus", "1"),)))
    with pytest.raises(ConfigError, match="bestpath must be a bool"):
        decoder_options(PocketsphinxConfig(extra=(("bestpath", "perhaps"),)))
    assert decoder_options(PocketsphinxConfig(extra=(("bestpath", "no"),)))["bestpath"] is False
