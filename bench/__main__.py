"""``make bench``: latency and throughput of the local stack on this machine.

Starts the stack the way ``make run`` does (on free ports, state in a temp folder), runs the
scenarios, prints a table and writes ``bench-results/bench.json``.

Scenarios (``--only`` picks some):
- ``text``:   sequential text turns through ``/ws`` (avatar off) and the same turns straight
              against the llm gRPC service; the difference is the edge's own overhead.
- ``stt``:    end of speech to final transcript, decode real-time factor, WER per backend on
              Piper's and real human speech (bench/stt.py).
- ``avatar``: text to first ``clip.speech`` and ``clip.ready`` through ``/ws``, render RTF,
              lip-sync offset, and clip throughput with 4 sessions at once.
- ``contention``: the idle page's CPU in headless Chromium, and turns while one core is busy
              and while the page is open (bench/contention.py).
- ``memory``: 10 conversations that state a fact, ask two unrelated questions and ask for the
              fact back; recall of the default model (bench/memory.py).
- ``load``:   1, 4, 8 and 16 sessions at once through ``/ws``, avatar off, rig (speech for the
              live rig) and video: first delta, first clip.speech, turns/s, errors
              (bench/load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from avatarchat.devstack import Stack, installed_services
from avatarchat.nats_server import free_port
from bench.load import AVATAR_MODES

PROMPTS = [
    "Hi there, how are you today?",
    "What is your favourite colour?",
    "Tell me something nice about the sea.",
    "Can you recommend a good book?",
    "What do you like to do on weekends?",
    "How does a rainbow form?",
    "Say something cheerful.",
    "What is the capital of France?",
    "Do you like music?",
    "What should I cook tonight?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarise(name: str, values: list[float], unit: str = "ms") -> dict[str, Any]:
    return {
        "metric": name,
        "unit": unit,
        "n": len(values),
        "p50": round(percentile(values, 0.5), 2),
        "p95": round(percentile(values, 0.95), 2),
        "mean": round(statistics.fmean(values), 2) if values else None,
    }


async def scenario_text(stack: Stack, turns: int) -> list[dict[str, Any]]:
    from bench.edge_ws import run_ws
    from bench.llm_direct import run_direct

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(turns)]
    ws_url = stack.edge_url.replace("http", "ws", 1) + "/ws"
    await run_ws(ws_url, prompts[:2])  # warm-up: model caches, first connections
    ws = await run_ws(ws_url, prompts)
    direct = await run_direct(f"127.0.0.1:{stack.ports['llm']}", prompts, "bench-direct")
    rows = [
        summarise("ws: time to first reply.delta", [t["ttfd_ms"] for t in ws]),
        summarise("ws: time to reply.done", [t["done_ms"] for t in ws]),
        summarise("grpc: time to first delta", [t["ttfd_ms"] for t in direct]),
        summarise("grpc: time to done", [t["done_ms"] for t in direct]),
    ]
    overhead = [w["ttfd_ms"] - d["ttfd_ms"] for w, d in zip(ws, direct, strict=True)]
    rows.append(summarise("edge+ws overhead on first delta (paired)", overhead))
    rows.append(
        {
            "metric": "edge+ws overhead, p50(ws) - p50(grpc)",
            "unit": "ms",
            "value": round(rows[0]["p50"] - rows[2]["p50"], 2),
        }
    )
    return rows


async def scenario_stt(stack: Stack) -> list[dict[str, Any]]:
    from bench.stt import run

    result = await run(f"127.0.0.1:{stack.ports['stt']}")
    return [{"metric": key, "value": value} for key, value in result.items()]


async def scenario_contention(stack: Stack, turns: int) -> list[dict[str, Any]]:
    from bench.contention import run

    return await run(stack.edge_url, [PROMPTS[i % len(PROMPTS)] for i in range(turns)])


async def scenario_avatar(stack: Stack, turns: int) -> list[dict[str, Any]]:
    from bench.avatar_clips import throughput
    from bench.avatar_render import run as render_run
    from bench.edge_ws import run_ws

    ws_url = stack.edge_url.replace("http", "ws", 1) + "/ws"
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(turns)]
    await run_ws(ws_url, prompts[:1], avatar=True)
    ws = await run_ws(ws_url, prompts, avatar=True)
    rows = [
        summarise(
            "ws: text to first clip.speech",
            [t["first_clip_speech_ms"] for t in ws if t.get("first_clip_speech_ms") is not None],
        ),
        summarise(
            "ws: text to first clip.ready",
            [t["first_clip_ready_ms"] for t in ws if t.get("first_clip_ready_ms") is not None],
        ),
    ]
    assert stack.nats is not None
    tp = await throughput(f"127.0.0.1:{stack.ports['avatar']}", stack.nats.url, sessions=4)
    rows += [{"metric": f"throughput: {k}", "value": v} for k, v in tp.items()]
    render = await asyncio.to_thread(render_run)
    rows += [{"metric": f"render: {k}", "value": v} for k, v in render.items()]
    return rows


async def scenario_memory(stack: Stack) -> list[dict[str, Any]]:
    from bench.memory import run

    result = await run(f"127.0.0.1:{stack.ports['llm']}")
    rows = [
        {"metric": f"recall ({result['model']})", "value": f"{result['recalled']}/10"},
        summarise("first delta, all turns", result["first_delta_ms"]),
    ]
    rows += [
        {"metric": f"{'ok ' if a['recalled'] else 'MISS'} {a['question']}", "value": a["answer"]}
        for a in result["answers"]
    ]
    return rows


async def scenario_load(stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.load import run

    rows: list[dict[str, Any]] = []
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.load_turns)]
    levels = tuple(int(n) for n in args.load_levels.split(","))
    for case in await run(stack.edge_url, prompts, levels, args.load_avatar):
        name = f"{case['sessions']:>2} sessions, avatar {case['avatar']:<5}"
        rows.append(summarise(f"{name}: first delta", case["first_delta_ms"]))
        if case["avatar"] != "off":
            rows.append(summarise(f"{name}: first clip.speech", case["first_clip_speech_ms"]))
        rows.append({"metric": f"{name}: turns/s", "value": case["turns_per_s"]})
        rows.append(
            {"metric": f"{name}: turns, wall s", "value": f"{case['turns']} in {case['wall_s']}"}
        )
        rows.append(
            {
                "metric": f"{name}: errors",
                "value": case["errors"],
                **{
                    k: case[k]
                    for k in ("unfinished_clips", "error_samples", "llm_threads", "avatar_workers")
                },
            }
        )
    return rows


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    for scenario, rows in results.items():
        print(f"\n## {scenario}")
        print(f"{'metric':<48} {'n':>4} {'p50':>10} {'p95':>10} {'value':>12}")
        for row in rows:
            print(
                f"{row['metric']:<48} {row.get('n', ''):>4} {row.get('p50', ''):>10} "
                f"{row.get('p95', ''):>10} {_fmt(row.get('value', '')):>12}"
            )


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


async def main_async(args: argparse.Namespace) -> int:
    default = {"text", "stt", "avatar", "contention", "memory", "load"}
    only = set(args.only.split(",")) if args.only else default
    services = installed_services()
    needed = {
        "text": {"llm", "edge"},
        "stt": {"stt"},
        "avatar": {"avatar", "edge", "llm"},
        "contention": {"avatar", "edge", "llm"},
        "memory": {"llm"},
        "load": {"avatar", "edge", "llm"},
    }
    scenarios = ("text", "stt", "avatar", "contention", "memory", "load")
    runnable = [s for s in scenarios if s in only and needed[s] <= set(services)]
    skipped = sorted(only - set(runnable))
    if skipped:
        print(f"skipping {', '.join(skipped)}: service not installed", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="avatarchat-bench-") as state:
        ports = {name: free_port() for name in ("stt", "llm", "avatar", "edge")}
        env = {"AVATARCHAT_LLM_METRICS_PORT": str(free_port())}
        stack = Stack(state_dir=Path(state), ports=ports, env=env, log_prefix=False)
        started = time.perf_counter()
        await asyncio.to_thread(stack.start)
        print(f"stack up in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        try:
            if "text" in runnable:
                results["text (llm + edge)"] = await scenario_text(stack, args.turns)
            if "stt" in runnable:
                results["stt (whisper default, pocketsphinx beside)"] = await scenario_stt(stack)
            if "avatar" in runnable:
                results["avatar (piper + renderer)"] = await scenario_avatar(
                    stack, args.avatar_turns
                )
            if "contention" in runnable:
                results["contention (2 cores shared)"] = await scenario_contention(
                    stack, args.contention_turns
                )
            if "memory" in runnable:
                results["memory (recall after two unrelated turns)"] = await scenario_memory(stack)
            if "load" in runnable:
                results["load (sessions at once)"] = await scenario_load(stack, args)
        finally:
            await asyncio.to_thread(stack.stop)
    print_table(results)
    out = Path(args.out)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_json(out, {**report, "results": results})
    print(f"\nwritten to {out}")
    return 0


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _avatar_modes(value: str) -> tuple[str, ...]:
    modes = tuple(mode.strip() for mode in value.split(","))
    unknown = [mode for mode in modes if mode not in AVATAR_MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown avatar mode {', '.join(unknown)}; expected {', '.join(AVATAR_MODES)}"
        )
    return modes


def main() -> int:
    parser = argparse.ArgumentParser(description="avatarchat benchmarks")
    parser.add_argument(
        "--only", default="", help="comma-separated: text,stt,avatar,contention,memory,load"
    )
    parser.add_argument("--turns", type=int, default=30, help="text turns")
    parser.add_argument("--avatar-turns", type=int, default=10, help="turns with the avatar on")
    parser.add_argument("--contention-turns", type=int, default=10, help="turns per load case")
    parser.add_argument("--load-turns", type=int, default=3, help="turns per load session")
    parser.add_argument("--load-levels", default="1,4,8,16", help="sessions at once, per case")
    parser.add_argument(
        "--load-avatar",
        default=",".join(AVATAR_MODES),
        type=_avatar_modes,
        help="comma-separated avatar modes: off (text), rig (speech for the live rig), video",
    )
    parser.add_argument("--out", default="bench-results/bench.json")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
