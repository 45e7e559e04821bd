// What the page is doing, shown in one place: connecting, ready, listening, thinking, speaking
// or error. The parts (connection, microphone, turn, avatar) are set independently; the shown
// state is derived from them by priority. `document.body.dataset.state` carries it for CSS.

const ERROR_SHOW_MS = 6000;

export class Status extends EventTarget {
  constructor({ pill, text, root = document.body }) {
    super();
    this.pill = pill;
    this.textNode = text;
    this.root = root;
    this.parts = {
      connection: "connecting", // connecting | reconnecting | open | paused
      retryAt: 0,
      mic: "off", // off | push | hands-free
      hearing: false, // the server heard speech (speech.start .. speech.end)
      thinking: false, // waiting for the reply to be spoken
      speaking: false, // the avatar's voice is playing
      error: null,
      errorUntil: 0,
    };
    this.shown = null;
    this.timer = setInterval(() => this.render(), 500);
  }

  set(changes) {
    Object.assign(this.parts, changes);
    this.render();
  }

  error(message) {
    this.set({ error: message, errorUntil: performance.now() + ERROR_SHOW_MS });
  }

  clearError() {
    this.set({ error: null, errorUntil: 0 });
  }

  derive() {
    const p = this.parts;
    const now = performance.now();
    if (p.connection === "paused") return { state: "connecting", label: "Paused while idle" };
    if (p.connection !== "open") {
      const seconds = Math.ceil((p.retryAt - now) / 1000);
      if (p.connection === "reconnecting") {
        const label = seconds > 0 ? `Reconnecting in ${seconds} s…` : "Reconnecting…";
        return { state: "connecting", label };
      }
      return { state: "connecting", label: seconds > 0 ? `Connecting in ${seconds} s…` : "Connecting…" };
    }
    if (p.error && now < p.errorUntil) return { state: "error", label: "Error" };
    if (p.mic === "push" || p.hearing) return { state: "listening", label: "Listening…" };
    if (p.speaking) return { state: "speaking", label: "Speaking" };
    if (p.thinking) return { state: "thinking", label: "Thinking…" };
    if (p.mic === "hands-free") return { state: "listening", label: "Listening (hands-free)" };
    return { state: "ready", label: "Ready" };
  }

  render() {
    const { state, label } = this.derive();
    const key = `${state}|${label}`;
    if (key === this.shown) return;
    const changed = !this.shown || this.shown.split("|")[0] !== state;
    this.shown = key;
    this.root.dataset.state = state;
    this.pill.dataset.state = state;
    this.textNode.textContent = label;
    if (changed) this.dispatchEvent(new CustomEvent("change", { detail: { state, label } }));
  }

  get state() {
    return this.derive().state;
  }
}
