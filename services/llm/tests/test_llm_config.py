"""LlmConfig: defaults, overrides, and bad values that fail naming the variable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from avatarchat import cpu
from avatarchat.config import ConfigError
from avatarchat_llm.config import DEFAULT_SYSTEM_PROMPT, LlmConfig, concurrency
from avatarchat_llm.models import QWEN_05B, SMOLLM2_135M


def test_defaults() -> None:
    config = LlmConfig.from_env({})
    assert config.port == 50052
    assert config.backend == "local" and config.groq is None
    assert config.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert config.history == "memory"
    assert config.history_window == 12
    assert config.max_input_chars == 4000
    assert (config.temperature, config.max_tokens) == (0.0, 128)
    assert config.local is not None and config.openai is None
    assert config.local.model is QWEN_05B
    models_dir = Path(sys.prefix) / "lib/avatarchat-models"
    assert config.local.model_path == models_dir / QWEN_05B.file_name
    assert config.local.binary == Path(sys.prefix) / "lib/llama-server/llama-server"
    assert config.local.threads == cpu.default_threads()
    assert config.local.slots == 8 and concurrency(config) == 8
    assert config.local.context_tokens == 2048
    assert config.max_queue == 16 and config.metrics_port == 0  # a free port
    assert config.retention.history_ttl_s == 7 * 24 * 3600.0


def test_the_smaller_model_is_found_in_its_package_without_importing_it() -> None:
    config = LlmConfig.from_env({"AVATARCHAT_LLM_MODEL": "smollm2-135m"})
    assert config.local is not None and config.local.model is SMOLLM2_135M
    path = config.local.model_path
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_openai_backend_settings() -> None:
    config = LlmConfig.from_env(
        {
            "AVATARCHAT_LLM_BACKEND": "openai",
            "AVATARCHAT_OPENAI_BASE_URL": "http://localhost:11434/v1/",
            "AVATARCHAT_LLM_OPENAI_MODEL": "qwen2.5:0.5b",
            "AVATARCHAT_LLM_OPENAI_FALLBACK_MODELS": "llama3.2:1b, qwen2.5:0.5b",
            "OPENAI_API_KEY": "sk-secret-1",
            "AVATARCHAT_LLM_MAX_CONCURRENT": "5",
        }
    )
    assert config.local is None and config.openai is not None
    assert config.openai.base_url == "http://localhost:11434/v1"
    assert config.openai.models == ("qwen2.5:0.5b", "llama3.2:1b")
    assert concurrency(config) == 5
    assert "sk-secret-1" not in repr(config)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({}, "AVATARCHAT_OPENAI_BASE_URL is required"),
        ({"AVATARCHAT_OPENAI_BASE_URL": "localhost:1"}, "AVATARCHAT_OPENAI_BASE_URL must start"),
        ({"AVATARCHAT_OPENAI_BASE_URL": "http://x/v1"}, "AVATARCHAT_LLM_OPENAI_MODEL is required"),
    ],
)
def test_bad_openai_settings(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        LlmConfig.from_env({"AVATARCHAT_LLM_BACKEND": "openai", **env})


def test_retention_of_the_history_bucket_comes_from_the_shared_settings() -> None:
    config = LlmConfig.from_env({"AVATARCHAT_HISTORY_TTL_S": "60", "AVATARCHAT_NATS_REPLICAS": "3"})
    assert (config.retention.history_ttl_s, config.retention.replicas) == (60.0, 3)


def test_overrides(tmp_path: Path) -> None:
    model = tmp_path / "other.gguf"
    model.write_bytes(b"GGUF")
    config = LlmConfig.from_env(
        {
            "AVATARCHAT_LLM_PORT": "6000",
            "AVATARCHAT_LLM_SYSTEM_PROMPT": "You are a pirate.",
            "AVATARCHAT_LLM_TEMPERATURE": "0.7",
            "AVATARCHAT_LLM_MAX_TOKENS": "200",
            "AVATARCHAT_LLM_HISTORY": "NATS",
            "AVATARCHAT_LLM_HISTORY_WINDOW": "4",
            "AVATARCHAT_LLM_MODEL_PATH": str(model),
            "AVATARCHAT_LLM_THREADS": "3",
            "AVATARCHAT_LLM_MAX_QUEUE": "0",
            "AVATARCHAT_LLM_SLOTS": "2",
            "AVATARCHAT_LLM_METRICS_PORT": "9999",
        }
    )
    assert (config.port, config.temperature) == (6000, 0.7)
    assert config.system_prompt == "You are a pirate."
    assert (config.max_tokens, config.history, config.history_window) == (200, "nats", 4)
    assert config.local is not None
    assert (config.local.model_path, config.local.threads) == (model, 3)
    assert config.local.model is None  # any GGUF: not checked against a known model
    assert (config.max_queue, config.local.slots, config.metrics_port) == (0, 2, 9999)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AVATARCHAT_LLM_PORT", "http"),
        ("AVATARCHAT_LLM_PORT", "70000"),
        ("AVATARCHAT_LLM_BACKEND", "ollama"),
        ("AVATARCHAT_LLM_MODEL", "gpt-5"),
        ("AVATARCHAT_LLAMA_SERVER", "/nonexistent/llama-server"),
        ("AVATARCHAT_LLM_SLOTS", "0"),
        ("AVATARCHAT_LLM_METRICS_PORT", "-1"),
        ("AVATARCHAT_LLM_CACHE_RAM_MIB", "lots"),
        ("AVATARCHAT_LLM_STARTUP_TIMEOUT_S", "0"),
        ("AVATARCHAT_HISTORY_TTL_S", "0"),
        ("AVATARCHAT_LLM_TEMPERATURE", "hot"),
        ("AVATARCHAT_LLM_TEMPERATURE", "-1"),
        ("AVATARCHAT_LLM_MAX_TOKENS", "0"),
        ("AVATARCHAT_LLM_MAX_INPUT_CHARS", "lots"),
        ("AVATARCHAT_LLM_HISTORY", "redis"),
        ("AVATARCHAT_LLM_HISTORY_WINDOW", "-2"),
        ("AVATARCHAT_LLM_HISTORY_MAX_MESSAGES", "1"),
        ("AVATARCHAT_LLM_MODEL_PATH", "/nonexistent/model.gguf"),
        ("AVATARCHAT_LLM_THREADS", "0"),
        ("AVATARCHAT_LLM_CONTEXT_TOKENS", "10"),
        ("AVATARCHAT_LLM_REPEAT_PENALTY", "0.5"),
        ("AVATARCHAT_LLM_MAX_QUEUE", "-1"),
        ("AVATARCHAT_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LlmConfig.from_env({name: value})


def test_history_limit_must_hold_the_window() -> None:
    with pytest.raises(ConfigError, match="AVATARCHAT_LLM_HISTORY_MAX_MESSAGES"):
        LlmConfig.from_env(
            {
                "AVATARCHAT_LLM_HISTORY_WINDOW": "20",
                "AVATARCHAT_LLM_HISTORY_MAX_MESSAGES": "10",
            }
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AVATARCHAT_GROQ_BASE_URL", "localhost:1"),
        ("AVATARCHAT_LLM_GROQ_TIMEOUT_S", "0"),
        ("AVATARCHAT_LLM_GROQ_MAX_RETRIES", "x"),
    ],
)
def test_bad_groq_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LlmConfig.from_env({"AVATARCHAT_LLM_BACKEND": "groq", "GROQ_API_KEY": "k", name: value})
