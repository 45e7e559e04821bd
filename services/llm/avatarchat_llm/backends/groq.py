"""Backend ``groq``: ``ChatGroq`` (langchain-groq) streaming, with a model fallback list.

The list is the shared one (``fallback``); errors, timeouts and metrics are the vendor base's
(``provider_errors``, ``avatarchat.vendor_http``).
"""

from __future__ import annotations

from typing import Any

from langchain_groq import ChatGroq
from pydantic import SecretStr

from avatarchat.vendor_http import CallMetrics

from ..config import GroqConfig
from ..fallback import FallbackChatModel
from ..provider_errors import ChatProvider

GROQ = ChatProvider(
    "Groq",
    key_setting="GROQ_API_KEY",
    timeout_setting="AVATARCHAT_LLM_GROQ_TIMEOUT_S",
    url_setting="AVATARCHAT_GROQ_BASE_URL",
)


def build_groq(
    config: GroqConfig,
    *,
    temperature: float,
    max_tokens: int,
    http_client: Any,
    sync_http_client: Any = None,
    metrics: CallMetrics | None = None,
) -> FallbackChatModel:
    """One ChatGroq per configured model, sharing ``http_client`` (a ``httpx.AsyncClient``
    the caller owns and closes) and, for ``invoke``, ``sync_http_client`` (a ``httpx.Client``;
    the service only streams); each request is counted in ``metrics``."""
    models = [
        ChatGroq(
            model=model,
            api_key=SecretStr(config.api_key),
            base_url=config.base_url,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
            streaming=True,
            http_async_client=http_client,
            http_client=sync_http_client,
        )
        for model in config.models
    ]
    provider = GROQ.using(base_url=config.base_url, metrics=metrics)
    return FallbackChatModel(models=models, provider=provider, log_name="groq")
