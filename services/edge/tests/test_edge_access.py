"""Who may open /ws: tokens (header or query) and the origin allow-list."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest


async def refused(ws: aiohttp.ClientWebSocketResponse, helpers: Any) -> tuple[str, int | None]:
    err = await helpers.receive(ws)
    await ws.receive(timeout=5)
    return err["code"], ws.close_code


@pytest.fixture
async def token_edge(make_edge: Any, llm: Any) -> Any:
    return await make_edge(
        {"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_EDGE_TOKENS": "s3cret,other"}
    )


async def test_token_required(token_edge: Any, helpers: Any) -> None:
    ws = await token_edge.ws_connect("/ws")
    assert await refused(ws, helpers) == ("unauthorized", 4401)
    ws = await token_edge.ws_connect("/ws?token=wrong")
    assert await refused(ws, helpers) == ("unauthorized", 4401)
    ws = await token_edge.ws_connect("/ws", headers={"Authorization": "Basic s3cret"})
    assert await refused(ws, helpers) == ("unauthorized", 4401)


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"Authorization": "Bearer s3cret"}},
        {"headers": {"Authorization": "bearer other"}},
        {"params": {"token": "s3cret"}},
    ],
)
async def test_valid_tokens(token_edge: Any, helpers: Any, how: dict[str, Any]) -> None:
    ws, _ = await helpers.connect(token_edge, **how)
    await ws.send_json({"type": "text", "text": "hi"})
    await helpers.until(ws, "reply.done")
    await ws.close()


async def test_origin_allow_list(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://chat.example.org, http://localhost:5173/",
        }
    )
    for origin in ("https://chat.example.org", "http://localhost:5173", "HTTPS://Chat.Example.org"):
        ws, _ = await helpers.connect(edge, headers={"Origin": origin})
        await ws.close()
    for origin in ("https://evil.example.com", "null", "https://chat.example.org.evil.com"):
        ws = await edge.ws_connect("/ws", headers={"Origin": origin})
        assert await refused(ws, helpers) == ("forbidden_origin", 4403)
    ws, _ = await helpers.connect(edge)  # no Origin: not a browser page
    await ws.close()


async def test_without_allow_list_only_same_origin_pages(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr})
    own = f"http://{edge.host}:{edge.port}"
    ws, _ = await helpers.connect(edge, headers={"Origin": own})
    await ws.close()
    ws = await edge.ws_connect("/ws", headers={"Origin": "https://evil.example.com"})
    assert await refused(ws, helpers) == ("forbidden_origin", 4403)


async def test_star_allows_any_origin(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge(
        {"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "*"}
    )
    ws, _ = await helpers.connect(edge, headers={"Origin": "https://anywhere.example"})
    await ws.close()


async def test_token_and_origin_both_checked(make_edge: Any, llm: Any, helpers: Any) -> None:
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_TOKENS": "t0k3n",
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://ok.example",
        }
    )
    ws = await edge.ws_connect(
        "/ws", params={"token": "t0k3n"}, headers={"Origin": "https://bad.example"}
    )
    assert await refused(ws, helpers) == ("forbidden_origin", 4403)
    ws, _ = await helpers.connect(
        edge, params={"token": "t0k3n"}, headers={"Origin": "https://ok.example"}
    )
    await ws.close()
