"""Backend ``groq``: ``ChatGroq`` (langchain-groq) streaming, with a model fallback list.

The list and the error mapping are the shared ones (``fallback``, ``provider_errors``).
"""

from __future__ import annotations

from typing import Any

from langchain_groq import ChatGroq
from pydantic import SecretStr

from ..config import GroqConfig
from ..fallback import FallbackChatModel
from ..provider_errors import Provider

GROQ = Provider("Groq", key_setting="GROQ_API_KEY", timeout_setting="AVATARCHAT_LLM_GROQ_TIMEOUT_S")


def build_groq(
    config: GroqConfig, *, temperature: float, max_tokens: int, http_client: Any
) -> FallbackChatModel:
    """One ChatGroq per configured model, sharing ``http_client`` (a ``httpx.AsyncClient``
    the caller owns and closes)."""
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
        )
        for model in config.models
    ]
    return FallbackChatModel(models=models, provider=GROQ, log_name="groq")
