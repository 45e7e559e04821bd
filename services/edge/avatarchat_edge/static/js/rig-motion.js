// The rig's pose at a moment, evaluated from the manifest exactly as the avatar service's
// renderer does (docs/timeline.md): every gesture ramps in over its attack and out over its
// release (smoothstep) and adds intensity × envelope × (pose + oscillation) to its channels;
// overlapping gestures add up, and the sum is clamped to the manifest's limits; the strongest
// gesture over the threshold picks each hand's drawing. Idle sines and the page's idle life
// (blinks, mood) are part of the sum.

import { mouthAt } from "./timeline.js";

function smoothstep(x) {
  const t = Math.max(0, Math.min(1, x));
  return t * t * (3 - 2 * t);
}

/** 0 outside the gesture, ramping to 1 over the attack and back to 0 over the release. */
export function envelope(motion, elapsedMs, durationMs) {
  if (elapsedMs < 0 || elapsedMs > durationMs || durationMs <= 0) return 0;
  const attack = Math.min(motion.attack_ms, durationMs / 2);
  const release = Math.min(motion.release_ms, durationMs / 2);
  if (elapsedMs < attack) return smoothstep(elapsedMs / attack);
  if (elapsedMs > durationMs - release) return smoothstep((durationMs - elapsedMs) / release);
  return 1;
}

function addSines(values, channel, sines, tMs, scale = 1) {
  let sum = 0;
  for (const [amplitude, periodMs, phase] of sines) {
    sum += amplitude * Math.sin((2 * Math.PI * tMs) / periodMs + phase);
  }
  values[channel] = (values[channel] || 0) + scale * sum;
}

/** Gesture channels and hand drawings of `timeline` at `ms` into the clip. */
export function gesturePose(manifest, timeline, ms) {
  const values = {};
  const best = {}; // arm → [weight, hand]
  const threshold = manifest.thresholds.hand_min_weight;
  for (const key of timeline.gestures) {
    if (key.start_ms > ms) break;
    const motion = manifest.gestures[key.gesture];
    if (!motion) continue; // a gesture newer than this rig: ignored
    const elapsed = ms - key.start_ms;
    const weight = key.intensity * envelope(motion, elapsed, key.duration_ms);
    if (weight <= 0) continue;
    for (const [channel, value] of Object.entries(motion.pose)) {
      values[channel] = (values[channel] || 0) + weight * value;
    }
    for (const [channel, wave] of Object.entries(motion.oscillate)) {
      addSines(values, channel, [wave], elapsed, weight);
    }
    for (const [arm, hand] of Object.entries(motion.hands)) {
      if (weight >= threshold && weight > (best[arm] ? best[arm][0] : 0)) best[arm] = [weight, hand];
    }
  }
  const hands = {};
  for (const [arm, [, hand]] of Object.entries(best)) hands[arm] = hand;
  return { values, hands };
}

/**
 * The full pose for one frame: {values: {channel: number}, hands: {arm: drawing},
 * eyes: "open" | "half" | "closed", mouth: {viseme, level, smile}}.
 * `heard` is {clip, ms} for the clip being heard (or null), `life` comes from IdleMotion,
 * `nowMs` is wall time (the idle sines run on it, so they never jump between clips).
 */
export function composePose(manifest, heard, life, nowMs) {
  const values = {};
  for (const [channel, sines] of Object.entries(manifest.idle)) {
    addSines(values, channel, sines, nowMs, life.sway);
  }
  for (const [channel, value] of Object.entries(life.offsets)) {
    values[channel] = (values[channel] || 0) + value;
  }
  let hands = {};
  let mouth = { viseme: "sil", level: 1 };
  if (heard && heard.clip && heard.clip.timeline) {
    const gestures = gesturePose(manifest, heard.clip.timeline, heard.ms);
    for (const [channel, value] of Object.entries(gestures.values)) {
      values[channel] = (values[channel] || 0) + value;
    }
    hands = gestures.hands;
    mouth = mouthAt(heard.clip.timeline.visemes, heard.ms, manifest.layers.mouth.levels);
  }
  for (const [channel, [low, high]] of Object.entries(manifest.limits || {})) {
    if (channel in values) values[channel] = Math.min(high, Math.max(low, values[channel]));
  }
  const t = manifest.thresholds;
  const blink = Math.max(life.blink, values["eyes.blink"] || 0);
  const eyes = blink >= t.eyes_closed_from ? "closed" : blink >= t.eyes_half_from ? "half" : "open";
  const smile = (values["mouth.smile"] || 0) >= t.smile_from;
  return { values, hands, eyes, mouth: { ...mouth, smile } };
}
