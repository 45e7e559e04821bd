"""Avatar animation core on this machine: Piper speed, lip-sync offset, video render speed.

Over the lip-sync reference sentences (``sync_quality.REFERENCE_SENTENCES``):

- Piper synthesis real-time factor (synthesis time / audio duration, default ONNX threads);
- lip-sync offset: the lag of the peak of the cross-correlation between the mouth-openness
  track and the audio energy envelope, per sentence (mean and max of |lag|, and mean lag);
- render real-time factor of the local renderer on one core: the render thread is pinned to a
  single CPU and libx264 runs with one thread. Reported both as wall time and as the thread's
  CPU time (the latter is steadier on a shared machine). The rig is drawn and the sprite caches
  warmed by one render first, and the drawing time is reported separately.

The machine's 1-minute load average is reported too: on a shared machine every wall-clock
figure (Piper's especially) grows with it.

    python -m bench.avatar_render
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any

from avatarchat.inline_tags import parse_tags
from avatarchat_avatar.backends.speech.piper import PiperSpeech
from avatarchat_avatar.rendering.mp4 import compositor, frame_count, render_mp4
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.timeline.build import build_timeline
from avatarchat_avatar.timeline.lipsync import viseme_track
from avatarchat_avatar.timeline.sync_quality import REFERENCE_SENTENCES, lipsync_lag_ms


def _synthesise(backend: PiperSpeech) -> tuple[list[Speech], list[float]]:
    async def speak() -> tuple[list[Speech], list[float]]:
        await backend.load()
        await backend.synthesize("Warming up.")
        speeches, seconds = [], []
        for sentence in REFERENCE_SENTENCES:
            start = time.perf_counter()
            speeches.append(await backend.synthesize(parse_tags(sentence)[0]))
            seconds.append(time.perf_counter() - start)
        return speeches, seconds

    return asyncio.run(speak())


def _pin_to_one_core() -> set[int] | None:
    """Pins the calling thread to one CPU; returns the previous set to restore."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous)})
    return previous


def run() -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    backend = PiperSpeech()
    speeches, synth_seconds = _synthesise(backend)
    audio_s = [s.duration_ms / 1000 for s in speeches]
    lags = [lipsync_lag_ms(s.pcm, s.sample_rate, viseme_track(s), s.duration_ms) for s in speeches]
    timelines = [build_timeline(s, parse_tags(s.text)[1]) for s in speeches]

    previous = _pin_to_one_core()
    try:
        start = time.perf_counter()
        compositor()
        rig_build_s = time.perf_counter() - start
        render_mp4(speeches[0], timelines[0], threads=1)  # warm the sprite caches
        wall, cpu, sizes, frames = 0.0, 0.0, 0, 0
        for speech, timeline in zip(speeches, timelines, strict=True):
            wall_start, cpu_start = time.perf_counter(), time.thread_time()
            sizes += len(render_mp4(speech, timeline, threads=1))
            cpu += time.thread_time() - cpu_start
            wall += time.perf_counter() - wall_start
            frames += frame_count(speech.duration_ms)
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)

    total_audio = sum(audio_s)
    return {
        "sentences": len(speeches),
        "audio_s": round(total_audio, 2),
        "piper_rtf": round(sum(synth_seconds) / total_audio, 3),
        "piper_rtf_max": round(max(t / a for t, a in zip(synth_seconds, audio_s, strict=True)), 3),
        "lipsync_lag_mean_abs_ms": round(statistics.fmean(abs(lag) for lag in lags), 1),
        "lipsync_lag_max_abs_ms": round(max(abs(lag) for lag in lags), 1),
        "lipsync_lag_mean_ms": round(statistics.fmean(lags), 1),
        "render_rtf_wall_1core": round(wall / total_audio, 3),
        "render_rtf_cpu_1core": round(cpu / total_audio, 3),
        "render_ms_per_frame_cpu": round(cpu * 1000 / frames, 2),
        "render_rig_build_s": round(rig_build_s, 2),
        "mp4_kbit_per_s": round(sizes * 8 / 1000 / total_audio, 1),
        "machine_load_1min": round(max(load_before, os.getloadavg()[0]), 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
