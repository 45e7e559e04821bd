"""Backend ``local``: a GGUF model run by llama-cpp-python, as a LangChain chat model.

``LlamaRunner`` owns the model and the one thread that runs it. Requests wait in FIFO order
(a bounded queue: past ``max_queue`` waiting requests a new one gets RESOURCE_EXHAUSTED), one
generation runs at a time, tokens come back to the event loop through an ``asyncio.Queue``,
and a caller that goes away (a cancelled RPC) stops its generation at the next token.
``LlamaChatModel`` is the small LangChain adapter around it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from avatarchat import log
from avatarchat.errors import InvalidArgument, ResourceExhausted

from ..config import LocalConfig

_log = log.get("avatarchat.llm.local")

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


@dataclass(frozen=True)
class Piece:
    """One item a generation sends back: text, or (last) the finish reason and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LlamaRunner:
    """The loaded model, its one generation thread and the queue in front of it."""

    def __init__(self, config: LocalConfig, *, temperature: float, max_tokens: int) -> None:
        self.config = config
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.model_name = Path(config.model_path).name
        self._llama: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()  # one generation at a time, whoever calls
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._admitted = 0  # running + waiting; guarded by _count_lock
        self._count_lock = threading.Lock()

    def load(self) -> None:
        """Loads the GGUF file (blocking: call it off the event loop)."""
        from llama_cpp import Llama, llama_chat_format

        self._llama = Llama(
            model_path=str(self.config.model_path),
            n_ctx=self.config.context_tokens,
            n_threads=self.config.threads,
            seed=self.config.seed,
            verbose=False,
        )
        template = self._llama.metadata.get("tokenizer.chat_template")
        if template:
            eos = self._llama._model.token_get_text(self._llama.token_eos())
            bos = self._llama._model.token_get_text(self._llama.token_bos())
            self._formatter = llama_chat_format.Jinja2ChatFormatter(template, eos, bos)
        _log.info(
            "llm.local.loaded",
            model=self.model_name,
            chat_format=self._llama.chat_format,
            n_ctx=self._llama.n_ctx(),
            threads=self.config.threads,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    # -- the generation itself (on the calling thread) ------------------------------------

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        if self._formatter is not None:
            prompt = self._formatter(messages=list(messages)).prompt
        else:
            prompt = "\n".join(m["content"] for m in messages)
        return len(self._llama.tokenize(prompt.encode(), add_bos=False, special=True))

    def fit_to_context(self, messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], int]:
        """Drops the oldest history messages until the prompt and the reply fit the context."""
        budget = self._llama.n_ctx() - min(self.max_tokens, self._llama.n_ctx() // 4)
        fitted = list(messages)
        tokens = self.count_prompt_tokens(fitted)
        while tokens > budget and len(fitted) > 2:
            del fitted[1 if fitted[0]["role"] == "system" else 0]
            tokens = self.count_prompt_tokens(fitted)
        if tokens > budget:
            raise InvalidArgument(
                f"the message is too long for the model: {tokens} tokens, the context holds "
                f"{budget} (AVATARCHAT_LLM_CONTEXT_TOKENS)"
            )
        if len(fitted) < len(messages):
            _log.info("llm.local.history_trimmed", dropped=len(messages) - len(fitted))
        return fitted, tokens

    def generate(
        self, messages: list[dict[str, str]], cancel: threading.Event
    ) -> Generator[Piece, None, None]:
        """Streams one reply; stops early once ``cancel`` is set. Blocking."""
        if self._llama is None:
            raise RuntimeError("the model is not loaded")
        with self._lock:
            started = time.perf_counter()
            fitted, prompt_tokens = self.fit_to_context(messages)
            stream = self._llama.create_chat_completion(
                messages=fitted,
                stream=True,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                repeat_penalty=self.config.repeat_penalty,
            )
            parts: list[str] = []
            finish_reason: str | None = None
            first_token_s: float | None = None
            outcome = "failed"
            try:
                for chunk in stream:
                    if cancel.is_set():
                        break
                    choice = chunk["choices"][0]
                    content = choice["delta"].get("content")
                    if content:
                        first_token_s = first_token_s or time.perf_counter() - started
                        parts.append(content)
                        yield Piece(text=content)
                    finish_reason = choice.get("finish_reason") or finish_reason
                outcome = "done"
            finally:
                stream.close()
                text = "".join(parts)
                completion_tokens = len(self._llama.tokenize(text.encode(), add_bos=False))
                elapsed = time.perf_counter() - started
                _log.info(
                    "llm.local.generation",
                    outcome="cancelled" if cancel.is_set() else outcome,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    first_token_ms=round((first_token_s or elapsed) * 1000, 1),
                    duration_ms=round(elapsed * 1000, 1),
                    tokens_per_s=round(completion_tokens / elapsed, 1) if elapsed else None,
                )
        if cancel.is_set():
            return
        yield Piece(
            finish_reason=finish_reason or "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    # -- the asynchronous front: queue, thread hand-off, cancellation ---------------------

    def _admit(self) -> None:
        with self._count_lock:
            if self._admitted > self.config.max_queue:  # one runs, max_queue wait
                raise ResourceExhausted(
                    f"the local model is busy: {self.config.max_queue} requests are already "
                    "waiting (AVATARCHAT_LLM_MAX_QUEUE); try again shortly",
                    retry_after_s=1.0,
                )
            self._admitted += 1

    def _release(self, _future: object = None) -> None:
        with self._count_lock:
            self._admitted -= 1

    async def astream(self, messages: list[dict[str, str]]) -> AsyncIterator[Piece]:
        self._admit()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()

        def push(item: Piece | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancel.set()

        def job() -> None:
            try:
                for piece in self.generate(messages, cancel):
                    push(piece)
                push(None)
            except BaseException as exc:
                push(exc)

        try:
            future = self._executor.submit(job)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            future.cancel()  # still waiting its turn: it never runs


def to_llama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    converted = []
    for message in messages:
        role = _ROLES.get(message.type)
        if role is None:
            raise InvalidArgument(f"the local model cannot take {message.type} messages")
        converted.append({"role": role, "content": message.text})
    return converted


def _last_chunk(piece: Piece, model_name: str) -> ChatGenerationChunk:
    usage = {
        "input_tokens": piece.prompt_tokens,
        "output_tokens": piece.completion_tokens,
        "total_tokens": piece.prompt_tokens + piece.completion_tokens,
    }
    message = AIMessageChunk(
        content="",
        usage_metadata=usage,  # type: ignore[arg-type]
        response_metadata={"finish_reason": piece.finish_reason, "model_name": model_name},
    )
    return ChatGenerationChunk(message=message)


class LlamaChatModel(BaseChatModel):
    """LangChain chat model over a ``LlamaRunner``; stop words are the chat template's own."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runner: LlamaRunner

    @property
    def _llm_type(self) -> str:
        return "avatarchat-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.runner.model_name,
            "temperature": self.runner.temperature,
            "max_tokens": self.runner.max_tokens,
        }

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cancel = threading.Event()
        pieces = self.runner.generate(to_llama_messages(messages), cancel)
        try:
            for piece in pieces:
                if piece.finish_reason is None:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.text))
                    if run_manager:
                        run_manager.on_llm_new_token(piece.text, chunk=chunk)
                    yield chunk
                else:
                    yield _last_chunk(piece, self.runner.model_name)
        finally:
            cancel.set()
            pieces.close()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for piece in self.runner.astream(to_llama_messages(messages)):
            if piece.finish_reason is None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.text))
                if run_manager:
                    await run_manager.on_llm_new_token(piece.text, chunk=chunk)
                yield chunk
            else:
                yield _last_chunk(piece, self.runner.model_name)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        last = chunks[-1].message
        message = AIMessage(
            content="".join(c.text for c in chunks),
            usage_metadata=getattr(last, "usage_metadata", None),
            response_metadata=last.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
