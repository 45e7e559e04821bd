"""How the edge reaches a peer service: target URIs, balancing, timeouts, retries, keepalive.

Each peer address is a gRPC target URI:

- ``host:port`` or ``dns:///name:port``: every address the name resolves to (a headless k8s
  Service gives one per pod, and re-resolution picks up new pods);
- ``ipv4:a:p,b:p`` (or ``ipv6:[a]:p,...``): a fixed list;
- ``unix:/path``: a local socket.

Calls are spread over all the addresses with ``round_robin`` (``pick_first`` would send every
call to one pod). The service config also gives each method a timeout and retries the
idempotent ones on ``UNAVAILABLE``, so a pod that vanishes costs those calls nothing. A
subchannel whose pod is gone leaves the rotation as soon as its connection breaks; keepalive
pings find a connection that broke silently.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import grpc

from avatarchat.config import ConfigError

# Peer name -> its gRPC service.
SERVICES = {
    "llm": "avatarchat.v1.LlmService",
    "stt": "avatarchat.v1.SttService",
    "avatar": "avatarchat.v1.AvatarService",
}
# Methods that may safely run twice: retried on UNAVAILABLE.
IDEMPOTENT = {
    "llm": ("GetHistory", "ResetHistory"),
    "stt": ("Transcribe",),
    "avatar": ("GetClip", "CancelClips"),
}
HEALTH_SERVICE = "grpc.health.v1.Health"

RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 5_000
# How often a ``dns:`` name may be resolved again (also after every broken connection).
DNS_MIN_RERESOLUTION_MS = 5_000


@dataclass(frozen=True)
class Deadlines:
    """The longest each kind of call may take (the caller may pass a shorter one)."""

    rpc_s: float  # unary calls
    llm_reply_s: float  # one streamed reply
    stt_stream_s: float  # one streamed transcription


def check_target(variable: str, value: str) -> str:
    """Validates a peer address as a gRPC target URI; ``ConfigError`` names the variable."""
    value = value.strip()
    scheme, sep, rest = value.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        entries = [e.strip() for e in rest.split(",")]
        for entry in entries:
            _check_ip_port(variable, value, entry, scheme)
        return f"{scheme}:{','.join(entries)}"
    if sep and scheme == "dns":
        name = rest.removeprefix("//").partition("/")[2] if rest.startswith("//") else rest
        _check_host_port(variable, value, name)
        return value
    if sep and scheme in ("unix", "unix-abstract"):
        if not rest:
            raise ConfigError(f"{variable} must name a socket path after {scheme}:, got {value!r}")
        return value
    _check_host_port(variable, value, value)
    return value


def _check_host_port(variable: str, value: str, host_port: str) -> None:
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not _is_port(port):
        raise ConfigError(
            f"{variable} must be host:port, dns:///name:port or ipv4:a:port,b:port "
            f"(or empty when the service is not deployed), got {value!r}"
        )


def _check_ip_port(variable: str, value: str, entry: str, scheme: str) -> None:
    host, sep, port = entry.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        ok = sep and _is_port(port) and address.version == (4 if scheme == "ipv4" else 6)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{variable}: {entry!r} in {value!r} is not an {scheme} address:port "
            f"(a fixed list looks like {scheme}:10.0.0.1:50053,10.0.0.2:50053)"
        )


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def service_config(peer: str, deadlines: Deadlines) -> dict[str, Any]:
    """``round_robin``, a timeout per method, and retries for the idempotent methods."""
    service = SERVICES[peer]
    rpc = _duration(deadlines.rpc_s)
    methods: list[dict[str, Any]] = [
        {
            "name": [{"service": service, "method": m} for m in IDEMPOTENT[peer]],
            "timeout": rpc,
            "retryPolicy": RETRY_POLICY,
        },
        {
            "name": [{"service": HEALTH_SERVICE, "method": "Check"}],
            "timeout": "2s",
            "retryPolicy": RETRY_POLICY,
        },
    ]
    if peer == "llm":
        methods.append(
            {
                "name": [{"service": service, "method": "Reply"}],
                "timeout": _duration(deadlines.llm_reply_s),
            }
        )
    elif peer == "stt":
        methods.append(
            {
                "name": [{"service": service, "method": "StreamTranscribe"}],
                "timeout": _duration(deadlines.stt_stream_s),
            }
        )
    else:
        methods.append({"name": [{"service": service, "method": "GenerateClip"}], "timeout": rpc})
    return {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": methods}


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def channel_options(peer: str, deadlines: Deadlines) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", json.dumps(service_config(peer, deadlines))),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.dns_min_time_between_resolutions_ms", DNS_MIN_RERESOLUTION_MS),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def open_channel(peer: str, target: str, deadlines: Deadlines) -> grpc.aio.Channel:
    """A channel to every address of ``target``, balanced per call."""
    return grpc.aio.insecure_channel(target, options=channel_options(peer, deadlines))
