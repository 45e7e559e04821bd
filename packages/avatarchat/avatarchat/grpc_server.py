"""``grpc.aio`` server bootstrap shared by the stt, llm and avatar services.

- The standard health service reports NOT_SERVING until the backend has loaded, then SERVING,
  and NOT_SERVING again as soon as shutdown starts.
- Server reflection, so ``grpcurl list`` and ``describe`` work.
- One interceptor binds ``rpc``, ``session_id`` and ``turn_id`` to the log context, maps every
  exception to a status code (``avatarchat.errors``) and logs one summary line per RPC.
- ``GrpcHost.stop``: health NOT_SERVING, then ``server.stop(grace)``.

``avatarchat.service_main`` runs a host as a process, from SIGTERM to the exit status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avatarchat import errors, log

_log = log.get("avatarchat.grpc")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _metadata_value(metadata: Iterable[Any] | None, key: str) -> str | None:
    for item in metadata or ():
        if item[0] == key:
            value = item[1]
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Log context, error mapping and one summary line per RPC."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        metadata = handler_call_details.invocation_metadata
        context_vars = {
            "rpc": method.rsplit("/", 1)[-1],
            "session_id": _metadata_value(metadata, "session-id"),
            "turn_id": _metadata_value(metadata, "turn-id"),
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, context_vars),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, context_vars),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, context_vars),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, context_vars),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _bind(context_vars: dict[str, str | None], request: Any) -> dict[str, str]:
    bound = {k: v for k, v in context_vars.items() if v}
    for field in ("session_id", "turn_id"):
        value = getattr(request, field, None)
        if field not in bound and isinstance(value, str) and value:
            bound[field] = value[:128]
    return bound


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, message = errors.status_for(exc)
    if isinstance(exc, errors.ResourceExhausted) and exc.retry_after_s is not None:
        context.set_trailing_metadata((("retry-after", f"{exc.retry_after_s:g}"),))
    if code == grpc.StatusCode.INTERNAL:
        _log.exception("rpc.internal_error")
    await context.abort(code, message)


def _summary(started: float, context: grpc.aio.ServicerContext, outcome: str, **extra: Any) -> None:
    code = context.code() if outcome == "error" else None
    _log.info(
        "rpc.done",
        outcome=outcome,
        code=(code.name if isinstance(code, grpc.StatusCode) else outcome.upper()),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        **extra,
    )


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], context_vars: dict[str, str | None]):
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        with log.bound_contextvars(**_bind(context_vars, request)):
            try:
                response = await behavior(request, context)
            except asyncio.CancelledError:
                _summary(started, context, "cancelled")
                raise
            except grpc.aio.AbortError:
                _summary(started, context, "error")
                raise
            except Exception as exc:
                try:
                    await _abort(context, exc)
                finally:
                    _summary(started, context, "error", error=errors.status_for(exc)[1])
            _summary(started, context, "ok")
            return response

    return wrapper


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], context_vars: dict[str, str | None]):
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        messages = 0
        with log.bound_contextvars(**_bind(context_vars, request)):
            try:
                async for message in behavior(request, context):
                    messages += 1
                    yield message
            except asyncio.CancelledError:
                _summary(started, context, "cancelled", messages=messages)
                raise
            except grpc.aio.AbortError:
                _summary(started, context, "error", messages=messages)
                raise
            except Exception as exc:
                try:
                    await _abort(context, exc)
                finally:
                    _summary(
                        started,
                        context,
                        "error",
                        messages=messages,
                        error=errors.status_for(exc)[1],
                    )
            _summary(started, context, "ok", messages=messages)

    return wrapper


MAX_CONNECTION_AGE_MS = 30_000


class GrpcHost:
    """Owns one ``grpc.aio`` server with health and reflection.

    ``service_names`` are the full names of the services ``register`` adds (for example
    ``"avatarchat.v1.LlmService"``); health is reported for each and for the server as a whole
    (the empty name, which Kubernetes' ``grpc:`` probe asks for).
    """

    def __init__(
        self,
        *,
        port: int,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        host: str = "[::]",
        interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.service_names = ["", *service_names]
        self.server = grpc.aio.server(
            interceptors=[ServerInterceptor(), *interceptors],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Clients (the edge) send keepalive pings every 20 s during calls; accept them
                # even when this server has nothing to send (an stt stream during silence).
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # Clients balancing over a headless Service re-resolve its DNS name when a
                # connection ends: a GOAWAY every ~30 s (calls in flight finish) lets them see
                # new pods (gRPC adds ±10 % jitter, so a fleet does not reconnect at once).
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        register(self.server)
        reflection.enable_server_reflection(
            [*self.service_names[1:], health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        try:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC port {host}:{port}; is it already in use?") from exc

    async def start(self) -> None:
        await self.set_serving(False)
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.service_names:
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
