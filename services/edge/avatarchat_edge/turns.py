"""One turn: the user's message to the llm, the reply streamed back, and its clips.

Deltas go to the client as they arrive. With the avatar on, the reply is also cut into
sentences and each is handed to the ``ClipScheduler`` as soon as it is complete. Failures of
the llm become an error frame carrying the ``turn_id``; cancelling the task (barge-in,
``interrupt``, a closed socket) cancels the llm call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from avatarchat import log
from avatarchat.v1 import llm_pb2

from .clips import ClipScheduler
from .config import EdgeConfig
from .metrics import EdgeMetrics
from .protocol import ErrorCode, error
from .sentences import SentenceSplitter
from .sessions import Session
from .upstream import UpstreamError, Upstreams, metadata
from .worker_watch import WorkerWatch

_log = log.get("avatarchat.edge.turns")

Send = Callable[[dict[str, Any]], Awaitable[bool]]


class Turn:
    def __init__(
        self,
        *,
        session: Session,
        turn_id: str,
        text: str,
        source: str,
        config: EdgeConfig,
        upstreams: Upstreams,
        workers: WorkerWatch | None,
        metrics: EdgeMetrics,
        send: Send,
        started: float | None = None,
    ) -> None:
        self.session = session
        self.turn_id = turn_id
        self.text = text
        self.source = source  # "text" or "voice"
        self.started = started if started is not None else time.perf_counter()
        self._config = config
        self._upstreams = upstreams
        self._metrics = metrics
        self._send = send
        self._parts: list[str] = []
        self.replied = False  # reply.done was sent; only clip requests may still be running
        self.clips: ClipScheduler | None = None
        if session.avatar:
            self.clips = ClipScheduler(
                session=session,
                turn_id=turn_id,
                upstreams=upstreams,
                workers=workers,
                send=send,
                metrics=metrics,
                deadline_s=config.rpc_deadline_s,
            )

    @property
    def partial_text(self) -> str:
        return "".join(self._parts)

    async def run(self) -> None:
        """Runs the turn to its end. Cancellation propagates."""
        try:
            await self._stream_reply()
        except asyncio.CancelledError:
            if self.clips is not None:
                await self.clips.cancel()
            raise
        except (grpc.aio.AioRpcError, UpstreamError) as exc:
            if self.clips is not None:
                await self.clips.finish()  # the sentences shown so far are still spoken
            failure = self._upstreams.llm.error(exc) if isinstance(exc, grpc.RpcError) else exc
            await self._fail(failure)
            return
        if self.clips is not None:
            await self.clips.finish()

    async def _stream_reply(self) -> llm_pb2.ReplyDone:
        session = self.session
        splitter = (
            SentenceSplitter(
                first_max_words=self._config.first_clip_words,
                max_words=self._config.max_clip_words,
            )
            if self.clips is not None
            else None
        )
        stub = await self._upstreams.llm_stub()
        call = stub.Reply(
            llm_pb2.ReplyRequest(session_id=session.id, turn_id=self.turn_id, text=self.text),
            timeout=self._config.llm_deadline_s,
            wait_for_ready=False,
            metadata=metadata(session.id, self.turn_id),
        )
        done: llm_pb2.ReplyDone | None = None
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "delta" and event.delta.text:
                    await self._delta(event.delta.text, splitter)
                elif kind == "done":
                    done = event.done
        finally:
            call.cancel()
        if done is None:
            raise UpstreamError(
                ErrorCode.LLM_ERROR,
                "the llm service ended the reply without finishing it",
                status="INTERNAL",
            )
        if done.text != self.partial_text:
            _log.warning("turn.done_text_differs", turn_id=self.turn_id)
        if splitter is not None and self.clips is not None:
            for sentence in splitter.flush():
                self.clips.submit(sentence)
        await self._send(
            {
                "type": "reply.done",
                "turn_id": self.turn_id,
                "text": done.text,
                "clips": self.clips.requested if self.clips else 0,
            }
        )
        self.replied = True
        elapsed = time.perf_counter() - self.started
        self._metrics.time_to_reply_done.observe(elapsed)
        self._metrics.turns_total.labels("done", self.source).inc()
        _log.info(
            "turn.done",
            turn_id=self.turn_id,
            source=self.source,
            chars=len(done.text),
            done_ms=round(elapsed * 1000, 1),
            clips=self.clips.requested if self.clips else 0,
            completion_tokens=done.completion_tokens,
            finish_reason=done.finish_reason,
        )
        return done

    async def _delta(self, text: str, splitter: SentenceSplitter | None) -> None:
        if not self._parts:
            self._metrics.time_to_first_delta.observe(time.perf_counter() - self.started)
        self._parts.append(text)
        await self._send({"type": "reply.delta", "turn_id": self.turn_id, "text": text})
        if splitter is not None and self.clips is not None:
            for sentence in splitter.feed(text):
                self.clips.submit(sentence)

    async def _fail(self, exc: UpstreamError) -> None:
        self._metrics.turns_total.labels("error", self.source).inc()
        _log.warning("turn.failed", turn_id=self.turn_id, code=str(exc.code), error=exc.message)
        extra: dict[str, Any] = {"turn_id": self.turn_id}
        if exc.retry_after_s is not None:
            extra["retry_after_ms"] = int(exc.retry_after_s * 1000)
        await self._send(error(exc.code, exc.message, **extra))
