"""The shared gRPC host: health gating, reflection, error mapping and log context."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from avatarchat import errors
from avatarchat.grpc_server import GrpcHost
from avatarchat.nats_server import free_port
from avatarchat.v1 import llm_pb2, llm_pb2_grpc
from tests.waiting import eventually


class ScriptedLlm(llm_pb2_grpc.LlmServiceServicer):
    """A servicer whose behaviour each test scripts, to exercise the host's interceptor."""

    def __init__(self) -> None:
        self.raise_on_history: BaseException | None = None

    async def GetHistory(self, request, context):
        structlog.get_logger().info("handler.ran")
        if self.raise_on_history:
            raise self.raise_on_history
        return llm_pb2.GetHistoryResponse()

    async def Reply(self, request, context) -> AsyncIterator[llm_pb2.ReplyEvent]:
        yield llm_pb2.ReplyEvent(delta=llm_pb2.ReplyDelta(text="a"))
        raise errors.InvalidArgument("text is too long")


@pytest.fixture
async def host() -> AsyncIterator[tuple[GrpcHost, ScriptedLlm]]:
    servicer = ScriptedLlm()
    host = GrpcHost(
        port=free_port(),
        service_names=["avatarchat.v1.LlmService"],
        register=lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server),
        host="127.0.0.1",
    )
    await host.start()
    yield host, servicer
    await host.stop(0)


async def test_health_is_not_serving_until_loaded(host) -> None:
    grpc_host, _ = host
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_host.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "avatarchat.v1.LlmService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await grpc_host.set_serving(True)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_services(host) -> None:
    grpc_host, _ = host
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_host.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = []
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = [s.name for s in response.list_services_response.service]
        assert "avatarchat.v1.LlmService" in names
        assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (
            errors.InvalidArgument("session_id is required"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id is required",
        ),
        (
            errors.ResourceExhausted("slow down", retry_after_s=2.5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
        ),
        (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED, "the operation timed out"),
        (KeyError("secret"), grpc.StatusCode.INTERNAL, "internal error (KeyError)"),
    ],
)
async def test_errors_map_to_status_codes(host, exc, code, message) -> None:
    grpc_host, servicer = host
    servicer.raise_on_history = exc
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_host.port}") as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="s1"), timeout=2)
    assert info.value.code() == code
    assert message in (info.value.details() or "")
    assert "secret" not in (info.value.details() or "")
    if isinstance(exc, errors.ResourceExhausted):
        assert ("retry-after", "2.5") in tuple(info.value.trailing_metadata() or ())


async def test_streaming_error_after_messages(host) -> None:
    grpc_host, _ = host
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_host.port}") as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        call = stub.Reply(llm_pb2.ReplyRequest(session_id="s", turn_id="t", text="x"), timeout=2)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for event in call:
                received.append(event)
    assert len(received) == 1
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_log_context_carries_session_and_rpc(host) -> None:
    grpc_host, _ = host
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_host.port}") as channel:
            stub = llm_pb2_grpc.LlmServiceStub(channel)
            await stub.GetHistory(
                llm_pb2.GetHistoryRequest(session_id="sess-1"),
                metadata=(("turn-id", "turn-9"),),
                timeout=2,
            )
        # The summary line is logged once the response is on its way: wait for it.
        await eventually(lambda: any(entry["event"] == "rpc.done" for entry in logs))
    ran = next(entry for entry in logs if entry["event"] == "handler.ran")
    assert ran["session_id"] == "sess-1"
    assert ran["turn_id"] == "turn-9"
    assert ran["rpc"] == "GetHistory"
    summary = next(entry for entry in logs if entry["event"] == "rpc.done")
    assert summary["code"] == "OK"


async def test_port_in_use_fails_clearly() -> None:
    port = free_port()
    first = GrpcHost(port=port, service_names=[], register=lambda s: None, host="127.0.0.1")
    with pytest.raises(OSError, match="cannot bind gRPC port"):
        GrpcHost(port=port, service_names=[], register=lambda s: None, host="127.0.0.1")
    del first
