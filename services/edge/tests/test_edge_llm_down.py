"""When the llm service is down the client hears about it fast, and recovers when it is back."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient


async def test_llm_down_gives_an_error_within_2_s_then_recovers(
    text_edge: TestClient, llm: Any, helpers: Any
) -> None:
    ws, _ = await helpers.connect(text_edge)
    await ws.send_json({"type": "text", "text": "warm up"})
    await helpers.until(ws, "reply.done")

    await llm.stop()
    for attempt in range(2):  # right after it went away, and once the channel has noticed
        started = time.monotonic()
        await ws.send_json({"type": "text", "text": f"anyone there? {attempt}"})
        err = await helpers.receive(ws, within=5)
        elapsed = time.monotonic() - started
        assert err["type"] == "error" and err["code"] == "llm_unavailable", err
        assert err["turn_id"]
        assert elapsed < 2.0, f"the error took {elapsed:.2f} s"

    response = await text_edge.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["llm"] == "not serving"

    await llm.start()  # back, on the same port
    await ws.send_json({"type": "text", "text": "and now?"})
    frames = await helpers.until(ws, "reply.done", within=10)
    assert all(f["type"] != "error" for f in frames), frames
    assert (await text_edge.get("/readyz")).status == 200
    await ws.close()


async def test_llm_never_started(make_edge: Any, helpers: Any) -> None:
    from avatarchat.nats_server import free_port

    edge = await make_edge({"AVATARCHAT_LLM_ADDR": f"127.0.0.1:{free_port()}"})
    ws, _ = await helpers.connect(edge)
    started = time.monotonic()
    await ws.send_json({"type": "text", "text": "hello?"})
    err = await helpers.receive(ws, within=5)
    assert err["code"] == "llm_unavailable"
    assert time.monotonic() - started < 2.0
    await ws.close()


async def test_llm_not_deployed(make_edge: Any, helpers: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": ""})
    ws, hello = await helpers.connect(edge)
    assert hello["features"]["text"] is False
    await ws.send_json({"type": "text", "text": "hello?"})
    err = await helpers.receive(ws)
    assert err["code"] == "llm_unavailable" and "AVATARCHAT_LLM_ADDR" in err["message"]
    await ws.send_json({"type": "reset"})
    assert (await helpers.receive(ws))["code"] == "llm_unavailable"
    await ws.close()
