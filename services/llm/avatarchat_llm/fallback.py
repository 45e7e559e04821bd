"""A LangChain chat model over a list of models: the first that exists answers.

Shared by every backend. Providers retire models (Groq's ``llama3-8b-8192`` is gone), so each
backend is given a list: when the provider answers that a model is decommissioned or unknown
before any text has streamed, the next model is tried, the switch is logged, and later
requests start from the model that worked. Whatever fails in the end is raised as the domain
error ``provider_errors.service_error`` picks, so all backends map errors in the same place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

from avatarchat import log

from .provider_errors import Provider, error_body, is_model_gone, service_error

_log = log.get("avatarchat.llm.fallback")


def _model_name(model: BaseChatModel) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", "?"))


class FallbackChatModel(BaseChatModel):
    """Streams from the first model of ``models`` that exists, in order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: Sequence[BaseChatModel]
    provider: Provider
    log_name: str  # e.g. "groq": logs "llm.groq.model_unavailable"
    _current: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return f"avatarchat-{self.log_name}-fallback"

    @property
    def model_name(self) -> str:
        return _model_name(self.models[self._current])

    def _advance(self, index: int, exc: BaseException) -> bool:
        """After ``exc`` from model ``index``: True if another model should be tried."""
        if not is_model_gone(exc) or index + 1 >= len(self.models):
            return False
        _log.warning(
            f"llm.{self.log_name}.model_unavailable",
            model=_model_name(self.models[index]),
            next_model=_model_name(self.models[index + 1]),
            error=error_body(exc).get("message") or str(exc),
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
                    raise service_error(exc, self.provider) from exc
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
                    raise service_error(exc, self.provider) from exc
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
