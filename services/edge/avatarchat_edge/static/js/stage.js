// The avatar stage: one animation loop that asks the active player which clip is heard and
// where, mixes the clip's timeline with the idle life, draws the rig, and updates the caption.
//
// The loop is frugal, because the page shares a small machine with the services: it draws at
// most SPEAKING_FPS while a clip plays and IDLE_FPS otherwise (breathing and blinks need no
// more), skips the draw when the pose has not changed, and stops while the page is hidden.
//
// Events: "speaking" (detail: boolean) when the avatar starts or stops talking.

import { IdleMotion } from "./idle-motion.js";
import { composePose } from "./rig-motion.js";

export const IDLE_FPS = 10;
export const SPEAKING_FPS = 30;

/** A pose's drawn state as a string: equal strings draw the same picture. */
function poseKey(pose) {
  if (!pose) return "none";
  const values = Object.entries(pose.values).map(([k, v]) => `${k}:${v.toFixed(1)}`);
  return JSON.stringify([values, pose.hands, pose.eyes, pose.mouth]);
}

export class Stage extends EventTarget {
  constructor({ canvas, frame, captions, speech, video, rig, mode = "rig" }) {
    super();
    this.canvas = canvas;
    this.frameNode = frame;
    this.ctx = canvas.getContext("2d");
    this.captions = captions;
    this.speech = speech;
    this.video = video;
    this.rig = rig;
    this.idle = new IdleMotion();
    const reduce = window.matchMedia("(prefers-reduced-motion: reduce)");
    this.idle.reduced = reduce.matches;
    reduce.addEventListener("change", () => {
      this.idle.reduced = reduce.matches;
    });
    this.mood = "idle";
    this.speakingNow = false;
    this.heard = null;
    this.pose = null;
    this.running = false;
    this.frames = 0; // drawn frames
    this.ticks = 0; // loop iterations, drawn or not
    this.lastKey = null;
    this.timer = null;
    this.rafId = null;
    this.setMode(mode);
    for (const player of [speech, video]) player.addEventListener("clipstart", () => this.wake());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.pause();
      else if (this.running) this.schedule(0);
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.frameNode.dataset.mode = mode;
  }

  setMood(mood) {
    this.mood = mood;
  }

  get player() {
    return this.mode === "video" ? this.video : this.speech;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  stop() {
    this.running = false;
    this.pause();
  }

  /** Draws again soon, e.g. when a clip starts, instead of at the next idle tick. */
  wake() {
    if (this.running && document.visibilityState !== "hidden") this.schedule(0);
  }

  pause() {
    clearTimeout(this.timer);
    if (this.rafId !== null) cancelAnimationFrame(this.rafId);
    this.timer = null;
    this.rafId = null;
  }

  schedule(delayMs) {
    this.pause();
    // A timer sets the pace, and the draw itself waits for the browser's next frame.
    this.timer = setTimeout(() => {
      this.timer = null;
      this.rafId = requestAnimationFrame((now) => {
        this.rafId = null;
        if (!this.running) return;
        const started = performance.now();
        this.frame(now);
        const fps = this.player.busy ? SPEAKING_FPS : IDLE_FPS;
        this.schedule(Math.max(0, 1000 / fps - (performance.now() - started)));
      });
    }, delayMs);
  }

  frame(nowMs) {
    const heard = this.player.tick();
    // In video mode the video shows the clip; the rig underneath stays idle.
    const animated = this.mode === "video" ? null : heard;
    const mood = heard ? "speaking" : this.mood;
    const life = this.idle.sample(nowMs, mood);
    this.ticks += 1;
    this.pose = this.rig.loaded ? composePose(this.rig.manifest, animated, life, nowMs) : null;
    const key = `${this.rig.loaded}|${this.canvas.width}|${poseKey(this.pose)}`;
    if (key !== this.lastKey) {
      if (this.rig.loaded) this.rig.fit(this.canvas);
      this.rig.draw(this.ctx, this.pose);
      this.lastKey = `${this.rig.loaded}|${this.canvas.width}|${poseKey(this.pose)}`;
      this.frames += 1;
    }
    this.heard = heard;
    if (heard) this.captions.update(heard.clip, heard.ms);
    const speaking = this.player.busy;
    if (speaking !== this.speakingNow) {
      this.speakingNow = speaking;
      this.frameNode.classList.toggle("talking", speaking);
      if (!speaking) this.captions.idle();
      this.dispatchEvent(new CustomEvent("speaking", { detail: speaking }));
    }
  }

  /** The mouth's box in canvas pixels {x, y, w, h} (for tests and debugging). */
  mouthRegion() {
    return this.rig.mouthRegion();
  }
}
