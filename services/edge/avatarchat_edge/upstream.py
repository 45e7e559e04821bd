"""The gRPC services behind the edge: one channel per peer, readiness and one error mapping.

Each peer has one ``grpc.aio`` channel over all its addresses (``channels.py``: round robin,
per-method timeouts, retries, keepalive). Before a call, ``ready`` waits at most
``connect_timeout_s`` for the channel to have a connected address, so a service that is down
gives the client an error frame quickly, and one that comes back is used at the next message.
Every call is then made with ``wait_for_ready=False`` and a deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avatarchat.v1 import avatar_pb2_grpc, llm_pb2_grpc, stt_pb2_grpc

from .channels import Deadlines, open_channel
from .protocol import ErrorCode

_REJECTIONS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
)
_ENV = {
    "llm": "AVATARCHAT_LLM_ADDR",
    "stt": "AVATARCHAT_STT_ADDR",
    "avatar": "AVATARCHAT_AVATAR_ADDR",
}


class UpstreamError(Exception):
    """A call to a peer failed; ``code`` and ``message`` are meant for the client."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: str = "UNAVAILABLE",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status  # the gRPC status name behind it
        self.retry_after_s = retry_after_s


@dataclass
class Upstream:
    """One peer service. ``channel`` is None when the service is not deployed."""

    name: str  # "llm", "stt" or "avatar"
    addr: str | None  # a gRPC target URI
    connect_timeout_s: float
    deadlines: Deadlines
    channel: grpc.aio.Channel | None = None

    def open(self) -> None:
        """Creates the channel and starts connecting, so the first call finds it ready."""
        if self.addr and self.channel is None:
            self.channel = open_channel(self.name, self.addr, self.deadlines)
            self.channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    @property
    def deployed(self) -> bool:
        return self.addr is not None

    def _channel(self) -> grpc.aio.Channel:
        if self.channel is None:
            raise UpstreamError(
                self._code("unavailable"),
                f"the {self.name} service is not deployed here ({_ENV[self.name]} is empty)",
            )
        return self.channel

    async def ready(self) -> grpc.aio.Channel:
        """The channel, once connected; ``UpstreamError`` if it does not connect in time."""
        channel = self._channel()
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return channel
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await channel.channel_ready()
        except TimeoutError:
            raise UpstreamError(
                self._code("unavailable"),
                f"the {self.name} service at {self.addr} is not reachable; try again shortly",
            ) from None
        return channel

    async def serving(self, timeout_s: float = 1.0) -> bool:
        """True when the peer's health service says SERVING."""
        if self.channel is None:
            return False
        try:
            response = await health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def error(self, exc: grpc.aio.AioRpcError) -> UpstreamError:
        """Maps a failed call to the client-facing error."""
        status = exc.code()
        detail = exc.details() or status.name
        if status == grpc.StatusCode.UNAVAILABLE:
            code = self._code("unavailable")
            message = f"the {self.name} service is not available ({detail}); try again shortly"
        elif status == grpc.StatusCode.DEADLINE_EXCEEDED:
            code, message = self._code("timeout"), f"the {self.name} service did not answer in time"
        elif status == grpc.StatusCode.RESOURCE_EXHAUSTED:
            code, message = self._code("busy"), f"the {self.name} service is busy: {detail}"
        elif status in _REJECTIONS:
            code, message = self._code("rejected"), detail
        else:
            code, message = self._code("error"), f"the {self.name} service failed: {detail}"
        return UpstreamError(code, message, status=status.name, retry_after_s=_retry_after(exc))

    def _code(self, suffix: str) -> ErrorCode:
        return ErrorCode(f"{self.name}_{suffix}")


def _retry_after(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def metadata(session_id: str, turn_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """The ``session-id`` and ``turn-id`` call metadata every service logs."""
    items = [("session-id", session_id)]
    if turn_id:
        items.append(("turn-id", turn_id))
    return tuple(items)


class Upstreams:
    """The three peers, with their generated stubs."""

    def __init__(
        self,
        *,
        llm_addr: str | None,
        stt_addr: str | None,
        avatar_addr: str | None,
        connect_timeout_s: float,
        deadlines: Deadlines,
    ) -> None:
        self.llm = Upstream("llm", llm_addr, connect_timeout_s, deadlines)
        self.stt = Upstream("stt", stt_addr, connect_timeout_s, deadlines)
        self.avatar = Upstream("avatar", avatar_addr, connect_timeout_s, deadlines)

    def open(self) -> None:
        for peer in (self.llm, self.stt, self.avatar):
            peer.open()

    async def close(self) -> None:
        for peer in (self.llm, self.stt, self.avatar):
            await peer.close()

    async def llm_stub(self) -> llm_pb2_grpc.LlmServiceStub:
        return llm_pb2_grpc.LlmServiceStub(await self.llm.ready())

    async def stt_stub(self) -> stt_pb2_grpc.SttServiceStub:
        return stt_pb2_grpc.SttServiceStub(await self.stt.ready())

    async def avatar_stub(self) -> avatar_pb2_grpc.AvatarServiceStub:
        return avatar_pb2_grpc.AvatarServiceStub(await self.avatar.ready())
