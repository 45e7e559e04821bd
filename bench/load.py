"""Bench scenario ``load``: many conversations at once through the edge's ``/ws``.

For each level (1, 4, 8, 16 sessions) and each avatar mode, that many sockets run at once; each
sends its next message as soon as the previous turn is complete (with the avatar on, once its
clips are finished), ``turns`` times. The avatar modes (``AVATAR_MODES``):

- ``off``: text only;
- ``rig``: speech and a viseme/gesture timeline per sentence, which the web page's live rig
  draws in the browser (the page's default): no video is rendered;
- ``video``: also an MP4 rendered per sentence (the page's video mode, and any client that does
  not turn video off).

Measured at the client, per turn, from the send: the first ``reply.delta`` and the first
``clip.speech``. Reported per case: p50/p95 of both, turns per second over the case's wall
time, errors (error frames, timeouts, closed sockets) and unfinished clips. Issue 11's
targets on 2 cores with the avatar on, at 8 sessions: first delta <= 800 ms p50 and <= 2 s
p95, first clip.speech <= 2.5 s p50, no errors, and 24 turns well under 35 s / 3.

The CPU split is whatever the stack was started with: ``AVATARCHAT_LLM_THREADS`` for the llm
engine; ``AVATARCHAT_AVATAR_WORKERS`` (renderers), ``_RENDER_NICE`` and ``_TTS_THREADS`` for the
avatar pool (recorded in each row).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from bench.edge_ws import run_ws

LEVELS = (1, 4, 8, 16)
AVATAR_MODES = ("off", "rig", "video")


async def _session(
    url: str, prompts: list[str], mode: str
) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return await run_ws(
            url,
            prompts,
            avatar=mode != "off",
            video=mode == "video",
            turn_timeout_s=60,
            clips_timeout_s=60,
        ), None
    except Exception as exc:  # a failed session counts its missing turns as errors
        return [], f"{type(exc).__name__}: {exc}"[:300]


def _conversation(prompts: list[str], index: int, case: str) -> list[str]:
    """Session ``index``'s turns in ``case``. Its first message is unique within the run, so no
    session finds its prompt in the engine's cache from another case (only the system prompt is
    shared, as between real users), and the same in every run, so runs ask the same questions
    and their figures compare."""
    turns = [prompts[(index + n) % len(prompts)] for n in range(len(prompts))]
    visitor = hashlib.sha256(f"{case}/{index}".encode()).hexdigest()[:8]
    turns[0] = f"Hello, I am visitor {visitor}. {turns[0]}"
    return turns


async def run_case(url: str, prompts: list[str], sessions: int, mode: str) -> dict[str, Any]:
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(
            _session(url, _conversation(prompts, i, f"{sessions}/{mode}"), mode)
            for i in range(sessions)
        )
    )
    wall_s = time.perf_counter() - started
    turns = [turn for result, _ in outcomes for turn in result]
    failures = [error for _, error in outcomes if error]
    deltas = [t["ttfd_ms"] for t in turns if t["ttfd_ms"] is not None]
    speech = [t["first_clip_speech_ms"] for t in turns if t["first_clip_speech_ms"] is not None]
    return {
        "sessions": sessions,
        "avatar": mode,
        "turns": len(turns),
        "wall_s": round(wall_s, 2),
        "turns_per_s": round(len(turns) / wall_s, 3) if wall_s else None,
        "first_delta_ms": deltas,
        "first_clip_speech_ms": speech,
        "errors": len(failures) * len(prompts),  # a failed session completes no turn
        "unfinished_clips": sum(t["clips"] - t["clips_finished"] for t in turns),
        "error_samples": failures[:3],
        "llm_threads": os.environ.get("AVATARCHAT_LLM_THREADS", "default"),
        "avatar_workers": os.environ.get("AVATARCHAT_AVATAR_WORKERS", "default"),
        "avatar_render_nice": os.environ.get("AVATARCHAT_AVATAR_RENDER_NICE", "default"),
        "avatar_tts_threads": os.environ.get("AVATARCHAT_AVATAR_TTS_THREADS", "default"),
    }


async def run(
    edge_url: str,
    prompts: list[str],
    levels: tuple[int, ...] = LEVELS,
    avatar_modes: tuple[str, ...] = AVATAR_MODES,
) -> list[dict[str, Any]]:
    url = edge_url.replace("http", "ws", 1) + "/ws"
    await run_ws(url, prompts[:1], avatar=True)  # warm-up: connections, caches
    cases = []
    for mode in avatar_modes:
        for sessions in levels:
            cases.append(await run_case(url, prompts, sessions, mode))
    return cases
