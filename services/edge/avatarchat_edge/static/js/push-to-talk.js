// Push-to-talk from a button or a key: hold to talk, release to send. A quick tap (shorter
// than TAP_MS) latches instead, for people who cannot hold a key: talk, then tap again to send.

const TAP_MS = 300;

export class PushToTalk extends EventTarget {
  constructor({ voice, onBegin }) {
    super();
    this.voice = voice;
    this.onBegin = onBegin; // barge-in hook, runs before the microphone starts
    this.pressedAt = null;
    this.latched = false;
    this.active = false;
  }

  setActive(active, latched = false) {
    this.active = active;
    this.latched = latched;
    this.dispatchEvent(new CustomEvent("change", { detail: { active, latched } }));
  }

  /** Button down / key down. */
  press() {
    if (this.latched) {
      this.pressedAt = null;
      this.finish();
      return;
    }
    if (this.active || this.voice.mode === "hands-free") return;
    this.pressedAt = performance.now();
    if (this.onBegin) this.onBegin();
    this.setActive(true);
    this.voice.beginPush().then((started) => {
      if (!started && this.active) this.setActive(false);
    });
  }

  /** Button up / key up. */
  release() {
    if (this.pressedAt === null) return;
    const held = performance.now() - this.pressedAt;
    this.pressedAt = null;
    if (!this.active) return;
    if (held < TAP_MS && this.voice.pushHeld) {
      this.setActive(true, true);
      return;
    }
    this.finish();
  }

  /** Sends what was said (also when focus or the pointer is lost). */
  finish() {
    if (!this.active) return;
    this.setActive(false);
    this.voice.endPush();
  }
}
