"""Backend ``groq``: ``ChatGroq`` (langchain-groq) streaming, with a model fallback list.

Groq retires models (``llama3-8b-8192`` is gone), so the service is given a list: when Groq
answers that a model is decommissioned (400 ``model_decommissioned``) or unknown (404
``model_not_found``) before any text has streamed, the next model is tried, the switch is
logged, and later requests start from the model that worked. Provider errors become
``avatarchat.errors`` (and so gRPC codes): a bad key UNAUTHENTICATED, a rate limit
RESOURCE_EXHAUSTED with the retry-after, a timeout DEADLINE_EXCEEDED, anything else UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import groq
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_groq import ChatGroq
from pydantic import ConfigDict, PrivateAttr, SecretStr

from avatarchat import errors, log

from ..config import GroqConfig

_log = log.get("avatarchat.llm.groq")

MODEL_GONE_CODES = {"model_decommissioned", "model_not_found"}


def build_chat_models(
    config: GroqConfig, *, temperature: float, max_tokens: int, http_client: Any
) -> list[ChatGroq]:
    """One ChatGroq per configured model, sharing ``http_client`` (a ``httpx.AsyncClient``
    the caller owns and closes)."""
    return [
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


def _error_body(exc: groq.APIError) -> dict[str, Any]:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body)
    return inner if isinstance(inner, dict) else {}


def is_model_gone(exc: BaseException) -> bool:
    if not isinstance(exc, groq.BadRequestError | groq.NotFoundError):
        return False
    code = _error_body(exc).get("code")
    return code in MODEL_GONE_CODES or (
        isinstance(exc, groq.NotFoundError) and "model" in str(exc).lower()
    )


def _retry_after_s(exc: groq.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def service_error(exc: BaseException) -> errors.ServiceError:
    """The domain error (and so the gRPC status) for a Groq SDK exception."""
    if isinstance(exc, errors.ServiceError):
        return exc
    detail = _error_body(exc).get("message") if isinstance(exc, groq.APIError) else None
    detail = detail or str(exc) or type(exc).__name__
    if isinstance(exc, groq.AuthenticationError):
        return errors.Unauthenticated(f"Groq rejected the API key (GROQ_API_KEY): {detail}")
    if isinstance(exc, groq.PermissionDeniedError):
        return errors.PermissionDenied(f"Groq refused the request: {detail}")
    if isinstance(exc, groq.RateLimitError):
        retry_after = _retry_after_s(exc)
        return errors.ResourceExhausted(f"Groq rate limit reached: {detail}", retry_after)
    if isinstance(exc, groq.APITimeoutError | TimeoutError):
        return errors.DeadlineExceeded(
            "Groq did not answer in time (AVATARCHAT_LLM_GROQ_TIMEOUT_S)"
        )
    if isinstance(exc, groq.APIConnectionError):
        return errors.Unavailable(f"cannot reach Groq: {detail}")
    if is_model_gone(exc):
        return errors.Unavailable(f"no configured Groq model is available: {detail}")
    if isinstance(exc, groq.APIStatusError):
        return errors.Unavailable(f"Groq error {exc.status_code}: {detail}")
    return errors.Unavailable(f"Groq call failed: {detail}")


class GroqFallbackChatModel(BaseChatModel):
    """Streams from the first ChatGroq model that exists, in the configured order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: list[ChatGroq]
    _current: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "avatarchat-groq-fallback"

    @property
    def model_name(self) -> str:
        return self.models[self._current].model_name

    def _advance(self, index: int, exc: BaseException) -> bool:
        """After ``exc`` from model ``index``: True if another model should be tried."""
        if not is_model_gone(exc) or index + 1 >= len(self.models):
            return False
        _log.warning(
            "llm.groq.model_unavailable",
            model=self.models[index].model_name,
            next_model=self.models[index + 1].model_name,
            error=_error_body(exc).get("message") or str(exc),  # type: ignore[arg-type]
        )
        self._current = max(self._current, index + 1)
        return True

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        index = self._current
        while True:
            started = False
            try:
                async for chunk in self.models[index]._astream(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                ):
                    started = True
                    yield chunk
                return
            except Exception as exc:
                if started or not self._advance(index, exc):
                    raise service_error(exc) from exc
                index += 1

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        index = self._current
        while True:
            started = False
            try:
                for chunk in self.models[index]._stream(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                ):
                    started = True
                    yield chunk
                return
            except Exception as exc:
                if started or not self._advance(index, exc):
                    raise service_error(exc) from exc
                index += 1

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        usages = [getattr(c.message, "usage_metadata", None) for c in chunks]
        usage = next((u for u in reversed(usages) if u), None)
        message = AIMessage(
            content="".join(c.text for c in chunks),
            usage_metadata=usage,  # type: ignore[arg-type]
            response_metadata=chunks[-1].message.response_metadata if chunks else {},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
