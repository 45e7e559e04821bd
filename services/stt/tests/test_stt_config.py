"""``SttConfig.from_env``: defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from avatarchat.config import ConfigError
from avatarchat.cpu import default_threads
from avatarchat_stt.backends.pocketsphinx import decoder_options
from avatarchat_stt.backends.whisper import bundled_model_dir, resolve_model_dir
from avatarchat_stt.config import PocketsphinxConfig, SttConfig, WhisperConfig


def test_defaults() -> None:
    config = SttConfig.from_env({})
    assert (config.port, config.backend, config.language) == (50051, "whisper", "en")
    assert (config.max_audio_s, config.max_audio_bytes) == (60.0, 15 * 1024 * 1024)
    assert (config.silence_ms, config.min_speech_ms, config.vad_threshold) == (600, 150, 0.5)
    assert (config.early_decode_ms, config.partial_interval_ms) == (160, 700)
    assert (config.end_of_turn, config.turn_check_ms, config.turn_max_silence_ms) == (
        "auto",
        300,
        1500,
    )
    assert config.max_streams == 4 and config.max_stream_s == 3600
    assert config.whisper == WhisperConfig(
        model_dir="", threads=default_threads(reserve=1), concurrency=1, beam_size=1
    )
    assert config.pocketsphinx == PocketsphinxConfig(second_pass=False, extra=())
    assert config.groq is None


def test_local_is_the_local_default_and_pocketsphinx_stays() -> None:
    assert SttConfig.from_env({"AVATARCHAT_STT_BACKEND": "local"}).backend == "whisper"
    assert SttConfig.from_env({"AVATARCHAT_STT_BACKEND": "pocketsphinx"}).backend == "pocketsphinx"


def test_whisper_settings() -> None:
    config = SttConfig.from_env(
        {
            "AVATARCHAT_STT_WHISPER_MODEL_DIR": "/models/base.en",
            "AVATARCHAT_STT_WHISPER_THREADS": "3",
            "AVATARCHAT_STT_WHISPER_CONCURRENCY": "2",
            "AVATARCHAT_STT_WHISPER_BEAM_SIZE": "5",
            "AVATARCHAT_STT_WHISPER_PARTIAL_BUDGET": "0.25",
            "AVATARCHAT_STT_EARLY_DECODE_MS": "0",
        }
    )
    assert config.whisper == WhisperConfig("/models/base.en", 3, 2, 5, 0.25)
    assert config.early_decode_ms == 0


def test_the_bundled_model_is_tiny_en_and_a_bad_directory_is_named(tmp_path) -> None:
    assert resolve_model_dir(WhisperConfig()) == bundled_model_dir()
    assert (bundled_model_dir() / "model.bin").stat().st_size > 30_000_000
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"WHISPER_MODEL_DIR.*missing config.json, tokenizer"):
        resolve_model_dir(WhisperConfig(model_dir=str(tmp_path)))


def test_overrides() -> None:
    config = SttConfig.from_env(
        {
            "AVATARCHAT_STT_PORT": "6000",
            "AVATARCHAT_STT_MAX_AUDIO_S": "30",
            "AVATARCHAT_STT_MAX_AUDIO_BYTES": "2000000",
            "AVATARCHAT_STT_SILENCE_MS": "900",
            "AVATARCHAT_STT_MIN_SPEECH_MS": "200",
            "AVATARCHAT_STT_VAD_THRESHOLD": "0.7",
            "AVATARCHAT_STT_MAX_STREAMS": "8",
            "AVATARCHAT_STT_SECOND_PASS": "true",
            "AVATARCHAT_STT_DECODER_OPTIONS": "beam=1e-40, topn=2",
            "AVATARCHAT_STT_PARTIAL_INTERVAL_MS": "0",
            "AVATARCHAT_STT_MAX_STREAM_S": "600",
        }
    )
    assert config.port == 6000 and config.max_audio_s == 30 and config.max_audio_bytes == 2000000
    assert (config.silence_ms, config.min_speech_ms, config.vad_threshold) == (900, 200, 0.7)
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
        ({"AVATARCHAT_STT_VAD_THRESHOLD": "1.5"}, "VAD_THRESHOLD must be <= 0.95"),
        ({"AVATARCHAT_STT_BACKEND": "vosk"}, "STT_BACKEND must be one of whisper, pocketsphinx"),
        ({"AVATARCHAT_STT_WHISPER_THREADS": "0"}, "WHISPER_THREADS must be >= 1"),
        ({"AVATARCHAT_STT_WHISPER_BEAM_SIZE": "wide"}, "WHISPER_BEAM_SIZE must be an integer"),
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
