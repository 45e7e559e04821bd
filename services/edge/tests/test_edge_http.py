"""/healthz, /readyz, /metrics and the web UI."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.waiting import eventually


async def test_healthz(text_edge: TestClient) -> None:
    response = await text_edge.get("/healthz")
    assert response.status == 200 and (await response.json()) == {"status": "ok"}


async def test_readyz_follows_llm_health(text_edge: TestClient, llm: Any) -> None:
    response = await text_edge.get("/readyz")
    body = await response.json()
    assert response.status == 200, body
    assert body["checks"] == {
        "llm": "serving",
        "stt": "not deployed",
        "avatar": "not deployed",
        "nats": "not used",
    }
    await llm.host.set_serving(False)  # e.g. still loading its model
    response = await text_edge.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["llm"] == "not serving"


async def test_readyz_needs_nats_when_used(make_edge: Any, llm: Any, nats_server: Any) -> None:
    from avatarchat.nats_server import free_port

    down = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_NATS": "on",
            "AVATARCHAT_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        }
    )
    response = await down.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["nats"] == "disconnected"

    up = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_NATS": "on",
            "AVATARCHAT_NATS_URL": nats_server.url,
        }
    )

    async def ready() -> bool:
        return (await up.get("/readyz")).status == 200

    await eventually(ready, what="/readyz once NATS is connected")
    response = await up.get("/readyz")
    assert (await response.json())["checks"]["nats"] == "connected"


async def test_metrics(text_edge: TestClient, helpers: Any) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "hi"})
    await helpers.until(ws, "reply.done")
    await ws.send_str("nonsense")
    await helpers.receive(ws)
    await ws.close()
    response = await text_edge.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    body = await response.text()
    for line in (
        "avatarchat_edge_time_to_first_delta_seconds_count 1.0",
        "avatarchat_edge_time_to_reply_done_seconds_count 1.0",
        'avatarchat_edge_sessions_total{resumed="false"} 1.0',
        'avatarchat_edge_frames_total{direction="in",type="text"} 1.0',
        'avatarchat_edge_frames_total{direction="out",type="reply.done"} 1.0',
        'avatarchat_edge_errors_total{code="bad_json"} 1.0',
        'avatarchat_edge_turns_total{outcome="done",source="text"} 1.0',
    ):
        assert line in body, line


async def test_web_ui_is_served(text_edge: TestClient) -> None:
    response = await text_edge.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html" in (await response.text()).lower()
    assert (await text_edge.get("/no-such-file.js")).status == 404
    assert (await text_edge.get("/../pyproject.toml")).status == 404
