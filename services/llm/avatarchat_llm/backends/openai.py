"""Backends ``openai`` and ``local``: ``ChatOpenAI`` (langchain-openai) streaming.

``openai`` reaches any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, LM Studio,
llama-server, OpenAI) with a model fallback list; ``local`` reaches the llama-server that this
service supervises (``engine``), with llama.cpp's own sampling options in the request body.
The list is the shared one (``fallback``); errors, timeouts and metrics are the vendor base's
(``provider_errors``, ``avatarchat.vendor_http``).
"""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from avatarchat.vendor_http import CallMetrics

from ..config import LocalConfig, OpenAIConfig
from ..fallback import FallbackChatModel
from ..provider_errors import ChatProvider

OPENAI = ChatProvider(
    "the OpenAI-compatible server",
    key_setting="OPENAI_API_KEY",
    timeout_setting="AVATARCHAT_LLM_OPENAI_TIMEOUT_S",
    url_setting="AVATARCHAT_OPENAI_BASE_URL",
    label="openai",
)
LOCAL = ChatProvider(
    "the local llama-server",
    key_setting="none: the engine has no key",
    timeout_setting="the RPC deadline",
    label="local",
)


def _chat_openai(
    model: str, *, base_url: str, api_key: str, http_client: Any, **options: Any
) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key),
        streaming=True,
        stream_usage=True,  # token counts (and cached prompt tokens) on the last chunk
        http_async_client=http_client,
        **options,
    )


def build_openai(
    config: OpenAIConfig,
    *,
    temperature: float,
    max_tokens: int,
    http_client: Any,
    metrics: CallMetrics | None = None,
) -> FallbackChatModel:
    models = [
        _chat_openai(
            model,
            base_url=config.base_url,
            api_key=config.api_key,
            http_client=http_client,
            temperature=temperature,
            max_completion_tokens=max_tokens,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        for model in config.models
    ]
    provider = OPENAI.using(base_url=config.base_url, metrics=metrics)
    return FallbackChatModel(models=models, provider=provider, log_name="openai")


def build_local(
    config: LocalConfig,
    base_url: str,
    *,
    api_key: str,
    model_name: str,
    temperature: float,
    max_tokens: int,
    http_client: Any,
    metrics: CallMetrics | None = None,
) -> FallbackChatModel:
    """ChatOpenAI against the supervised llama-server at ``base_url`` (``http://host:port/v1``).

    ``cache_prompt`` keeps each slot's prompt in its KV cache, so a session's next turn only
    evaluates what is new; llama-server picks the slot whose cached prompt shares the longest
    prefix with the request, and keeps idle slots' prompts in its RAM cache (``--cache-ram``).
    """
    model = _chat_openai(
        model_name,
        base_url=base_url,
        api_key=api_key,
        http_client=http_client,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=config.seed,
        timeout=None,  # the gRPC deadline bounds a turn; a cancelled RPC closes the stream
        max_retries=0,  # the engine is ours: a failure is reported, not hidden
        extra_body={"cache_prompt": True, "repeat_penalty": config.repeat_penalty},
    )
    provider = LOCAL.using(base_url=base_url, metrics=metrics)
    return FallbackChatModel(models=[model], provider=provider, log_name="local")
