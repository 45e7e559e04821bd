"""Turn control for one connection: start, interrupt (barge-in) and reset, never blocking the
frame loop.

The frame loop only queues what a frame asks for and goes back to reading. One worker task
carries the requests out in order: a new turn first stops the running one and cancels its
pending clips (a broadcast, ``clips.broadcast_cancel``), then starts as its own task, so an
``interrupt`` is handled while the reply streams. A failure becomes an error frame; the
session carries on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from avatarchat import log
from avatarchat.v1 import llm_pb2

from .clips import broadcast_cancel
from .config import EdgeConfig
from .metrics import EdgeMetrics
from .nats_link import NatsLink
from .protocol import ErrorCode, ProtocolError, error
from .sessions import Session, new_turn_id
from .turns import Turn
from .upstream import UpstreamError, Upstreams, metadata
from .worker_watch import WorkerWatch

_log = log.get("avatarchat.edge.turns")

Send = Callable[[dict[str, Any]], Awaitable[bool]]
Operation = Callable[[], Awaitable[None]]


class TurnController:
    def __init__(
        self,
        session: Session,
        *,
        config: EdgeConfig,
        upstreams: Upstreams,
        nats: NatsLink,
        workers: WorkerWatch,
        metrics: EdgeMetrics,
        send: Send,
    ) -> None:
        self.session = session  # the connection's current session; it sets a resumed one
        self._config = config
        self._upstreams = upstreams
        self._nats = nats
        self._workers = workers
        self._metrics = metrics
        self._send = send
        self._queue: asyncio.Queue[tuple[Operation, asyncio.Future[None] | None]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._turn: Turn | None = None
        self._turn_task: asyncio.Task[None] | None = None

    @property
    def avatar_available(self) -> bool:
        return self._upstreams.avatar.deployed and self._nats.enabled

    @property
    def busy(self) -> bool:
        """A turn is running or a request is waiting (the socket is not idle)."""
        turn_running = self._turn_task is not None and not self._turn_task.done()
        return turn_running or not self._queue.empty()

    # --- what the frame loop asks for (returns at once) -----------------------------------

    def start_turn(self, text: str, *, source: str, turn_id: str | None = None) -> None:
        self._submit(lambda: self._start(text, source, turn_id or new_turn_id()))

    def interrupt(self, reason: str) -> None:
        self._submit(lambda: self._interrupt(reason))

    def reset(self) -> None:
        self._submit(self._reset)

    async def halt(self, reason: str) -> None:
        """Drops queued requests and stops the reply, for a session change or a takeover.

        The clips already requested are not cancelled: the session goes on (on another socket,
        or resumed later), and their events wait for it in the stream.
        """
        while not self._queue.empty():
            self._queue.get_nowait()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(lambda: self._stop_turn(reason, finish_clips=True), done)
        await done

    async def close(self) -> None:
        """Stops the running reply and the worker (the socket is gone).

        The clip requests of a turn that has replied are let finish, so a resume gets every
        clip that ``reply.done`` announced.
        """
        await self._stop_turn("closed", announce=False, finish_clips=True)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.wait({worker})

    def _submit(self, operation: Operation, done: asyncio.Future[None] | None = None) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=f"turns-{self.session.id}")
        self._queue.put_nowait((operation, done))

    async def _work(self) -> None:
        while True:
            operation, done = await self._queue.get()
            try:
                with log.bound_contextvars(session_id=self.session.id):
                    await self._guarded(operation)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _guarded(self, operation: Operation) -> None:
        try:
            await operation()
        except ProtocolError as exc:
            await self._send(error(exc.code, exc.message, **exc.extra))
        except UpstreamError as exc:
            await self._send(error(exc.code, exc.message))
        except Exception:
            _log.exception("turns.request_failed", session_id=self.session.id)
            await self._send(
                error(ErrorCode.INTERNAL, "the server failed to handle that request; see its log")
            )

    # --- the work -------------------------------------------------------------------------

    async def _start(self, text: str, source: str, turn_id: str) -> None:
        await self._stop_turn("barge_in")
        await self.cancel_pending_clips()
        turn = Turn(
            session=self.session,
            turn_id=turn_id,
            text=text,
            source=source,
            config=self._config,
            upstreams=self._upstreams,
            workers=self._workers,
            metrics=self._metrics,
            send=self._send,
        )
        self.session.note_turn(turn.turn_id, turn.started)
        self._turn = turn
        self._turn_task = asyncio.create_task(self._run(turn), name=turn.turn_id)

    async def _run(self, turn: Turn) -> None:
        with log.bound_contextvars(session_id=turn.session.id, turn_id=turn.turn_id):
            try:
                await turn.run()
            except Exception:  # a bug: the turn ends, the session carries on
                _log.exception("turn.crashed")
                await self._send(
                    error(
                        ErrorCode.INTERNAL,
                        "the turn failed; see the server log",
                        turn_id=turn.turn_id,
                    )
                )

    async def _interrupt(self, reason: str) -> None:
        await self._stop_turn(reason)
        await self.cancel_pending_clips()

    async def _stop_turn(
        self, reason: str, *, announce: bool = True, finish_clips: bool = False
    ) -> None:
        """Stops the running turn; with ``finish_clips``, a turn that has replied may first
        send its remaining clip requests (a few milliseconds each)."""
        task, turn = self._turn_task, self._turn
        self._turn_task = self._turn = None
        if task is None or turn is None or task.done():
            return
        if finish_clips and turn.replied:
            await asyncio.wait({task}, timeout=self._config.rpc_deadline_s)
        task.cancel()
        await asyncio.wait({task})
        if turn.replied or not announce:
            return  # only its clip requests were still running; those are cancelled too
        self._metrics.turns_total.labels("interrupted", turn.source).inc()
        _log.info("turn.interrupted", turn_id=turn.turn_id, reason=reason)
        await self._send(
            {
                "type": "reply.interrupted",
                "turn_id": turn.turn_id,
                "text": turn.partial_text,
                "reason": reason,
            }
        )

    async def cancel_pending_clips(self) -> None:
        """Tells every avatar process to drop the session's clips so far (never waits)."""
        if self.session.cancel_clips_so_far() and self.avatar_available:
            await broadcast_cancel(self._nats, self.session.id)

    async def _reset(self) -> None:
        await self._interrupt("reset")
        try:
            stub = await self._upstreams.llm_stub()
            response = await stub.ResetHistory(
                llm_pb2.ResetHistoryRequest(session_id=self.session.id),
                timeout=self._config.rpc_deadline_s,
                wait_for_ready=False,
                metadata=metadata(self.session.id),
            )
        except grpc.aio.AioRpcError as exc:
            raise self._upstreams.llm.error(exc) from None
        await self._send({"type": "reset.done", "removed": response.removed})
