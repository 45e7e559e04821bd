"""Prometheus metrics of the edge, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from . import protocol

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
# Frame types counted under their own label: the protocol's, binary audio, and refused frames.
KNOWN_FRAME_TYPES = frozenset({*protocol.CLIENT_TYPES, *protocol.SERVER_TYPES, "audio", "invalid"})

CONTENT_TYPE = CONTENT_TYPE_LATEST


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.time_to_first_delta = Histogram(
            "avatarchat_edge_time_to_first_delta_seconds",
            "From a user message to the first reply.delta sent to the client",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_reply_done = Histogram(
            "avatarchat_edge_time_to_reply_done_seconds",
            "From a user message to reply.done sent to the client",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_clip_speech = Histogram(
            "avatarchat_edge_time_to_first_clip_speech_seconds",
            "From a user message to the turn's first clip.speech sent to the client",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions_total = Counter(
            "avatarchat_edge_sessions_total", "WebSocket sessions opened", ["resumed"], registry=r
        )
        self.sockets_active = Gauge("avatarchat_edge_sockets_active", "Open WebSockets", registry=r)
        self.sessions_remembered = Gauge(
            "avatarchat_edge_sessions_remembered",
            "Sessions the edge can resume (live and recently closed)",
            registry=r,
        )
        self.frames_total = Counter(
            "avatarchat_edge_frames_total",
            "WebSocket frames by direction and type",
            ["direction", "type"],
            registry=r,
        )
        self.errors_total = Counter(
            "avatarchat_edge_errors_total", "Error frames sent, by code", ["code"], registry=r
        )
        self.turns_total = Counter(
            "avatarchat_edge_turns_total",
            "Turns by how they ended and where they came from",
            ["outcome", "source"],
            registry=r,
        )
        self.clips_requested_total = Counter(
            "avatarchat_edge_clips_requested_total",
            "GenerateClip calls",
            ["outcome"],
            registry=r,
        )

    def frame(self, direction: str, kind: object) -> None:
        label = kind if isinstance(kind, str) and kind in KNOWN_FRAME_TYPES else "other"
        self.frames_total.labels(direction, label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
