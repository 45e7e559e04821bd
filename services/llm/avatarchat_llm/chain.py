"""The conversation chain: system prompt, the session's history window, the user's words, the model.

It is LangChain's ``ChatPromptTemplate | chat model``; the history is loaded from our store
before a reply and the turn is stored only once the reply has completed, so a cancelled or
failed reply leaves the history as it was. A reply holds a place in the ``SlotGate`` while it
generates: when the caller goes away (a cancelled RPC, a barge-in), the stream is closed, which
closes the HTTP stream to the engine (llama-server then frees its slot), and the place goes to
the next request in line at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import Runnable

from avatarchat import log
from avatarchat.errors import Unavailable

from .history import HistoryStore, Message, window_of
from .metrics import LlmMetrics
from .slots import SlotGate

_log = log.get("avatarchat.llm.chain")


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str
    cached_prompt_tokens: int = 0


def build_chain(system_prompt: str, model: BaseChatModel) -> Runnable:
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "{system_prompt}"),
            MessagesPlaceholder("history"),
            ("human", "{input}"),
        ]
    ).partial(system_prompt=system_prompt)
    return prompt | model


def to_langchain(messages: list[Message]) -> list[BaseMessage]:
    return [HumanMessage(m.text) if m.role == "user" else AIMessage(m.text) for m in messages]


class Conversation:
    """Replies within a session, with memory."""

    def __init__(
        self,
        *,
        model: BaseChatModel,
        system_prompt: str,
        store: HistoryStore,
        window: int,
        default_model_name: str,
        gate: SlotGate,
        metrics: LlmMetrics,
    ) -> None:
        self._chain = build_chain(system_prompt, model)
        self.store = store
        self.ready = False  # set once the model and the store are ready
        self.engine_check: Callable[[], None] = lambda: None  # raises while the engine is down
        self._window = window
        self._default_model_name = default_model_name
        self._gate = gate
        self._metrics = metrics

    def check_ready(self, *, engine: bool = True) -> None:
        """Raises UNAVAILABLE while starting, or (``engine``) while the local engine is down;
        history works without the engine."""
        if not self.ready:
            raise Unavailable("the llm service is still starting (loading its model); retry soon")
        if engine:
            self.engine_check()

    async def reply(self, session_id: str, text: str) -> AsyncIterator[Delta | Done]:
        """Streams the reply as deltas; once it is complete, stores the turn and yields ``Done``."""
        self.check_ready()
        history = window_of(await self.store.load(session_id), self._window)
        parts: list[str] = []
        usage: dict[str, object] = {}
        finish_reason, model_name = "stop", self._default_model_name
        started = time.perf_counter()
        first_token: float | None = None
        outcome = "cancelled"
        try:
            async with self._gate.slot():
                self.engine_check()
                stream = self._chain.astream({"history": to_langchain(history), "input": text})
                async with aclosing(stream):  # type: ignore[type-var]  # an async generator
                    async for chunk in stream:
                        if not isinstance(chunk, AIMessageChunk):
                            continue
                        if chunk.text:
                            if first_token is None:
                                first_token = time.perf_counter()
                                self._metrics.time_to_first_token.observe(first_token - started)
                            parts.append(chunk.text)
                            yield Delta(chunk.text)
                        if chunk.usage_metadata:
                            usage = dict(chunk.usage_metadata)
                        metadata = chunk.response_metadata
                        finish_reason = metadata.get("finish_reason") or finish_reason
                        model_name = metadata.get("model_name") or model_name
            outcome = "done"
        except Exception:
            outcome = "failed"
            raise
        finally:
            self._metrics.replies.labels(outcome).inc()
        prompt_tokens = int(usage.get("input_tokens", 0))  # type: ignore[call-overload]
        completion_tokens = int(usage.get("output_tokens", 0))  # type: ignore[call-overload]
        details: dict[str, int] = usage.get("input_token_details") or {}  # type: ignore[assignment]
        cached = int(details.get("cache_read") or 0)
        self._record(prompt_tokens, completion_tokens, cached, first_token)
        reply = "".join(parts)
        await self.store.append(session_id, [Message("user", text), Message("assistant", reply)])
        _log.info(
            "llm.reply",
            history_messages=len(history),
            chars=len(reply),
            finish_reason=finish_reason,
            model=model_name,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            completion_tokens=completion_tokens,
        )
        yield Done(
            text=reply,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=model_name,
            finish_reason="length" if finish_reason == "length" else "stop",
            cached_prompt_tokens=cached,
        )

    def _record(self, prompt: int, completion: int, cached: int, first: float | None) -> None:
        metrics = self._metrics
        metrics.prompt_tokens.inc(prompt)
        metrics.completion_tokens.inc(completion)
        metrics.cached_prompt_tokens.inc(cached)
        if first is not None and completion > 1:
            elapsed = time.perf_counter() - first
            if elapsed > 0:
                metrics.tokens_per_second.observe((completion - 1) / elapsed)
