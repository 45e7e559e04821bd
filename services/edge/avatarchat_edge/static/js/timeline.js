// Reads a clip's timeline (docs/timeline.md) at a point in time: which mouth drawing, which
// word. Times are milliseconds from the start of the clip's audio. Gestures are evaluated by
// rig-motion.js, which knows how each one moves the rig.

/** The Oculus 15 viseme set the avatar service uses. */
export const VISEMES = [
  "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou",
];

/** Index of the last key whose start is <= ms (keys sorted by start_ms), or -1. */
export function keyIndexAt(keys, ms) {
  let lo = 0;
  let hi = keys.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid].start_ms <= ms) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/**
 * The mouth drawing at `ms`: {viseme, level}, where level is the drawn reach (one of
 * `levels`) nearest the key's weight. Between keys and outside them the mouth rests ("sil").
 * This is exactly what the video renderer shows, so both modes move the lips alike.
 */
export function mouthAt(visemes, ms, levels = [0.5, 0.75, 1]) {
  const rest = { viseme: "sil", level: 1 };
  if (!visemes || visemes.length === 0) return rest;
  const index = keyIndexAt(visemes, ms);
  if (index < 0) return rest;
  const key = visemes[index];
  if (ms >= key.end_ms || key.viseme === "sil") return rest;
  let level = levels[0];
  for (const candidate of levels) {
    if (Math.abs(candidate - key.weight) < Math.abs(level - key.weight)) level = candidate;
  }
  return { viseme: key.viseme, level };
}

/** Index of the word being spoken at `ms` (the last one started), or -1 before the first. */
export function wordIndexAt(words, ms) {
  if (!words || words.length === 0) return -1;
  return keyIndexAt(words, ms);
}

const num = (value, fallback = 0) => (Number.isFinite(value) ? value : fallback);

/**
 * A timeline with every field present and sorted: protobuf-to-JSON conversion may leave out
 * zero values (a first key's start_ms of 0), and a client should not trust order blindly.
 */
export function normalizeTimeline(timeline) {
  const t = timeline || {};
  const byStart = (a, b) => a.start_ms - b.start_ms;
  const visemes = (Array.isArray(t.visemes) ? t.visemes : [])
    .map((k) => ({
      start_ms: num(k.start_ms),
      end_ms: num(k.end_ms),
      viseme: typeof k.viseme === "string" ? k.viseme : "sil",
      weight: num(k.weight, 1),
    }))
    .sort(byStart);
  const gestures = (Array.isArray(t.gestures) ? t.gestures : [])
    .map((k) => ({
      start_ms: num(k.start_ms),
      duration_ms: num(k.duration_ms),
      gesture: typeof k.gesture === "string" ? k.gesture : "",
      intensity: num(k.intensity, 1),
    }))
    .sort(byStart);
  const words = (Array.isArray(t.words) ? t.words : [])
    .map((k) => ({ start_ms: num(k.start_ms), end_ms: num(k.end_ms), text: String(k.text || "") }))
    .sort(byStart);
  const last = visemes.length ? visemes[visemes.length - 1].end_ms : 0;
  return { duration_ms: num(t.duration_ms, last), visemes, gestures, words };
}
