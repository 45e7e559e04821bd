// The page's one AudioContext, shared by the avatar's voice and the microphone.
// Browsers start an AudioContext suspended until the person interacts with the page, so it is
// resumed on the first pointer or key press.

let context = null;

export function audioContext() {
  if (!context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    context = new Context({ latencyHint: "interactive" });
  }
  return context;
}

export function resumeAudio() {
  const ctx = audioContext();
  if (ctx.state === "suspended") return ctx.resume().catch(() => undefined);
  return Promise.resolve();
}

/** Resumes the context on the first gestures (and keeps trying until it runs). */
export function unlockAudioOnGesture(target = window) {
  const unlock = () => {
    resumeAudio().then(() => {
      if (audioContext().state === "running") {
        for (const name of ["pointerdown", "keydown", "touchend"]) {
          target.removeEventListener(name, unlock, true);
        }
      }
    });
  };
  for (const name of ["pointerdown", "keydown", "touchend"]) {
    target.addEventListener(name, unlock, true);
  }
}

/**
 * The context time of the sound coming out of the speakers right now: `currentTime` runs ahead
 * of what is heard by the output latency, and the avatar's lips must follow what is heard.
 */
export function heardTime(ctx) {
  if (typeof ctx.getOutputTimestamp === "function") {
    const stamp = ctx.getOutputTimestamp();
    if (stamp && stamp.contextTime > 0 && stamp.performanceTime > 0) {
      const elapsed = (performance.now() - stamp.performanceTime) / 1000;
      return Math.min(ctx.currentTime, stamp.contextTime + Math.max(0, elapsed));
    }
  }
  return Math.max(0, ctx.currentTime - (ctx.outputLatency || ctx.baseLatency || 0));
}
