"""A LangChain chat model over a list of models: the first that exists answers.

Shared by every backend. Providers retire models (Groq's ``llama3-8b-8192`` is gone), so each
backend is given a list: when the provider answers that a model is decommissioned or unknown
before any text has streamed, the next model is tried, the switch is logged, and later
requests start from the model that worked. Each request is one call of the vendor base
(``ChatProvider.call``), which maps whatever fails in the end to its domain error, counts the
outcome in the metrics, and lets a cancelled or closed stream go untouched.

LangChain's own ``with_fallbacks`` is not used: it decides by exception type rather than by
what the provider said, raises the first error rather than the last, and starts every request
from the first model again.

Streaming (``_astream``) is what the service uses; ``_generate`` (``invoke``, and ``ainvoke``
through LangChain's executor) asks each model for its whole answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

from avatarchat import log

from .provider_errors import ChatProvider, error_body, is_model_gone

_log = log.get("avatarchat.llm.fallback")


def _model_name(model: BaseChatModel) -> str:
    return str(getattr(model, "model_name", None) or getattr(model, "model", "?"))


class FallbackChatModel(BaseChatModel):
    """Streams from the first model of ``models`` that exists, in order."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: Sequence[BaseChatModel]
    provider: ChatProvider
    log_name: str  # e.g. "groq": logs "llm.groq.model_unavailable"
    _current: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return f"avatarchat-{self.log_name}-fallback"

    @property
    def model_name(self) -> str:
        return _model_name(self.models[self._current])

    def _next_model(self, index: int, exc: Exception) -> int:
        """After ``exc`` from model ``index``, the model to try next; re-raises ``exc`` when
        there is none (it is not a missing model, or the list is done)."""
        if not is_model_gone(exc) or index + 1 >= len(self.models):
            raise exc
        _log.warning(
            f"llm.{self.log_name}.model_unavailable",
            model=_model_name(self.models[index]),
            next_model=_model_name(self.models[index + 1]),
            error=error_body(exc).get("message") or str(exc),
        )
        self._current = max(self._current, index + 1)
        return index + 1

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self.provider.call():
            index = self._current
            while True:
                stream = self.models[index]._astream(messages, stop, run_manager, **kwargs)
                async with aclosing(stream):  # type: ignore[type-var]  # an async generator
                    try:
                        first = await anext(stream)
                    except StopAsyncIteration:
                        return
                    except Exception as exc:  # before any text: maybe the next model has it
                        index = self._next_model(index, exc)
                        continue
                    yield first
                    async for chunk in stream:  # once text has streamed, a failure is final
                        yield chunk
                    return

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self.provider.call():
            index = self._current
            while True:
                try:
                    return self.models[index]._generate(messages, stop, run_manager, **kwargs)
                except Exception as exc:
                    index = self._next_model(index, exc)
