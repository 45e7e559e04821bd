"""The openai backend through the real SDKs (langchain-openai, openai): against a local fake
that speaks OpenAI's chat-completions API, and against a real llama-server.

The fake serves ``POST /v1/chat/completions`` with SSE streaming (``data: {chunk}`` lines, a
last chunk with ``usage`` and no choices when ``stream_options.include_usage`` is set, then
``data: [DONE]``) and OpenAI's error bodies ``{"error": {"message", "type", "code"}}``. Its
behaviour is picked by the requested model name. A ``hang-up`` model closes the connection of
its first request without answering, as llama-server does after each streamed reply: a client
that reuses that connection finds it closed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from avatarchat.v1 import llm_pb2
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.engine import LlamaServer

GOOD_KEY = "sk-test-key"
REPLY_PIECES = ["Hi", " from", " an OpenAI-compatible", " server."]


@dataclass
class FakeOpenAI:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    hung_up: int = 0

    def models_asked(self) -> list[str]:
        return [r["model"] for r in self.requests]


FAKE = web.AppKey("fake", FakeOpenAI)


def _error(status: int, message: str, kind: str, code: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _chunk(model: str, choices: list[dict[str, Any]], **extra: Any) -> bytes:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **extra,
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _delta(content: str | None, finish: str | None = None) -> list[dict[str, Any]]:
    delta = {"content": content} if content is not None else {}
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[FAKE].requests.append(body)
    model = body["model"]
    if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
        return _error(
            401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
        )
    if model.startswith("missing"):
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if model.startswith("limited"):
        return _error(
            429,
            "Rate limit reached for requests per minute.",
            "requests",
            "rate_limit_exceeded",
            **{"retry-after": "3"},
        )
    if model.startswith("broken"):
        return _error(503, "The server is overloaded.", "server_error", "overloaded")
    if model.startswith("slow"):
        await asyncio.sleep(5)
    if model.startswith("hang-up") and not request.app[FAKE].hung_up:
        request.app[FAKE].hung_up += 1
        assert request.transport is not None
        request.transport.close()
        return web.Response()  # never sent: the connection is gone
    assert body["stream"] is True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(
        _chunk(model, [{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    )
    for piece in REPLY_PIECES:
        await response.write(_chunk(model, _delta(piece)))
    await response.write(_chunk(model, _delta(None, "stop")))
    if body.get("stream_options", {}).get("include_usage"):
        usage = {
            "prompt_tokens": 30,
            "completion_tokens": 5,
            "total_tokens": 35,
            "prompt_tokens_details": {"cached_tokens": 12},
        }
        await response.write(_chunk(model, [], usage=usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app[FAKE] = fake
    app.router.add_post("/v1/chat/completions", chat_completions)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    yield fake
    await runner.cleanup()


def openai_env(base_url: str, models: str, **extra: str) -> dict[str, str]:
    first, *rest = models.split(",")
    return {
        "AVATARCHAT_LLM_BACKEND": "openai",
        "AVATARCHAT_OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": GOOD_KEY,
        "AVATARCHAT_LLM_OPENAI_MODEL": first,
        "AVATARCHAT_LLM_OPENAI_FALLBACK_MODELS": ",".join(rest),
        "AVATARCHAT_LLM_OPENAI_MAX_RETRIES": "0",
        "AVATARCHAT_LLM_OPENAI_TIMEOUT_S": "2",
        **extra,
    }


async def failed_reply(stub: Any) -> grpc.aio.AioRpcError:
    call = stub.Reply(llm_pb2.ReplyRequest(session_id="s1", turn_id="t1", text="Hi"), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    return raised.value


async def test_streams_a_reply_with_usage(
    fake_openai: FakeOpenAI, start_llm: Any, ask: Any
) -> None:
    async with start_llm(openai_env(fake_openai.url, "good-model")) as llm:
        result = await ask(llm.stub, "oa-1", "Hello, I am Bob.")
        again = await ask(llm.stub, "oa-1", "And again.")
    assert result.deltas == REPLY_PIECES and result.done.text == "".join(REPLY_PIECES)
    assert (result.done.prompt_tokens, result.done.completion_tokens) == (30, 5)
    assert result.done.cached_prompt_tokens == 12
    assert result.done.model == "good-model" and result.done.finish_reason == "stop"
    first, second = fake_openai.requests
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][-1] == {"role": "user", "content": "Hello, I am Bob."}
    assert first["stream_options"] == {"include_usage": True}
    assert first["max_completion_tokens"] == 64
    assert second["messages"][1:] == [
        {"role": "user", "content": "Hello, I am Bob."},
        {"role": "assistant", "content": "".join(REPLY_PIECES)},
        {"role": "user", "content": "And again."},
    ]
    assert again.done.text


async def test_missing_models_fall_back_and_later_turns_start_from_the_good_one(
    fake_openai: FakeOpenAI, start_llm: Any, ask: Any
) -> None:
    env = openai_env(fake_openai.url, "missing-a,missing-b,good-model")
    with capture_logs() as logs:
        async with start_llm(env) as llm:
            first = await ask(llm.stub, "oa-2", "Hello")
            await ask(llm.stub, "oa-2", "Hello again")
    assert first.done.model == "good-model"
    assert fake_openai.models_asked() == ["missing-a", "missing-b", "good-model", "good-model"]
    switches = [e for e in logs if e["event"] == "llm.openai.model_unavailable"]
    assert [(e["model"], e["next_model"]) for e in switches] == [
        ("missing-a", "missing-b"),
        ("missing-b", "good-model"),
    ]


@pytest.mark.parametrize(
    ("models", "extra", "code", "says"),
    [
        ("good-model", {"OPENAI_API_KEY": "sk-wrong"}, "UNAUTHENTICATED", "OPENAI_API_KEY"),
        ("limited-model", {}, "RESOURCE_EXHAUSTED", "Rate limit reached"),
        (
            "slow-model",
            {"AVATARCHAT_LLM_OPENAI_TIMEOUT_S": "0.5"},
            "DEADLINE_EXCEEDED",
            "TIMEOUT_S",
        ),
        ("broken-model", {}, "UNAVAILABLE", "503"),
        ("missing-a,missing-b", {}, "UNAVAILABLE", "does not exist"),
    ],
)
async def test_provider_errors_become_status_codes(
    fake_openai: FakeOpenAI,
    start_llm: Any,
    models: str,
    extra: dict[str, str],
    code: str,
    says: str,
) -> None:
    async with start_llm(openai_env(fake_openai.url, models, **extra)) as llm:
        error = await failed_reply(llm.stub)
        history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="s1"))
    assert error.code().name == code
    assert says in (error.details() or "")
    assert "sk-wrong" not in (error.details() or "")
    assert list(history.messages) == []  # a failed turn stores nothing
    if code == "RESOURCE_EXHAUSTED":
        assert ("retry-after", "3") in tuple(error.trailing_metadata() or ())


@pytest.mark.parametrize(("retries", "ok"), [("1", True), ("0", False)])
async def test_a_connection_closed_under_a_request_is_retried(
    fake_openai: FakeOpenAI, start_llm: Any, ask: Any, retries: str, ok: bool
) -> None:
    """With the default one retry, a request whose connection the server closes is sent again,
    and the turn carries on; with none, it is a clean UNAVAILABLE that stores nothing."""
    env = openai_env(fake_openai.url, "hang-up", AVATARCHAT_LLM_OPENAI_MAX_RETRIES=retries)
    async with start_llm(env) as llm:
        if ok:
            result = await ask(llm.stub, "s1", "Hi")
            assert result.done.text == "".join(REPLY_PIECES)
        else:
            assert (await failed_reply(llm.stub)).code() == grpc.StatusCode.UNAVAILABLE
        history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="s1"))
    assert fake_openai.hung_up == 1 and len(fake_openai.requests) == (2 if ok else 1)
    assert len(history.messages) == (2 if ok else 0)


async def test_against_a_real_llama_server(start_llm: Any, ask: Any) -> None:
    """The same backend against llama.cpp's own OpenAI-compatible server.

    It runs with the default one retry: llama-server closes the connection after each streamed
    reply, so a client that reuses it at once can find it closed (the test before).
    """
    local = LlmConfig.from_env({"AVATARCHAT_LLM_THREADS": "1", "AVATARCHAT_LLM_SLOTS": "2"}).local
    assert local is not None
    engine = LlamaServer(local, "qwen-0.5b")
    await engine.start()
    try:
        env = openai_env(
            f"{engine.url}/v1",
            "qwen-0.5b",
            OPENAI_API_KEY=engine.api_key,
            AVATARCHAT_LLM_OPENAI_MAX_RETRIES="1",
        )
        async with start_llm(env) as llm:
            first = await ask(llm.stub, "oa-real", "Hi! My name is Alice.")
            second = await ask(llm.stub, "oa-real", "What is my name?")
    finally:
        await engine.stop()
    assert first.done.text.strip() and first.done.model == "qwen-0.5b"
    assert "Alice" in second.done.text
    assert second.done.cached_prompt_tokens > 0  # llama-server reports its prompt cache
