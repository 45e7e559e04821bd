"""Asks the avatar service for one clip per sentence of a turn, in order.

Sentences are queued as the reply streams and sent by one worker, so the reply's deltas never
wait for the avatar. Each sentence gets the session's next ``seq``. A sentence the avatar
refuses becomes a ``clip.failed`` frame with ``clip_id: null``, so a client that plays clips
in ``seq`` order never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from avatarchat import bus, log
from avatarchat.v1 import avatar_pb2

from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .sessions import Session
from .upstream import UpstreamError, Upstreams, metadata
from .worker_watch import WorkerWatch

_log = log.get("avatarchat.edge.clips")

Send = Callable[[dict[str, Any]], Awaitable[bool]]


class ClipScheduler:
    """One turn's clip requests."""

    def __init__(
        self,
        *,
        session: Session,
        turn_id: str,
        upstreams: Upstreams,
        workers: WorkerWatch | None,
        send: Send,
        metrics: EdgeMetrics,
        deadline_s: float,
    ) -> None:
        self._session = session
        self._turn_id = turn_id
        self._upstreams = upstreams
        self._workers = workers
        self._send = send
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.requested = 0

    def submit(self, text: str) -> None:
        """Queues a sentence; its ``seq`` is taken now, so order is the order of submission."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"clips-{self._turn_id}")
        self._queue.put_nowait((self._session.allocate_seq(), text))
        self.requested += 1

    async def finish(self) -> None:
        """Waits until every queued sentence has been sent to the avatar."""
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker

    async def cancel(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _work(self) -> None:
        while (item := await self._queue.get()) is not None:
            seq, text = item
            await self._generate(seq, text)

    async def _generate(self, seq: int, text: str) -> None:
        session = self._session
        request = avatar_pb2.GenerateClipRequest(
            session_id=session.id,
            turn_id=self._turn_id,
            seq=seq,
            text=text,
            speech_only=not session.video,
        )
        try:
            stub = await self._upstreams.avatar_stub()
            response = await stub.GenerateClip(
                request,
                timeout=self._deadline_s,
                wait_for_ready=False,
                metadata=metadata(session.id, self._turn_id),
            )
        except grpc.aio.AioRpcError as exc:
            await self._failed(seq, self._upstreams.avatar.error(exc))
            return
        except UpstreamError as exc:
            await self._failed(seq, exc)
            return
        self._metrics.clips_requested_total.labels("ok").inc()
        if self._workers is not None:
            self._workers.track(
                response.clip_id,
                response.worker_id,
                session_id=session.id,
                turn_id=self._turn_id,
                seq=seq,
                speech_only=request.speech_only,
            )
        _log.debug("clip.requested", clip_id=response.clip_id, seq=seq, turn_id=self._turn_id)

    async def _failed(self, seq: int, exc: UpstreamError) -> None:
        self._metrics.clips_requested_total.labels("failed").inc()
        _log.warning("clip.request_failed", seq=seq, turn_id=self._turn_id, error=exc.message)
        await self._send(
            {
                "type": "clip.failed",
                "clip_id": None,
                "turn_id": self._turn_id,
                "seq": seq,
                "reason": exc.message,
                "code": exc.status,
            }
        )


async def broadcast_cancel(link: NatsLink, session_id: str) -> bool:
    """Tells every avatar process to cancel the session's clips; False if it could not.

    A ``CancelClipsRequest`` goes out on ``avatar.cancel.<session_id>``, which every avatar
    process hears, so the one doing the work stops it whichever pod that is (a ``CancelClips``
    call would reach whichever pod the balancer picked). It never waits for an answer.
    """
    payload = avatar_pb2.CancelClipsRequest(session_id=session_id).SerializeToString()
    try:
        sent = await link.publish(bus.cancel_subject(session_id), payload)
    except Exception as exc:  # best effort: the events of cancelled clips are dropped anyway
        _log.warning(
            "clip.cancel_failed", session_id=session_id, error=str(exc) or type(exc).__name__
        )
        return False
    if not sent:
        _log.warning("clip.cancel_failed", session_id=session_id, error="NATS is not connected")
    return sent
