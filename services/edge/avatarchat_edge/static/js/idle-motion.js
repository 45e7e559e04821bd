// The life an avatar has between words: blinks (now and then a double one) and a posture that
// follows the mood of the page, listening (brows up, a slight tilt, a smile) or thinking
// (looking up and aside). Breathing and head sway come from the rig's own idle sines
// (rig-motion.js); with "reduce motion" they stop and only the eyes and brows move.

function smoothstep(x) {
  const t = Math.max(0, Math.min(1, x));
  return t * t * (3 - 2 * t);
}

/** Channel offsets (docs/timeline.md channel names) per mood, reached smoothly. */
const MOODS = {
  idle: { "mouth.smile": 0.6 },
  listening: { "brows.dy": -4, "head.rot": 2.5, "face.dx": 1.5, "mouth.smile": 0.6 },
  thinking: { "brows.dy": -6, "head.rot": -3, "face.dx": -4, "face.dy": -3 },
  speaking: {},
};
const CHANNELS = [...new Set(Object.values(MOODS).flatMap((m) => Object.keys(m)))];
const MOOD_RATE = 4; // per second: about a quarter second to settle

export class IdleMotion {
  constructor(random = Math.random) {
    this.random = random;
    this.reduced = false; // "reduce motion": no breathing or sway
    this.lastMs = null;
    this.nextBlinkMs = 800 + random() * 2000;
    this.blinkStartMs = -1e9;
    this.doubleBlink = false;
    this.offsets = Object.fromEntries(CHANNELS.map((c) => [c, 0]));
  }

  blinkAmount(nowMs) {
    if (nowMs >= this.nextBlinkMs) {
      this.blinkStartMs = nowMs;
      this.doubleBlink = this.random() < 0.18;
      this.nextBlinkMs = nowMs + 2200 + this.random() * 4200;
    }
    const elapsed = nowMs - this.blinkStartMs;
    const single = (t) => {
      if (t < 0 || t > 190) return 0;
      if (t < 70) return smoothstep(t / 70); // closing
      if (t < 100) return 1; // closed
      return 1 - smoothstep((t - 100) / 90); // opening
    };
    return Math.max(single(elapsed), this.doubleBlink ? single(elapsed - 230) : 0);
  }

  /** {blink 0-1, sway 0|1, offsets {channel: value}} at `nowMs` (performance time). */
  sample(nowMs, mood = "idle") {
    const dtS = this.lastMs === null ? 1 : Math.min(0.25, (nowMs - this.lastMs) / 1000);
    this.lastMs = nowMs;
    const target = MOODS[mood] || MOODS.idle;
    const k = 1 - Math.exp(-MOOD_RATE * dtS);
    for (const channel of CHANNELS) {
      this.offsets[channel] += ((target[channel] || 0) - this.offsets[channel]) * k;
    }
    return { blink: this.blinkAmount(nowMs), sway: this.reduced ? 0 : 1, offsets: this.offsets };
  }
}
