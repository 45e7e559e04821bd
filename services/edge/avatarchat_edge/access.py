"""Who may open ``/ws``: bearer tokens, browser origins, and loopback Host names.

- **Tokens** come from ``Authorization: Bearer <token>`` or, for browsers (which cannot set
  headers on a WebSocket), from ``?token=<token>``; they are compared in constant time. When
  tokens are configured, every socket needs one. An edge without tokens listens on loopback
  only, unless ``AVATARCHAT_EDGE_PUBLIC=true`` opts in to an open endpoint (config.py).
- **Origins** are an extra check on top of that, against cross-site WebSocket hijacking by web
  pages. With an allow-list, a browser ``Origin`` must be on it (``*`` allows any), and a
  request with no ``Origin`` (a script, not a page) needs a valid token. Without one, only
  same-origin pages may connect.
- **Loopback mode** (no tokens, not public) accepts only loopback ``Host`` names
  (``localhost``, ``127.0.0.1``, ``[::1]``, with any port). A DNS-rebinding page controls both
  its Host and its Origin, so comparing them proves nothing; the Host name does.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from .config import EdgeConfig
from .protocol import ErrorCode

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    message: str
    close_code: int
    # Refuse with HTTP 403 instead of upgrading and sending an error frame: for requests that
    # no legitimate page of ours makes (a foreign Host name), nothing is upgraded at all.
    before_upgrade: bool = False


def check(request: web.Request, config: EdgeConfig) -> Refusal | None:
    """Returns why the request may not open a socket, or None when it may."""
    token_ok = bool(config.tokens) and _has_valid_token(request, config.tokens)
    if config.tokens and not token_ok:
        return Refusal(
            ErrorCode.UNAUTHORIZED,
            "a valid token is required: send 'Authorization: Bearer <token>' or add ?token=",
            CLOSE_UNAUTHORIZED,
        )
    loopback_mode = not config.tokens and not config.public
    if loopback_mode and _hostname(request.host) not in LOOPBACK_HOSTS:
        return Refusal(
            ErrorCode.FORBIDDEN_HOST,
            f"this edge serves only localhost, not Host {request.host[:100]!r}; "
            "set AVATARCHAT_EDGE_TOKENS to serve other names",
            CLOSE_FORBIDDEN,
            before_upgrade=True,
        )
    origin = request.headers.get("Origin")
    if origin is None:
        if config.allowed_origins and not token_ok:
            return Refusal(
                ErrorCode.UNAUTHORIZED,
                "a request without an Origin header needs a valid token on this edge",
                CLOSE_UNAUTHORIZED,
            )
        return None
    if not _origin_allowed(origin, request.host, config.allowed_origins):
        return Refusal(
            ErrorCode.FORBIDDEN_ORIGIN,
            f"pages from {origin[:200]} may not connect; add the origin to "
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS",
            CLOSE_FORBIDDEN,
        )
    return None


def _hostname(host: str) -> str:
    """``Host`` without its port, lower case: ``[::1]:8080`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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
