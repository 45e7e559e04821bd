"""Domain errors and the one place where they become gRPC status codes.

Service code raises these; the server interceptor (``avatarchat.grpc_server``) turns them into
``context.abort(code, message)``. Messages are meant for people: say what was wrong and what to
do about it.
"""

from __future__ import annotations

import asyncio

import grpc


class ServiceError(Exception):
    """Base class: an error with a gRPC status code and a human message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(ServiceError):
    """Too much load or a provider rate limit. ``retry_after_s`` is sent as trailing metadata."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Maps any exception to a status code and a message safe to send to a client."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the operation timed out"
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


def require_id(name: str, value: str) -> str:
    """Validates a session or turn id: 1-128 characters of [A-Za-z0-9_.-]."""
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > 128:
        raise InvalidArgument(f"{name} must be at most 128 characters, got {len(value)}")
    if not all(c.isascii() and (c.isalnum() or c in "_.-") for c in value):
        raise InvalidArgument(f"{name} may only contain letters, digits, '_', '.' and '-'")
    return value
