"""Prometheus metrics of the llm service, served over HTTP on ``AVATARCHAT_LLM_METRICS_PORT``.

Ours: queue depth, busy slots, time to first token, tokens per second, replies by outcome,
requests to the chat provider by outcome and their duration, and the engine's state. With the
``local`` backend, llama-server's own ``/metrics`` (``llamacpp:*``: prompt and generation
throughput, KV cache use, deferred requests) is fetched and appended, so one scrape sees both.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from avatarchat import log

from .slots import SlotGate

_log = log.get("avatarchat.llm.metrics")

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300)


class LlmMetrics:
    def __init__(self, gate: SlotGate) -> None:
        self.registry = r = CollectorRegistry()
        Gauge("avatarchat_llm_slots", "Generations that may run at once", registry=r).set_function(
            lambda: gate.capacity
        )
        Gauge("avatarchat_llm_busy_slots", "Generations running now", registry=r).set_function(
            lambda: gate.busy
        )
        Gauge("avatarchat_llm_queue_depth", "Requests waiting for a slot", registry=r).set_function(
            lambda: gate.waiting
        )
        self.time_to_first_token = Histogram(
            "avatarchat_llm_time_to_first_token_seconds",
            "From a Reply request to its first delta, queueing included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "avatarchat_llm_generation_tokens_per_second",
            "Completion tokens per second of each reply, after its first token",
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.completion_tokens = Counter(
            "avatarchat_llm_completion_tokens", "Completion tokens generated", registry=r
        )
        self.prompt_tokens = Counter(
            "avatarchat_llm_prompt_tokens", "Prompt tokens, cached ones included", registry=r
        )
        self.cached_prompt_tokens = Counter(
            "avatarchat_llm_cached_prompt_tokens",
            "Prompt tokens the engine reused from its cache",
            registry=r,
        )
        self.replies = Counter(
            "avatarchat_llm_replies", "Replies by outcome", ["outcome"], registry=r
        )
        self.engine_up = Gauge(
            "avatarchat_llm_engine_up", "1 while the local engine serves", registry=r
        )
        self.engine_restarts = Counter(
            "avatarchat_llm_engine_restarts", "Restarts of the local engine", registry=r
        )
        self.vendor_requests = Counter(
            "avatarchat_llm_vendor_requests",
            "Requests to the chat provider, by provider and outcome (ok, cancelled, or the "
            "gRPC code of the failure)",
            ["vendor", "outcome"],
            registry=r,
        )
        self.vendor_request_seconds = Histogram(
            "avatarchat_llm_vendor_request_seconds",
            "From a request to the chat provider to the end of its stream",
            ["vendor"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The local engine's URL and auth header while it serves; None otherwise.
        self.engine: Callable[[], tuple[str, dict[str, str]] | None] = lambda: None

    def observe_call(self, vendor: str, outcome: str, seconds: float) -> None:
        """Counts one provider request (``avatarchat.vendor_http.CallMetrics``)."""
        self.vendor_requests.labels(vendor, outcome).inc()
        self.vendor_request_seconds.labels(vendor).observe(seconds)

    async def _engine_metrics(self) -> bytes:
        engine = self.engine()
        if engine is None:
            return b""
        url, headers = engine
        connector = aiohttp.TCPConnector(force_close=True)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                timeout = aiohttp.ClientTimeout(2)
                async with http.get(f"{url}/metrics", headers=headers, timeout=timeout) as resp:
                    if resp.status == 200:
                        return b"# llama-server\n" + await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.info("llm.metrics.engine_unreachable", error=str(exc))
        return b""

    async def handle(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry) + await self._engine_metrics()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(metrics: LlmMetrics, host: str, port: int) -> web.AppRunner:
    """Starts ``GET /metrics`` on ``host:port`` (0: a free port); the caller cleans it up."""
    app = web.Application()
    app.router.add_get("/metrics", metrics.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(
            f"cannot serve metrics on port {port} (AVATARCHAT_LLM_METRICS_PORT): {exc}"
        ) from exc
    _log.info("llm.metrics.serving", port=runner.addresses[0][1])
    return runner
