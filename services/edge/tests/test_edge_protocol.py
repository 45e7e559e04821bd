"""protocol: every client frame type parses to its message, and metrics label each known type."""

from __future__ import annotations

import json

import pytest

from avatarchat_edge import protocol
from avatarchat_edge.metrics import EdgeMetrics

MINIMAL = {
    "session.start": {},
    "text": {"text": "hello"},
    "interrupt": {},
    "reset": {},
    "ping": {"id": 7},
    "audio.start": {"format": "webm"},
    "audio.end": {},
}


def test_every_client_type_parses_to_a_message_of_that_type() -> None:
    assert set(MINIMAL) == set(protocol.CLIENT_TYPES)
    for kind, fields in MINIMAL.items():
        message = protocol.parse(json.dumps({"type": kind, **fields}), max_text_chars=100)
        assert message.TYPE == kind


def test_an_unknown_type_names_every_client_type() -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse('{"type": "txet"}', max_text_chars=100)
    assert refused.value.code == protocol.ErrorCode.UNKNOWN_TYPE
    assert all(kind in refused.value.message for kind in protocol.CLIENT_TYPES)


def test_client_and_server_types_do_not_overlap() -> None:
    assert not set(protocol.CLIENT_TYPES) & set(protocol.SERVER_TYPES)


def counted(metrics: EdgeMetrics, direction: str, label: str) -> float:
    value = metrics.registry.get_sample_value(
        "avatarchat_edge_frames_total", {"direction": direction, "type": label}
    )
    return value or 0.0


@pytest.mark.parametrize("kind", [*protocol.SERVER_TYPES, *protocol.CLIENT_TYPES])
def test_metrics_count_each_protocol_type_under_its_own_label(kind: str) -> None:
    metrics = EdgeMetrics()
    metrics.frame("out", kind)
    assert counted(metrics, "out", kind) == 1
    assert counted(metrics, "out", "other") == 0


@pytest.mark.parametrize("kind", ["clip.unknown", "", None, 3, "x" * 500])
def test_metrics_count_anything_else_as_other(kind: object) -> None:
    metrics = EdgeMetrics()
    metrics.frame("in", kind)
    assert counted(metrics, "in", "other") == 1
