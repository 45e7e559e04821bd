"""The UI's JavaScript modules, run in Chromium against the static files alone (no stack).

The ``static_url`` server (conftest) serves ``static/`` plus generated WAVs under
``/fixtures/``; each test imports the module it checks into a blank page of that origin and runs
it for real: the PCM
capture worklet in an OfflineAudioContext, the speech player on the page's AudioContext, the
timeline sampler and the reconnect backoff.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page


@pytest.fixture
def blank(browser: Browser, static_url: str) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{static_url}/blank")
    yield page
    context.close()
    assert not errors, errors


WORKLET_RUN = """
async ([inputRate, freq, seconds]) => {
  const frames = Math.round(inputRate * seconds);
  const ctx = new OfflineAudioContext(1, frames, inputRate);
  await ctx.audioWorklet.addModule("/js/pcm-capture.worklet.js");
  const node = new AudioWorkletNode(ctx, "pcm-capture", {
    numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: {targetRate: 16000, chunkMs: 40},
  });
  const chunks = [];
  const levels = [];
  node.port.onmessage = (e) => {
    if (e.data.type === "pcm") chunks.push(Array.from(new Int16Array(e.data.buffer)));
    if (e.data.type === "level") levels.push(e.data.rms);
  };
  const osc = ctx.createOscillator();
  osc.frequency.value = freq;
  const gain = ctx.createGain();
  gain.gain.value = 0.5;
  osc.connect(gain).connect(node);
  node.connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  await new Promise((r) => setTimeout(r, 100));  // let the last port messages arrive
  return {chunks, levels};
}
"""


def run_worklet(page: Page, input_rate: int, freq: float, seconds: float = 1.0) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(WORKLET_RUN, [input_rate, freq, seconds])
    result["pcm"] = np.array([s for chunk in result["chunks"] for s in chunk], dtype=np.float64)
    return result


def dominant_hz(pcm: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("input_rate", [48000, 44100, 16000])
def test_worklet_resamples_to_16k_pcm_in_40ms_chunks(blank: Page, input_rate: int) -> None:
    result = run_worklet(blank, input_rate, 440.0)
    pcm = result["pcm"]
    # One second in gives 16000 samples out (the last partial chunk stays in the worklet).
    assert 16000 - 640 <= len(pcm) <= 16000 + 1
    assert all(len(chunk) == 640 for chunk in result["chunks"])
    assert abs(dominant_hz(pcm) - 440) < 5
    rms = float(np.sqrt(np.mean(pcm[1600:] ** 2))) / 32768
    assert 0.3 < rms < 0.4  # a 0.5 sine has an RMS of 0.354: the level is kept
    assert result["levels"] and 0.3 < max(result["levels"]) < 0.4


def test_worklet_filters_what_16k_cannot_hold(blank: Page) -> None:
    # 12 kHz is above the 8 kHz Nyquist limit: without the low-pass it would alias to 4 kHz.
    pcm = run_worklet(blank, 48000, 12000.0)["pcm"]
    rms = float(np.sqrt(np.mean(pcm[1600:] ** 2))) / 32768
    assert rms < 0.02


def test_mouth_follows_the_viseme_keys_at_the_nearest_drawn_level(blank: Page) -> None:
    samples = blank.evaluate(
        """async () => {
          const t = await import("/js/timeline.js");
          const tl = t.normalizeTimeline({visemes: [
            {end_ms: 100, viseme: "PP", weight: 1},
            {start_ms: 100, end_ms: 300, viseme: "aa", weight: 0.7},
            {start_ms: 300, end_ms: 350, viseme: "sil", weight: 1},
            {start_ms: 400, end_ms: 500, viseme: "ou", weight: 0.55},
          ], words: [{start_ms: 0, end_ms: 90, text: "hi"}]});
          const at = (ms) => t.mouthAt(tl.visemes, ms, [0.5, 0.75, 1]);
          return {first: tl.visemes[0].start_ms, at0: at(0), at150: at(150), at320: at(320),
                  gap: at(370), at450: at(450), after: at(900), before: at(-5),
                  word: t.wordIndexAt(tl.words, 50), noWord: t.wordIndexAt(tl.words, -5)};
        }"""
    )
    assert samples["first"] == 0  # a start_ms left out of the JSON is 0
    assert samples["at0"] == {"viseme": "PP", "level": 1}
    assert samples["at150"] == {"viseme": "aa", "level": 0.75}
    assert samples["at450"] == {"viseme": "ou", "level": 0.5}
    rest = {"viseme": "sil", "level": 1}
    assert samples["at320"] == samples["gap"] == samples["after"] == samples["before"] == rest
    assert samples["word"] == 0 and samples["noWord"] == -1


def test_gestures_move_the_rig_as_the_manifest_says(blank: Page) -> None:
    result = blank.evaluate(
        """async () => {
          const m = await (await fetch("/rig/manifest.json")).json();
          const r = await import("/js/rig-motion.js");
          const tl = {gestures: [
            {start_ms: 1000, duration_ms: 1500, gesture: "wave", intensity: 1},
            {start_ms: 1200, duration_ms: 600, gesture: "brow_raise", intensity: 0.5},
            {start_ms: 1300, duration_ms: 400, gesture: "no-such-gesture", intensity: 1},
          ], visemes: []};
          const wave = m.gestures.wave;
          const env = [0, 1000 + wave.attack_ms / 2, 1500, 2500, 2600].map(
            (ms) => r.envelope(wave, ms - 1000, 1500));
          const mid = r.gesturePose(m, tl, 1500);
          const before = r.gesturePose(m, tl, 999);
          const life = {blink: 0, sway: 0, offsets: {}};
          const pose = r.composePose(m, {clip: {timeline: tl}, ms: 1500}, life, 0);
          const blinking = r.composePose(m, null, {blink: 1, sway: 0, offsets: {}}, 0);
          return {env, mid, before, wave, brow: m.gestures.brow_raise.pose["brows.dy"],
                  eyes: pose.eyes, closed: blinking.eyes, mouth: pose.mouth};
        }"""
    )
    env = result["env"]
    assert env[0] == 0 and env[1] == pytest.approx(0.5) and env[2] == 1 and env[4] == 0
    wave = result["wave"]
    mid = result["mid"]
    elbow = wave["pose"]["arm_r.elbow"] + wave["oscillate"]["arm_r.elbow"][0] * math.sin(
        2 * math.pi * 500 / wave["oscillate"]["arm_r.elbow"][1]
        + wave["oscillate"]["arm_r.elbow"][2]
    )
    assert mid["values"]["arm_r.elbow"] == pytest.approx(elbow)
    assert mid["values"]["brows.dy"] == pytest.approx(0.5 * result["brow"])
    assert mid["hands"] == wave["hands"]
    assert result["before"] == {"values": {}, "hands": {}}
    assert result["eyes"] == "open" and result["closed"] == "closed"
    assert result["mouth"] == {"viseme": "sil", "level": 1, "smile": False}


def test_backoff_grows_and_is_capped(blank: Page) -> None:
    delays = blank.evaluate(
        """async () => {
          const c = await import("/js/connection.js");
          return [0, 1, 2, 3, 10, 30].map((n) => c.backoffDelay(n, () => 0.5));
        }"""
    )
    assert delays == [400, 800, 1600, 3200, 10000, 10000]


def test_speech_player_schedules_clips_back_to_back_and_stops_at_once(blank: Page) -> None:
    result = blank.evaluate(
        """async () => {
          const {SpeechPlayer} = await import("/js/speech-player.js");
          const {audioContext} = await import("/js/audio-context.js");
          const ctx = audioContext();
          await ctx.resume();
          const player = new SpeechPlayer();
          const clip = (id, seq) => ({clip_id: id, seq, turn_id: "t1",
                                      audio_url: `/fixtures/${id}.wav`, timeline: {}});
          await Promise.all([player.enqueue(clip("a", 1)), player.enqueue(clip("b", 2)),
                             player.enqueue(clip("c", 3))]);
          const plan = player.scheduled.map(
            (e) => ({id: e.clip.clip_id, start: e.start, end: e.end}));
          await new Promise((r) => setTimeout(r, 300));
          const heard = player.current();
          const levelWhilePlaying = player.level();
          const stopped = player.stop();
          await new Promise((r) => setTimeout(r, 150));
          return {plan, heard: heard && heard.clip.clip_id, heardMs: heard && heard.ms,
                  levelWhilePlaying, stopped, busyAfter: player.busy,
                  levelAfter: player.level(), state: ctx.state};
        }"""
    )
    plan = result["plan"]
    assert [p["id"] for p in plan] == ["a", "b", "c"]
    for before, after in itertools.pairwise(plan):
        assert after["start"] == pytest.approx(before["end"], abs=1e-6)  # gapless
    assert plan[0]["end"] - plan[0]["start"] == pytest.approx(0.6, abs=0.01)
    assert result["state"] == "running"
    assert result["heard"] == "a" and 0 < result["heardMs"] < 600
    assert result["levelWhilePlaying"] > 0.05
    assert result["stopped"] is True and result["busyAfter"] is False
    assert result["levelAfter"] < 0.001


def test_speech_player_reports_a_missing_clip_and_plays_the_next(blank: Page) -> None:
    result = blank.evaluate(
        """async () => {
          const {SpeechPlayer} = await import("/js/speech-player.js");
          const player = new SpeechPlayer();
          const failures = [];
          player.addEventListener("failed", (e) => failures.push(e.detail.clip.clip_id));
          await player.enqueue({clip_id: "gone", audio_url: "/fixtures/gone.wav", timeline: {}});
          await player.enqueue({clip_id: "b", audio_url: "/fixtures/b.wav", timeline: {}});
          const ids = player.scheduled.map((e) => e.clip.clip_id);
          player.stop();
          return {failures, ids};
        }"""
    )
    assert result == {"failures": ["gone"], "ids": ["b"]}
