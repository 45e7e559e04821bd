"""Every setting of the edge, read once from the environment into one frozen object.

``EdgeConfig.from_env(environ)`` validates each value and raises ``ConfigError`` naming the
variable. Tests pass ``environ={...}``; nothing here reads files or the network.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from avatarchat.bus import Retention
from avatarchat.config import ConfigError, Env, RuntimeConfig

from .channels import Deadlines, check_target

STATIC_DIR = Path(__file__).parent / "static"

# Where the services listen by default; an empty variable means "not deployed".
DEFAULT_ADDRS = {
    "AVATARCHAT_LLM_ADDR": "127.0.0.1:50052",
    "AVATARCHAT_STT_ADDR": "127.0.0.1:50051",
    "AVATARCHAT_AVATAR_ADDR": "127.0.0.1:50053",
}


@dataclass(frozen=True)
class EdgeConfig:
    """The edge's settings. ``tokens`` are secrets and never part of ``repr``."""

    runtime: RuntimeConfig
    retention: Retention  # for the events stream, should the edge be the one to create it
    # Listening
    host: str
    port: int
    tls_cert: str | None
    tls_key: str | None
    # Access
    tokens: tuple[str, ...] = field(repr=False)
    allowed_origins: tuple[str, ...]
    public: bool  # AVATARCHAT_EDGE_PUBLIC: serve /ws to anyone, without a token (opt-in)
    localhost_only_reason: str | None  # why the host was forced to loopback, if it was
    # Peers as gRPC target URIs (host:port, dns:///name:port, ipv4:a:p,b:p); None: not deployed
    llm_addr: str | None
    stt_addr: str | None
    avatar_addr: str | None
    use_nats: bool
    # Limits
    max_frame_bytes: int = 1024 * 1024
    max_text_chars: int = 2000
    rate_per_s: float = 5.0
    rate_burst: int = 20
    audio_frames_per_s: float = 100.0
    audio_frames_burst: int = 200
    max_audio_bytes: int = 16 * 1024 * 1024
    idle_timeout_s: float = 300.0
    heartbeat_s: float = 30.0
    max_sessions: int = 200
    session_ttl_s: float = 600.0
    max_remembered_sessions: int = 10_000
    # Deadlines
    connect_timeout_s: float = 1.5
    llm_deadline_s: float = 120.0
    rpc_deadline_s: float = 5.0
    stt_stream_deadline_s: float = 1800.0
    stt_final_timeout_s: float = 15.0
    # Turn orchestration and voice
    first_clip_words: int = 12
    max_clip_words: int = 60
    language: str = "en"
    # Web UI and media
    static_dir: Path = STATIC_DIR
    media_cache_bytes: int = 32 * 1024 * 1024

    @property
    def protected(self) -> bool:
        """True when tokens or an origin allow-list guard the WebSocket."""
        return bool(self.tokens or self.allowed_origins)

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            rpc_s=self.rpc_deadline_s,
            llm_reply_s=self.llm_deadline_s,
            stt_stream_s=self.stt_stream_deadline_s,
        )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EdgeConfig:
        environ = os.environ if environ is None else environ
        env = Env(environ)
        runtime = RuntimeConfig.from_env(environ)
        tokens = env.list("AVATARCHAT_EDGE_TOKENS")
        origins = tuple(_origin(o) for o in env.list("AVATARCHAT_EDGE_ALLOWED_ORIGINS"))
        public = env.bool("AVATARCHAT_EDGE_PUBLIC", False)
        requested_host = env.optional_str("AVATARCHAT_EDGE_HOST")
        host, reason = _bind_host(requested_host, protected=bool(tokens) or public)
        tls_cert = env.optional_str("AVATARCHAT_EDGE_TLS_CERT")
        tls_key = env.optional_str("AVATARCHAT_EDGE_TLS_KEY")
        _check_tls(tls_cert, tls_key)
        addrs = {name: _service_addr(environ, name) for name in DEFAULT_ADDRS}
        nats_mode = env.choice("AVATARCHAT_EDGE_NATS", "auto", ("auto", "on", "off"))
        avatar_addr = addrs["AVATARCHAT_AVATAR_ADDR"]
        return cls(
            runtime=runtime,
            retention=Retention.from_env(environ),
            host=host,
            port=env.int("AVATARCHAT_EDGE_PORT", 8080, min=0, max=65535),
            tls_cert=tls_cert,
            tls_key=tls_key,
            tokens=tokens,
            allowed_origins=origins,
            public=public,
            localhost_only_reason=reason,
            llm_addr=addrs["AVATARCHAT_LLM_ADDR"],
            stt_addr=addrs["AVATARCHAT_STT_ADDR"],
            avatar_addr=avatar_addr,
            use_nats=nats_mode == "on" or (nats_mode == "auto" and avatar_addr is not None),
            max_frame_bytes=env.int(
                "AVATARCHAT_EDGE_MAX_FRAME_BYTES", 1024 * 1024, min=1024, max=64 * 1024 * 1024
            ),
            max_text_chars=env.int("AVATARCHAT_EDGE_MAX_TEXT_CHARS", 2000, min=1, max=100_000),
            rate_per_s=env.float("AVATARCHAT_EDGE_RATE_PER_S", 5.0, min=0.01, max=10_000),
            rate_burst=env.int("AVATARCHAT_EDGE_RATE_BURST", 20, min=1, max=100_000),
            audio_frames_per_s=env.float(
                "AVATARCHAT_EDGE_AUDIO_FRAMES_PER_S", 100.0, min=1, max=100_000
            ),
            audio_frames_burst=env.int("AVATARCHAT_EDGE_AUDIO_FRAMES_BURST", 200, min=1),
            max_audio_bytes=env.int("AVATARCHAT_EDGE_MAX_AUDIO_BYTES", 16 * 1024 * 1024, min=1024),
            idle_timeout_s=env.float("AVATARCHAT_EDGE_IDLE_TIMEOUT_S", 300.0, min=1),
            heartbeat_s=env.float("AVATARCHAT_EDGE_HEARTBEAT_S", 30.0, min=1),
            max_sessions=env.int("AVATARCHAT_EDGE_MAX_SESSIONS", 200, min=1),
            session_ttl_s=env.float("AVATARCHAT_EDGE_SESSION_TTL_S", 600.0, min=0),
            max_remembered_sessions=env.int(
                "AVATARCHAT_EDGE_MAX_REMEMBERED_SESSIONS", 10_000, min=1
            ),
            connect_timeout_s=env.float("AVATARCHAT_EDGE_CONNECT_TIMEOUT_S", 1.5, min=0.05, max=60),
            llm_deadline_s=env.float("AVATARCHAT_EDGE_LLM_DEADLINE_S", 120.0, min=1),
            rpc_deadline_s=env.float("AVATARCHAT_EDGE_RPC_DEADLINE_S", 5.0, min=0.1),
            stt_stream_deadline_s=env.float("AVATARCHAT_EDGE_STT_STREAM_DEADLINE_S", 1800.0, min=1),
            stt_final_timeout_s=env.float("AVATARCHAT_EDGE_STT_FINAL_TIMEOUT_S", 15.0, min=0.1),
            first_clip_words=env.int("AVATARCHAT_EDGE_FIRST_CLIP_WORDS", 12, min=1, max=200),
            max_clip_words=env.int("AVATARCHAT_EDGE_MAX_CLIP_WORDS", 60, min=1, max=500),
            language=env.str("AVATARCHAT_EDGE_LANGUAGE", "en"),
            static_dir=Path(env.str("AVATARCHAT_EDGE_STATIC_DIR", str(STATIC_DIR))),
            media_cache_bytes=env.int("AVATARCHAT_EDGE_MEDIA_CACHE_BYTES", 32 * 1024 * 1024, min=0),
        )


def _service_addr(environ: Mapping[str, str], name: str) -> str | None:
    """A peer's gRPC target URI; unset means the default, empty means "not deployed"."""
    if name not in environ:
        return DEFAULT_ADDRS[name]
    value = environ[name].strip()
    if not value:
        return None
    return check_target(name, value)


def _origin(value: str) -> str:
    """Normalises an allowed origin: ``scheme://host[:port]`` in lower case, or ``*``."""
    if value == "*":
        return value
    parts = urlsplit(value.lower().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise ConfigError(
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS items must look like https://host[:port] or *, "
            f"got {value!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind_host(requested: str | None, *, protected: bool) -> tuple[str, str | None]:
    """Where to listen; an edge without tokens (and not explicitly public) stays on loopback.

    An origin allow-list is not authentication (any script can send any Origin, or none), so
    it never opens the edge to other machines by itself. Asking for a non-loopback address
    without protection is a configuration error rather than a silent fallback, so that a pod
    fails visibly instead of listening where its probes cannot reach it.
    """
    if protected:
        return requested or "0.0.0.0", None
    if requested and not _is_loopback(requested):
        raise ConfigError(
            f"AVATARCHAT_EDGE_HOST={requested} would let other machines use /ws without a "
            "token: set AVATARCHAT_EDGE_TOKENS, or AVATARCHAT_EDGE_PUBLIC=true to serve an open "
            "endpoint on purpose"
        )
    reason = "AVATARCHAT_EDGE_TOKENS is not set (and AVATARCHAT_EDGE_PUBLIC is not true)"
    return requested or "127.0.0.1", reason


def _check_tls(cert: str | None, key: str | None) -> None:
    if bool(cert) != bool(key):
        raise ConfigError(
            "AVATARCHAT_EDGE_TLS_CERT and AVATARCHAT_EDGE_TLS_KEY must be set together"
        )
    for name, path in (("AVATARCHAT_EDGE_TLS_CERT", cert), ("AVATARCHAT_EDGE_TLS_KEY", key)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{name} points at {path!r}, which is not a readable file")
