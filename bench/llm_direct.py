"""Bench scenario: text turns straight against the llm gRPC service (no edge, no WebSocket).

``run_direct`` holds one conversation (one session) turn by turn and times each turn from the
moment the request is sent: to the first ``delta`` and to ``done``. Comparing it with the same
turns through ``/ws`` shows the edge's own overhead.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from avatarchat.v1 import llm_pb2, llm_pb2_grpc


async def run_direct(addr: str, prompts: list[str], session_id: str) -> list[dict[str, Any]]:
    """Runs ``prompts`` as sequential turns of ``session_id``; one timing dict per turn."""
    results: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        await stub.ResetHistory(llm_pb2.ResetHistoryRequest(session_id=session_id), timeout=10)
        for n, text in enumerate(prompts, start=1):
            turn_id = f"bench-{n}"
            metadata = (("session-id", session_id), ("turn-id", turn_id))
            request = llm_pb2.ReplyRequest(session_id=session_id, turn_id=turn_id, text=text)
            started = time.perf_counter()
            first_delta: float | None = None
            done: llm_pb2.ReplyDone | None = None
            async for event in stub.Reply(request, timeout=120, metadata=metadata):
                if event.WhichOneof("event") == "delta" and first_delta is None:
                    first_delta = time.perf_counter()
                elif event.WhichOneof("event") == "done":
                    done = event.done
            finished = time.perf_counter()
            if done is None:
                raise RuntimeError(f"turn {n}: the reply stream ended without done")
            results.append(
                {
                    "ttfd_ms": ((first_delta or finished) - started) * 1000,
                    "done_ms": (finished - started) * 1000,
                    "prompt_tokens": done.prompt_tokens,
                    "completion_tokens": done.completion_tokens,
                }
            )
    return results
