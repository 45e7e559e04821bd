"""The ``avatarchat.v1.LlmService`` gRPC servicer and the app that wires it together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import grpc
from langchain_core.language_models import BaseChatModel

from avatarchat import bus, log
from avatarchat.errors import InvalidArgument, require_id
from avatarchat.grpc_server import GrpcHost
from avatarchat.v1 import llm_pb2, llm_pb2_grpc

from .chain import Conversation, Delta
from .config import LlmConfig
from .history import MemoryHistoryStore, NatsHistoryStore

SERVICE_NAME = "avatarchat.v1.LlmService"
_log = log.get("avatarchat.llm")

_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}


class LlmServicer(llm_pb2_grpc.LlmServiceServicer):
    def __init__(self, conversation: Conversation, max_input_chars: int) -> None:
        self._conversation = conversation
        self._max_input_chars = max_input_chars

    def _check_text(self, text: str) -> str:
        if not text.strip():
            raise InvalidArgument("text must not be blank")
        if len(text) > self._max_input_chars:
            raise InvalidArgument(
                f"text is {len(text)} characters; at most {self._max_input_chars} are accepted"
            )
        return text

    async def Reply(
        self, request: llm_pb2.ReplyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ReplyEvent]:
        session_id = require_id("session_id", request.session_id)
        require_id("turn_id", request.turn_id)
        text = self._check_text(request.text)
        async for event in self._conversation.reply(session_id, text):
            if isinstance(event, Delta):
                yield llm_pb2.ReplyEvent(delta=llm_pb2.ReplyDelta(text=event.text))
            else:
                yield llm_pb2.ReplyEvent(
                    done=llm_pb2.ReplyDone(
                        text=event.text,
                        prompt_tokens=event.prompt_tokens,
                        completion_tokens=event.completion_tokens,
                        model=event.model,
                        finish_reason=event.finish_reason,
                    )
                )

    async def GetHistory(
        self, request: llm_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.GetHistoryResponse:
        session_id = require_id("session_id", request.session_id)
        self._conversation.check_ready()
        messages = await self._conversation.store.load(session_id)
        return llm_pb2.GetHistoryResponse(
            messages=[llm_pb2.ChatMessage(role=_ROLES[m.role], text=m.text) for m in messages]
        )

    async def ResetHistory(
        self, request: llm_pb2.ResetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ResetHistoryResponse:
        session_id = require_id("session_id", request.session_id)
        self._conversation.check_ready()
        removed = await self._conversation.store.reset(session_id)
        return llm_pb2.ResetHistoryResponse(removed=removed)


class LlmApp:
    """Builds the backend, the history store and the gRPC host; ``load`` readies them.

    Everything with a lifetime (the NATS connection, the model's thread) is registered on
    ``stack``, which the caller closes after the server has stopped.
    """

    def __init__(self, config: LlmConfig, stack: AsyncExitStack, *, host: str = "[::]") -> None:
        self.config = config
        self._stack = stack
        model, model_name, self._load_model = self._build_model()
        self.conversation = Conversation(
            model=model,
            system_prompt=config.system_prompt,
            store=MemoryHistoryStore(config.history_max_messages),
            window=config.history_window,
            default_model_name=model_name,
        )
        servicer = LlmServicer(self.conversation, config.max_input_chars)
        self.host = GrpcHost(
            port=config.port,
            host=host,
            service_names=[SERVICE_NAME],
            register=lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server),
        )

    def _build_model(self) -> tuple[BaseChatModel, str, Callable[[], None] | None]:
        config = self.config
        if config.groq is not None:
            import groq

            from .backends.groq import GroqFallbackChatModel, build_chat_models

            http_client = groq.DefaultAsyncHttpxClient()
            self._stack.push_async_callback(http_client.aclose)
            models = build_chat_models(
                config.groq,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                http_client=http_client,
            )
            return GroqFallbackChatModel(models=models), config.groq.models[0], None
        from .backends.local import LlamaChatModel, LlamaRunner

        assert config.local is not None
        runner = LlamaRunner(
            config.local, temperature=config.temperature, max_tokens=config.max_tokens
        )
        self._stack.callback(runner.close)
        return LlamaChatModel(runner=runner), runner.model_name, runner.load

    async def load(self) -> None:
        """Connects the history store and loads the model (off the event loop)."""
        if self.config.history == "nats":
            nc = await bus.connect(self.config.runtime.nats_url, name="avatarchat-llm")
            self._stack.push_async_callback(nc.drain)
            kv = await bus.ensure_history_kv(nc.jetstream(), bus.Retention())
            self.conversation.store = NatsHistoryStore(kv, self.config.history_max_messages)
        if self._load_model is not None:
            await asyncio.to_thread(self._load_model)
        self.conversation.ready = True
        _log.info(
            "llm.ready",
            backend=self.config.backend,
            history=self.config.history,
            window=self.config.history_window,
        )
