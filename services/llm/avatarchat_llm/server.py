"""The ``avatarchat.v1.LlmService`` gRPC servicer and the app that wires it together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import httpx
from langchain_core.language_models import BaseChatModel

from avatarchat import bus, log
from avatarchat.errors import InvalidArgument, require_id
from avatarchat.grpc_server import GrpcHost
from avatarchat.v1 import llm_pb2, llm_pb2_grpc

from .chain import Conversation, Delta
from .config import LlmConfig, concurrency
from .engine import LlamaServer, model_alias
from .history import MemoryHistoryStore, NatsHistoryStore
from .metrics import LlmMetrics, serve_metrics
from .models import check as check_model
from .models import ensure_file
from .slots import SlotGate

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
                        cached_prompt_tokens=event.cached_prompt_tokens,
                    )
                )

    async def GetHistory(
        self, request: llm_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.GetHistoryResponse:
        session_id = require_id("session_id", request.session_id)
        self._conversation.check_ready(engine=False)
        messages = await self._conversation.store.load(session_id)
        return llm_pb2.GetHistoryResponse(
            messages=[llm_pb2.ChatMessage(role=_ROLES[m.role], text=m.text) for m in messages]
        )

    async def ResetHistory(
        self, request: llm_pb2.ResetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ResetHistoryResponse:
        session_id = require_id("session_id", request.session_id)
        self._conversation.check_ready(engine=False)
        removed = await self._conversation.store.reset(session_id)
        return llm_pb2.ResetHistoryResponse(removed=removed)


class LlmApp:
    """Builds the backend, the history store, the metrics and the gRPC host; ``load`` readies them.

    Everything with a lifetime (the engine process, HTTP clients, the NATS connection, the
    metrics server) is registered on ``stack``, which the caller closes after the server has
    stopped.
    """

    def __init__(
        self,
        config: LlmConfig,
        stack: AsyncExitStack,
        *,
        host: str = "[::]",
        metrics_host: str = "0.0.0.0",
    ) -> None:
        self.config = config
        self._stack = stack
        self._metrics_host = metrics_host
        self.gate = SlotGate(concurrency(config), config.max_queue)
        self.metrics = LlmMetrics(self.gate)
        self.engine: LlamaServer | None = None
        self.metrics_port: int | None = None
        model, model_name = self._build_model()
        self.conversation = Conversation(
            model=model,
            system_prompt=config.system_prompt,
            store=MemoryHistoryStore(config.history_max_messages),
            window=config.history_window,
            default_model_name=model_name,
            gate=self.gate,
            metrics=self.metrics,
        )
        servicer = LlmServicer(self.conversation, config.max_input_chars)
        self.host = GrpcHost(
            port=config.port,
            host=host,
            service_names=[SERVICE_NAME],
            register=lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server),
        )

    def _http_client(self, keep_alive: bool = True) -> httpx.AsyncClient:
        """An HTTP client for the SDKs, closed with the app. Without keep-alive for the local
        engine: llama-server closes idle connections, and a reused closed one fails a turn."""
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=10.0),
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64 if keep_alive else 0
            ),
        )
        self._stack.push_async_callback(client.aclose)
        return client

    def _build_model(self) -> tuple[BaseChatModel, str]:
        config = self.config
        if config.groq is not None:
            from .backends.groq import build_groq

            model = build_groq(
                config.groq,
                http_client=self._http_client(),
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                metrics=self.metrics,
            )
            return model, config.groq.models[0]
        if config.openai is not None:
            from .backends.openai import build_openai

            model = build_openai(
                config.openai,
                http_client=self._http_client(),
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                metrics=self.metrics,
            )
            return model, config.openai.models[0]
        from .backends.openai import build_local

        assert config.local is not None
        engine = LlamaServer(
            config.local,
            model_alias(config.local.model_path),
            self._engine_health,
            system_prompt=config.system_prompt,
        )
        self.engine = engine
        self.metrics.engine = lambda: (engine.url, engine.auth) if engine.healthy else None
        model = build_local(
            config.local,
            base_url=f"{engine.url}/v1",
            api_key=engine.api_key,
            model_name=engine.alias,
            http_client=self._http_client(keep_alive=False),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            metrics=self.metrics,
        )
        return model, engine.alias

    async def _engine_health(self, up: bool) -> None:
        self.metrics.engine_up.set(1 if up else 0)
        if self.conversation.ready:  # after the first start: a death or a restart
            if up:
                self.metrics.engine_restarts.inc()
            await self.host.set_serving(up)

    async def load(self) -> None:
        """Connects the history store, serves metrics, starts and warms up the engine."""
        config = self.config
        if config.history == "nats":
            nc = await bus.connect(config.runtime.nats_url, name="avatarchat-llm")
            self._stack.push_async_callback(bus.close, nc)
            kv = await bus.ensure_history_kv(nc.jetstream(), config.retention)
            self.conversation.store = NatsHistoryStore(kv, config.history_max_messages)
        runner = await serve_metrics(self.metrics, self._metrics_host, config.metrics_port)
        self._stack.push_async_callback(runner.cleanup)
        self.metrics_port = runner.addresses[0][1]
        if self.engine is not None:
            local = config.local
            assert local is not None
            await asyncio.to_thread(ensure_file, local.model, local.model_path, local.quantizer)
            await asyncio.to_thread(check_model, local.model, local.model_path)
            self._stack.push_async_callback(self.engine.stop)
            await self.engine.start()
            self.conversation.engine_check = self.engine.check_healthy
        self.conversation.ready = True
        _log.info(
            "llm.ready",
            backend=config.backend,
            history=config.history,
            window=config.history_window,
            concurrency=self.gate.capacity,
            max_queue=self.gate.max_queue,
            metrics_port=self.metrics_port,
        )
