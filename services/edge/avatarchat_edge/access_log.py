"""One structured log line per HTTP request, without the query string (it may hold a token)."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from avatarchat import log

_log = log.get("avatarchat.edge.http")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        emit = _log.debug if request.path in QUIET_PATHS else _log.info
        emit(
            "http.request",
            method=request.method,
            path=request.path,
            status=response.status,
            bytes=response.body_length,
            duration_ms=round(time * 1000, 1),
            remote=request.remote,
        )
