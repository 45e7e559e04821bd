// The avatar stage: one animation loop that asks the active player which clip is heard and
// where, mixes the clip's timeline with the idle life, draws the rig, and updates the caption.
//
// Events: "speaking" (detail: boolean) when the avatar starts or stops talking.

import { IdleMotion } from "./idle-motion.js";
import { composePose } from "./rig-motion.js";

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
    this.frames = 0;
    this.setMode(mode);
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
    const loop = (now) => {
      if (!this.running) return;
      this.frame(now);
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  stop() {
    this.running = false;
  }

  frame(nowMs) {
    const heard = this.player.tick();
    // In video mode the video shows the clip; the rig underneath stays idle.
    const animated = this.mode === "video" ? null : heard;
    const mood = heard ? "speaking" : this.mood;
    const life = this.idle.sample(nowMs, mood);
    if (this.rig.loaded) {
      this.rig.fit(this.canvas);
      this.pose = composePose(this.rig.manifest, animated, life, nowMs);
      this.rig.draw(this.ctx, this.pose);
    } else {
      this.rig.draw(this.ctx, null);
    }
    this.frames += 1;
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
