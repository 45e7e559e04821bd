"""Avatar clip throughput: several sessions asking for clips at once, straight over gRPC.

Each session sends its sentences the way the edge does during a streamed reply (one
GenerateClip per sentence, increasing ``seq``, without waiting), and the events are followed
on NATS. Reported: clips per second over the whole run, and per clip the time from its
GenerateClip call to its speech-ready and clip-ready events.

    python -m bench.avatar_clips --addr 127.0.0.1:50053 --nats nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import grpc
import nats

from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_avatar.watch import EventWatcher

SENTENCES = [
    "Hello there, it is lovely to see you again today.",
    "The sea was calm, and the boats rocked gently in the harbour.",
    "Would you like me to tell you a short story before bed?",
    "First we chop the onions, then we fry them until golden.",
    "Yes, that sounds like a wonderful plan for the weekend.",
    "Rainbows appear when sunlight is bent and split by raindrops.",
]


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


async def _session(
    stub: avatar_pb2_grpc.AvatarServiceStub,
    watcher: EventWatcher,
    session_id: str,
    sentences: list[str],
) -> list[dict[str, Any]]:
    sent: list[tuple[str, float]] = []
    for seq, text in enumerate(sentences, start=1):
        started = time.perf_counter()
        reply = await stub.GenerateClip(
            avatar_pb2.GenerateClipRequest(
                session_id=session_id, turn_id="bench", seq=seq, text=text
            ),
            timeout=10,
        )
        sent.append((reply.clip_id, started))
    results = []
    for clip_id, started in sent:
        terminal = await watcher.wait_terminal(clip_id, timeout_s=300)
        speech = next((r for r in watcher.of_clip(clip_id) if r.kind == "speech_ready"), None)
        results.append(
            {
                "ok": terminal.kind == "clip_ready",
                "speech_ms": (speech.at - started) * 1000 if speech else None,
                "ready_ms": (terminal.at - started) * 1000,
                "audio_ms": speech.event.speech_ready.timeline.duration_ms if speech else 0,
            }
        )
    return results


async def throughput(
    addr: str, nats_url: str, sessions: int = 4, sentences: int = 3
) -> dict[str, Any]:
    """Clips per second with ``sessions`` sessions at once, ``sentences`` clips each."""
    nc = await nats.connect(nats_url, name="avatarchat-bench")
    run = uuid.uuid4().hex[:8]
    try:
        async with grpc.aio.insecure_channel(addr) as channel, EventWatcher(nc) as watcher:
            stub = avatar_pb2_grpc.AvatarServiceStub(channel)
            await _session(stub, watcher, f"bench-{run}-warmup", SENTENCES[:1])
            started = time.perf_counter()
            per_session = await asyncio.gather(
                *(
                    _session(
                        stub,
                        watcher,
                        f"bench-{run}-{i}",
                        [SENTENCES[(i + j) % len(SENTENCES)] for j in range(sentences)],
                    )
                    for i in range(sessions)
                )
            )
            wall_s = time.perf_counter() - started
    finally:
        await nc.drain()
    clips = [clip for session in per_session for clip in session]
    ok = [c for c in clips if c["ok"]]
    speech = [c["speech_ms"] for c in clips if c["speech_ms"] is not None]
    ready = [c["ready_ms"] for c in ok]
    audio_s = sum(c["audio_ms"] for c in ok) / 1000
    return {
        "sessions": sessions,
        "clips": len(clips),
        "failed": len(clips) - len(ok),
        "wall_s": round(wall_s, 2),
        "clips_per_s": round(len(ok) / wall_s, 3),
        "audio_s_per_wall_s": round(audio_s / wall_s, 2),
        "speech_ready_p50_ms": _p(speech, 0.5),
        "speech_ready_p95_ms": _p(speech, 0.95),
        "clip_ready_p50_ms": _p(ready, 0.5),
        "clip_ready_p95_ms": _p(ready, 0.95),
        "clip_ready_mean_ms": round(statistics.fmean(ready), 1) if ready else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50053")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(throughput(args.addr, args.nats, args.sessions, args.sentences))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
