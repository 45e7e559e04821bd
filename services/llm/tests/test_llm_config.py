"""LlmConfig: defaults, overrides, and bad values that fail naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avatarchat.config import ConfigError
from avatarchat_llm.config import DEFAULT_SYSTEM_PROMPT, LlmConfig, bundled_smollm2


def test_defaults() -> None:
    config = LlmConfig.from_env({})
    assert config.port == 50052
    assert config.backend == "local" and config.groq is None
    assert config.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert config.history == "memory"
    assert config.history_window == 12
    assert config.max_input_chars == 4000
    assert (config.temperature, config.max_tokens) == (0.0, 128)
    assert config.local is not None
    assert config.local.model_path == bundled_smollm2()
    assert config.local.threads == (os.cpu_count() or 1)


def test_the_bundled_model_is_found_without_importing_its_package() -> None:
    path = bundled_smollm2()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


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
        }
    )
    assert (config.port, config.temperature) == (6000, 0.7)
    assert config.system_prompt == "You are a pirate."
    assert (config.max_tokens, config.history, config.history_window) == (200, "nats", 4)
    assert config.local is not None
    assert (config.local.model_path, config.local.threads) == (model, 3)
    assert config.local.max_queue == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AVATARCHAT_LLM_PORT", "http"),
        ("AVATARCHAT_LLM_PORT", "70000"),
        ("AVATARCHAT_LLM_BACKEND", "openai"),
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
