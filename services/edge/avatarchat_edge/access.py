"""Who may open ``/ws``: optional bearer tokens and an allow-list of browser origins.

- Tokens come from ``Authorization: Bearer <token>`` or, for browsers (which cannot set
  headers on a WebSocket), from ``?token=<token>``. They are compared in constant time.
- A request without an ``Origin`` header is not from a browser page and passes the origin
  check (it still needs a token when tokens are configured). With an allow-list, a browser
  origin must be on it (``*`` allows any). Without one, only same-origin pages may connect,
  which protects a localhost edge from other web sites (cross-site WebSocket hijacking).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from .protocol import ErrorCode

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    message: str
    close_code: int


def check(
    request: web.Request, tokens: tuple[str, ...], allowed_origins: tuple[str, ...]
) -> Refusal | None:
    """Returns why the request may not open a socket, or None when it may."""
    if tokens and not _has_valid_token(request, tokens):
        return Refusal(
            ErrorCode.UNAUTHORIZED,
            "a valid token is required: send 'Authorization: Bearer <token>' or add ?token=",
            CLOSE_UNAUTHORIZED,
        )
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(origin, request.host, allowed_origins):
        return Refusal(
            ErrorCode.FORBIDDEN_ORIGIN,
            f"pages from {origin[:200]} may not connect; add the origin to "
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS",
            CLOSE_FORBIDDEN_ORIGIN,
        )
    return None


def _has_valid_token(request: web.Request, tokens: tuple[str, ...]) -> bool:
    offered: list[str] = []
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        offered.append(value.strip())
    offered.extend(request.query.getall("token", []))
    # Compare against every token, so timing does not reveal which one nearly matched.
    matched = False
    for candidate in offered:
        for token in tokens:
            matched |= hmac.compare_digest(candidate.encode(), token.encode())
    return matched


def _origin_allowed(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    normalized = origin.strip().lower().rstrip("/")
    if allowed:
        return "*" in allowed or normalized in allowed
    return urlsplit(normalized).netloc == host.lower()
