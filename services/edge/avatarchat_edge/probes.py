"""``/healthz`` (the process is alive), ``/readyz`` (it can serve) and ``/metrics``.

Ready means: not shutting down, the llm service's health says SERVING (when llm is deployed)
and NATS is connected (when this edge uses NATS). stt and avatar are reported too, but do not
gate readiness: without them, text chat still works and the client is told per feature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from .metrics import CONTENT_TYPE, EdgeMetrics
from .nats_link import NatsLink
from .upstream import Upstream, Upstreams


class Probes:
    def __init__(
        self,
        *,
        upstreams: Upstreams,
        nats: NatsLink,
        metrics: EdgeMetrics,
        stopping: Callable[[], bool],
    ) -> None:
        self._upstreams = upstreams
        self._nats = nats
        self._metrics = metrics
        self._stopping = stopping

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)
        router.add_get("/metrics", self.metrics)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        peers = (self._upstreams.llm, self._upstreams.stt, self._upstreams.avatar)
        states = await asyncio.gather(*(_state(peer) for peer in peers))
        checks = {peer.name: state for peer, state in zip(peers, states, strict=True)}
        if not self._nats.enabled:
            checks["nats"] = "not used"
        else:
            checks["nats"] = "connected" if self._nats.connected else "disconnected"
        ready = (
            not self._stopping()
            and checks["llm"] in ("serving", "not deployed")
            and checks["nats"] in ("connected", "not used")
        )
        body = {"ready": ready, "stopping": self._stopping(), "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _state(peer: Upstream) -> str:
    if not peer.deployed:
        return "not deployed"
    return "serving" if await peer.serving() else "not serving"
