"""The groq backend through the real SDKs (langchain-groq, groq) against a local fake Groq.

The fake speaks Groq's OpenAI-compatible ``POST /openai/v1/chat/completions``: SSE streaming
(``data: {chunk}`` lines, the last chunk carrying ``x_groq.usage``, then ``data: [DONE]``) and
Groq's error bodies ``{"error": {"message", "type", "code"}}``. Its behaviour is picked by the
requested model name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from avatarchat import errors
from avatarchat.config import ConfigError
from avatarchat.v1 import llm_pb2
from avatarchat_llm.backends.groq import build_groq
from avatarchat_llm.config import LlmConfig
from avatarchat_llm.metrics import LlmMetrics

GOOD_KEY = "gsk_test_key"
REPLY_PIECES = ["Hello", " there,", " nice to", " meet you!"]


@dataclass
class FakeGroq:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def models_asked(self) -> list[str]:
        return [r["model"] for r in self.requests]


def _error(status: int, message: str, kind: str, code: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


FAKE = web.AppKey("fake", FakeGroq)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[FAKE].requests.append(body)
    model = body["model"]
    if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
        return _error(401, "Invalid API Key", "invalid_request_error", "invalid_api_key")
    if model.startswith("retired"):
        return _error(
            400,
            f"The model `{model}` has been decommissioned and is no longer supported.",
            "invalid_request_error",
            "model_decommissioned",
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
            f"Rate limit reached for model `{model}` on tokens per minute (TPM).",
            "tokens",
            "rate_limit_exceeded",
            **{"retry-after": "7"},
        )
    if model.startswith("broken"):
        return _error(500, "Internal Server Error", "internal_server_error", "internal_error")
    if model.startswith("slow"):
        await asyncio.sleep(5)
    assert body["stream"] is True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(_chunk(model, {"role": "assistant", "content": ""}))
    for piece in REPLY_PIECES:
        await response.write(_chunk(model, {"content": piece}))
        if model.startswith("drip"):  # a slow stream: a piece every 2 s
            await asyncio.sleep(2)
    usage = {
        "prompt_tokens": 42,
        "completion_tokens": 7,
        "total_tokens": 49,
        "queue_time": 0.01,
        "total_time": 0.02,
    }
    await response.write(_chunk(model, {}, "stop", x_groq={"id": "req_fake", "usage": usage}))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@pytest.fixture
async def fake_groq() -> AsyncIterator[FakeGroq]:
    fake = FakeGroq()
    app = web.Application()
    app[FAKE] = fake
    app.router.add_post("/openai/v1/chat/completions", chat_completions)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def groq_env(fake: FakeGroq, models: str, **extra: str) -> dict[str, str]:
    first, *rest = models.split(",")
    return {
        "AVATARCHAT_LLM_BACKEND": "groq",
        "GROQ_API_KEY": GOOD_KEY,
        "AVATARCHAT_GROQ_BASE_URL": fake.url,
        "AVATARCHAT_LLM_GROQ_MODEL": first,
        "AVATARCHAT_LLM_GROQ_FALLBACK_MODELS": ",".join(rest),
        "AVATARCHAT_LLM_GROQ_MAX_RETRIES": "0",
        "AVATARCHAT_LLM_GROQ_TIMEOUT_S": "2",
        "AVATARCHAT_LLM_TEMPERATURE": "0.3",
        **extra,
    }


async def failed_reply(stub: Any, text: str = "Hello") -> grpc.aio.AioRpcError:
    call = stub.Reply(llm_pb2.ReplyRequest(session_id="s1", turn_id="t1", text=text), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    return raised.value


async def test_streams_a_reply_with_usage(fake_groq: FakeGroq, start_llm: Any, ask: Any) -> None:
    async with start_llm(groq_env(fake_groq, "good-model")) as llm:
        result = await ask(llm.stub, "groq-1", "Hi, I am Alice.")
    assert result.deltas == REPLY_PIECES
    assert result.done.text == "".join(REPLY_PIECES)
    assert (result.done.prompt_tokens, result.done.completion_tokens) == (42, 7)
    assert result.done.model == "good-model" and result.done.finish_reason == "stop"
    [request] = fake_groq.requests
    assert request["messages"][0]["role"] == "system"
    assert "friendly avatar" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Hi, I am Alice."}
    assert request["temperature"] == 0.3 and request["max_tokens"] == 64


async def test_history_is_sent_on_the_next_turn(
    fake_groq: FakeGroq, start_llm: Any, ask: Any
) -> None:
    async with start_llm(groq_env(fake_groq, "good-model")) as llm:
        await ask(llm.stub, "groq-2", "My name is Alice.")
        await ask(llm.stub, "groq-2", "What is my name?")
    assert fake_groq.requests[1]["messages"][1:] == [
        {"role": "user", "content": "My name is Alice."},
        {"role": "assistant", "content": "".join(REPLY_PIECES)},
        {"role": "user", "content": "What is my name?"},
    ]


async def test_decommissioned_and_missing_models_fall_back(
    fake_groq: FakeGroq, start_llm: Any, ask: Any
) -> None:
    env = groq_env(fake_groq, "retired-llama3-8b-8192,missing-model,good-model")
    with capture_logs() as logs:
        async with start_llm(env) as llm:
            first = await ask(llm.stub, "groq-3", "Hello")
            second = await ask(llm.stub, "groq-3", "Hello again")
    assert first.done.text == second.done.text == "".join(REPLY_PIECES)
    assert first.done.model == "good-model"
    # The retired and missing models are tried once; later turns start from the good one.
    assert fake_groq.models_asked() == [
        "retired-llama3-8b-8192",
        "missing-model",
        "good-model",
        "good-model",
    ]
    switches = [e for e in logs if e["event"] == "llm.groq.model_unavailable"]
    assert [(e["model"], e["next_model"]) for e in switches] == [
        ("retired-llama3-8b-8192", "missing-model"),
        ("missing-model", "good-model"),
    ]
    assert "decommissioned" in switches[0]["error"]


async def test_no_model_left_is_unavailable(fake_groq: FakeGroq, start_llm: Any) -> None:
    async with start_llm(groq_env(fake_groq, "retired-a,missing-b")) as llm:
        error = await failed_reply(llm.stub)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "does not exist" in (error.details() or "")


async def test_bad_key_is_unauthenticated(fake_groq: FakeGroq, start_llm: Any) -> None:
    env = groq_env(fake_groq, "good-model", GROQ_API_KEY="gsk_wrong")
    async with start_llm(env) as llm:
        error = await failed_reply(llm.stub)
        history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="s1"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "GROQ_API_KEY" in (error.details() or "") and "gsk_wrong" not in error.details()
    assert list(history.messages) == []


async def test_rate_limit_is_resource_exhausted_with_retry_after(
    fake_groq: FakeGroq, start_llm: Any
) -> None:
    async with start_llm(groq_env(fake_groq, "limited-model")) as llm:
        error = await failed_reply(llm.stub)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Rate limit reached" in (error.details() or "")
    assert ("retry-after", "7") in tuple(error.trailing_metadata() or ())


async def test_timeout_is_deadline_exceeded(fake_groq: FakeGroq, start_llm: Any) -> None:
    env = groq_env(fake_groq, "slow-model", AVATARCHAT_LLM_GROQ_TIMEOUT_S="0.5")
    async with start_llm(env) as llm:
        error = await failed_reply(llm.stub)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "AVATARCHAT_LLM_GROQ_TIMEOUT_S" in (error.details() or "")


async def test_server_error_is_unavailable(fake_groq: FakeGroq, start_llm: Any) -> None:
    async with start_llm(groq_env(fake_groq, "broken-model")) as llm:
        error = await failed_reply(llm.stub)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "500" in (error.details() or "")


def vendor_requests(metrics: LlmMetrics) -> dict[str, float]:
    """``avatarchat_llm_vendor_requests_total`` of the groq provider, by outcome."""
    return {
        sample.labels["outcome"]: sample.value
        for metric in metrics.vendor_requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["vendor"] == "groq"
    }


async def test_provider_requests_are_counted_by_outcome(
    fake_groq: FakeGroq, start_llm: Any, ask: Any
) -> None:
    env = groq_env(fake_groq, "retired-model,good-model")
    async with start_llm(env) as llm:
        await ask(llm.stub, "groq-m", "Hello")  # two models asked, one request
        await ask(llm.stub, "groq-m", "Hello again")
        metrics = llm.app.metrics
        assert vendor_requests(metrics) == {"ok": 2}
    async with start_llm(groq_env(fake_groq, "limited-model")) as llm:
        await failed_reply(llm.stub)
        assert vendor_requests(llm.app.metrics) == {"resource_exhausted": 1}
        seconds = llm.app.metrics.registry.get_sample_value(
            "avatarchat_llm_vendor_request_seconds_count", {"vendor": "groq"}
        )
        assert seconds == 1


async def test_a_cancelled_stream_stops_without_falling_back(
    fake_groq: FakeGroq, start_llm: Any
) -> None:
    async with start_llm(groq_env(fake_groq, "drip-model,good-model")) as llm:
        call = llm.stub.Reply(
            llm_pb2.ReplyRequest(session_id="s1", turn_id="t1", text="Hi"), timeout=30
        )
        first = await anext(aiter(call))
        assert first.delta.text == REPLY_PIECES[0]
        call.cancel()
        deadline = time.monotonic() + 10
        while vendor_requests(llm.app.metrics) != {"cancelled": 1}:
            assert time.monotonic() < deadline, vendor_requests(llm.app.metrics)
            await asyncio.sleep(0.02)
        history = await llm.stub.GetHistory(llm_pb2.GetHistoryRequest(session_id="s1"))
    assert fake_groq.models_asked() == ["drip-model"]
    assert list(history.messages) == []


async def test_invoke_falls_back_the_same_way_without_streaming(fake_groq: FakeGroq) -> None:
    config = LlmConfig.from_env(groq_env(fake_groq, "retired-model,missing-model,good-model"))
    assert config.groq is not None
    with httpx.Client() as sync_http:
        async with httpx.AsyncClient() as http:
            model = build_groq(
                config.groq,
                temperature=0,
                max_tokens=16,
                http_client=http,
                sync_http_client=sync_http,
            )
            answer = await asyncio.to_thread(model.invoke, "Hello")
            again = await asyncio.to_thread(model.invoke, "Hello again")
    assert answer.text == again.text == "".join(REPLY_PIECES)
    assert fake_groq.models_asked() == [
        "retired-model",
        "missing-model",
        "good-model",
        "good-model",
    ]
    assert model.model_name == "good-model"


async def test_invoke_maps_errors_like_the_stream(fake_groq: FakeGroq) -> None:
    config = LlmConfig.from_env(groq_env(fake_groq, "limited-model"))
    assert config.groq is not None
    with httpx.Client() as sync_http:
        model = build_groq(
            config.groq, temperature=0, max_tokens=16, http_client=None, sync_http_client=sync_http
        )
        with pytest.raises(errors.ResourceExhausted, match="Rate limit reached") as raised:
            await asyncio.to_thread(model.invoke, "Hello")
    assert raised.value.retry_after_s == 7


def test_groq_needs_its_key() -> None:
    with pytest.raises(ConfigError, match="GROQ_API_KEY is required"):
        LlmConfig.from_env({"AVATARCHAT_LLM_BACKEND": "groq"})


def test_groq_config_reads_the_model_list() -> None:
    config = LlmConfig.from_env(
        {
            "AVATARCHAT_LLM_BACKEND": "groq",
            "GROQ_API_KEY": "gsk_secret_123",
            "AVATARCHAT_LLM_GROQ_FALLBACK_MODELS": "llama-3.3-70b-versatile, llama-3.1-8b-instant",
        }
    )
    assert config.groq is not None and config.local is None
    assert config.groq.models == ("llama-3.1-8b-instant", "llama-3.3-70b-versatile")
    assert "gsk_secret_123" not in repr(config.groq)
