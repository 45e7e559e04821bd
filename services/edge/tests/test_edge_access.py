"""Who may open /ws: tokens (header or query), the origin allow-list, loopback Host names."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import aiohttp
import pytest

from avatarchat.config import ConfigError
from avatarchat_edge.config import EdgeConfig


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
    # No Origin: a script, not a page. An allow-list is no authentication, so it needs a token.
    ws = await edge.ws_connect("/ws")
    assert await refused(ws, helpers) == ("unauthorized", 4401)


async def test_script_without_origin_passes_with_a_token(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    edge = await make_edge(
        {
            "AVATARCHAT_LLM_ADDR": llm.addr,
            "AVATARCHAT_EDGE_TOKENS": "t0k3n",
            "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://ok.example",
        }
    )
    ws = await edge.ws_connect("/ws")
    assert await refused(ws, helpers) == ("unauthorized", 4401)
    ws, _ = await helpers.connect(edge, headers={"Authorization": "Bearer t0k3n"})
    await ws.send_json({"type": "text", "text": "hi"})
    await helpers.until(ws, "reply.done")
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


async def _raw_handshake(port: int, host: str, origin: str | None) -> bytes:
    """A WebSocket upgrade written by hand, as a DNS-rebinding page's browser would send it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    await writer.wait_closed()
    return head


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("rebind.example:{port}", "http://rebind.example:{port}"),  # rebinding: both agree
        ("rebind.example:{port}", None),
        ("10.0.0.7:{port}", "http://10.0.0.7:{port}"),
        ("localhost.evil.example:{port}", "http://localhost.evil.example:{port}"),
    ],
)
async def test_localhost_mode_refuses_foreign_host_names(
    make_edge: Any, llm: Any, host: str, origin: str | None
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr})
    port = edge.port
    head = await _raw_handshake(
        port, host.format(port=port), origin.format(port=port) if origin else None
    )
    assert head.startswith(b"HTTP/1.1 403"), head


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST"]
)
async def test_localhost_mode_accepts_loopback_host_names(
    make_edge: Any, llm: Any, host: str
) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr})
    head = await _raw_handshake(edge.port, host.format(port=edge.port), None)
    assert head.startswith(b"HTTP/1.1 101"), head


async def test_token_mode_serves_any_host_name(make_edge: Any, llm: Any) -> None:
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_EDGE_TOKENS": "t"})
    head = await _raw_handshake(edge.port, "chat.example.org", None)
    assert head.startswith(b"HTTP/1.1 101"), head  # then refused by frame: no token


async def test_public_endpoint_is_an_explicit_opt_in(
    make_edge: Any, llm: Any, helpers: Any
) -> None:
    env = {
        "AVATARCHAT_EDGE_HOST": "0.0.0.0",
        "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://a.example",
    }
    with pytest.raises(ConfigError, match="AVATARCHAT_EDGE_PUBLIC"):
        EdgeConfig.from_env(env)
    config = EdgeConfig.from_env({**env, "AVATARCHAT_EDGE_PUBLIC": "true"})
    assert config.host == "0.0.0.0" and config.localhost_only_reason is None
    edge = await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_EDGE_PUBLIC": "true"})
    ws, _ = await helpers.connect(edge)  # no token, no Origin, any Host: open on purpose
    await ws.close()
    assert EdgeConfig.from_env({"AVATARCHAT_EDGE_HOST": "::1"}).host == "::1"
    assert EdgeConfig.from_env({}).host == "127.0.0.1"
