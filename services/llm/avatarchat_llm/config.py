"""The llm service's settings, read once from the environment (every variable: docs/llm.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from avatarchat import bus, cpu
from avatarchat.config import ConfigError, Env, RuntimeConfig

from .models import DEFAULT_MODEL, LLAMA_CPP_DIR, MODELS, ModelSpec

BACKENDS = ("local", "openai", "groq")
HISTORY_STORES = ("memory", "nats")

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly avatar having a spoken conversation. Keep answers short: one or two "
    "plain sentences, no markdown, no lists, no emoji, since everything you say is read aloud."
)
DEFAULT_GROQ_MODEL = "llama-3.1-8b-instant"
DEFAULT_GROQ_FALLBACKS = ("llama-3.3-70b-versatile",)
DEFAULT_LLAMA_SERVER = LLAMA_CPP_DIR / "llama-server"


@dataclass(frozen=True)
class LocalConfig:
    """``AVATARCHAT_LLM_BACKEND=local``: a GGUF model served by a supervised llama-server."""

    binary: Path
    model_path: Path
    model: ModelSpec | None  # None: any GGUF from AVATARCHAT_LLM_MODEL_PATH, not checked
    slots: int
    threads: int
    context_tokens: int  # per slot
    repeat_penalty: float
    seed: int
    cache_ram_mib: int
    startup_timeout_s: float
    max_restarts: int

    @property
    def quantizer(self) -> Path:
        """llama-quantize, which the build installs next to llama-server (models.requantize)."""
        return self.binary.with_name("llama-quantize")

    @classmethod
    def from_env(cls, env: Env) -> LocalConfig:
        binary = Path(env.str("AVATARCHAT_LLAMA_SERVER", str(DEFAULT_LLAMA_SERVER)))
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise ConfigError(
                f"AVATARCHAT_LLAMA_SERVER: no llama-server executable at {binary} "
                "(build it with `make` or deploy/llama-server/build.sh)"
            )
        override = env.optional_str("AVATARCHAT_LLM_MODEL_PATH")
        if override:
            model, model_path = None, Path(override)
            if not model_path.is_file():
                raise ConfigError(f"AVATARCHAT_LLM_MODEL_PATH: no GGUF file at {model_path}")
        else:
            model = MODELS[env.choice("AVATARCHAT_LLM_MODEL", DEFAULT_MODEL, tuple(MODELS))]
            model_path = model.default_path()
        return cls(
            binary=binary,
            model_path=model_path,
            model=model,
            slots=env.int("AVATARCHAT_LLM_SLOTS", 8, min=1, max=256),
            threads=env.int("AVATARCHAT_LLM_THREADS", cpu.default_threads(), min=1, max=256),
            context_tokens=env.int("AVATARCHAT_LLM_CONTEXT_TOKENS", 2048, min=256, max=131072),
            repeat_penalty=env.float("AVATARCHAT_LLM_REPEAT_PENALTY", 1.1, min=1.0, max=2.0),
            seed=env.int("AVATARCHAT_LLM_SEED", 42, min=0, max=2**31 - 1),
            cache_ram_mib=env.int("AVATARCHAT_LLM_CACHE_RAM_MIB", 256, min=0, max=1 << 20),
            startup_timeout_s=env.float(
                "AVATARCHAT_LLM_STARTUP_TIMEOUT_S", 120.0, min=1.0, max=3600.0
            ),
            max_restarts=env.int("AVATARCHAT_LLM_MAX_RESTARTS", 3, min=0, max=100),
        )


def _http_url(env: Env, name: str) -> str | None:
    url = env.optional_str(name)
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must start with http:// or https://, got {url!r}")
    return url.rstrip("/") if url else None


@dataclass(frozen=True)
class OpenAIConfig:
    """``AVATARCHAT_LLM_BACKEND=openai``: any OpenAI-compatible chat completions endpoint
    (vLLM, Ollama, LM Studio, llama-server, OpenAI) through ``ChatOpenAI``."""

    base_url: str
    api_key: str = field(repr=False)
    models: tuple[str, ...]  # the configured model first, then the fallbacks
    timeout_s: float
    max_retries: int

    @classmethod
    def from_env(cls, env: Env) -> OpenAIConfig:
        base_url = _http_url(env, "AVATARCHAT_OPENAI_BASE_URL")
        if base_url is None:
            raise ConfigError(
                "AVATARCHAT_OPENAI_BASE_URL is required when AVATARCHAT_LLM_BACKEND=openai "
                "(e.g. http://localhost:11434/v1 for Ollama, https://api.openai.com/v1)"
            )
        model = env.str("AVATARCHAT_LLM_OPENAI_MODEL", "")
        if not model:
            raise ConfigError("AVATARCHAT_LLM_OPENAI_MODEL is required when backend is openai")
        fallbacks = env.list("AVATARCHAT_LLM_OPENAI_FALLBACK_MODELS")
        return cls(
            base_url=base_url,
            # Local servers (vLLM, Ollama, llama-server) take any key; the SDK needs one.
            api_key=env.str("OPENAI_API_KEY", "not-needed"),
            models=tuple(dict.fromkeys((model, *fallbacks))),
            timeout_s=env.float("AVATARCHAT_LLM_OPENAI_TIMEOUT_S", 30.0, min=0.1, max=600),
            max_retries=env.int("AVATARCHAT_LLM_OPENAI_MAX_RETRIES", 1, min=0, max=10),
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
        base_url = _http_url(env, "AVATARCHAT_GROQ_BASE_URL")
        model = env.str("AVATARCHAT_LLM_GROQ_MODEL", DEFAULT_GROQ_MODEL)
        fallbacks = env.list("AVATARCHAT_LLM_GROQ_FALLBACK_MODELS", DEFAULT_GROQ_FALLBACKS)
        return cls(
            api_key=api_key,
            models=tuple(dict.fromkeys((model, *fallbacks))),
            base_url=base_url,
            timeout_s=env.float("AVATARCHAT_LLM_GROQ_TIMEOUT_S", 30.0, min=0.1, max=600),
            max_retries=env.int("AVATARCHAT_LLM_GROQ_MAX_RETRIES", 1, min=0, max=10),
        )


@dataclass(frozen=True)
class LlmConfig:
    """Everything the llm service reads from the environment.

    ``max_concurrent`` bounds generations running at once for the remote backends; for
    ``local`` the bound is the engine's slots. Past ``max_queue`` waiting requests a new one
    gets RESOURCE_EXHAUSTED with a retry-after.
    """

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
    retention: bus.Retention  # of the NATS history bucket (AVATARCHAT_HISTORY_TTL_S, ...)
    max_queue: int
    max_concurrent: int
    metrics_port: int
    local: LocalConfig | None
    openai: OpenAIConfig | None
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
            retention=bus.Retention.from_env(environ),
            max_queue=env.int("AVATARCHAT_LLM_MAX_QUEUE", 16, min=0, max=10_000),
            max_concurrent=env.int("AVATARCHAT_LLM_MAX_CONCURRENT", 32, min=1, max=10_000),
            # 0: a free port (logged), so several stacks on one machine never collide; the image
            # and the k8s manifest set 9464.
            metrics_port=env.int("AVATARCHAT_LLM_METRICS_PORT", 0, min=0, max=65535),
            local=LocalConfig.from_env(env) if backend == "local" else None,
            openai=OpenAIConfig.from_env(env) if backend == "openai" else None,
            groq=GroqConfig.from_env(env) if backend == "groq" else None,
        )


def concurrency(config: LlmConfig) -> int:
    """How many generations may run at once: the engine's slots, or the remote bound."""
    return config.local.slots if config.local is not None else config.max_concurrent
