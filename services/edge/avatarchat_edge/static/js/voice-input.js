// Voice over the WebSocket (docs/protocol.md): push-to-talk sends audio.start, PCM frames
// while the button or Space is held, then audio.end; hands-free keeps one audio.start open and
// streams continuously, and the server's VAD decides the turns.
//
// Events: "mode" (detail: "off" | "push" | "hands-free"), "error" (detail: {message, error}),
// "level" (detail: 0-1, for the meter; only while capturing).

import { CAPTURE_RATE, explainMicError } from "./microphone.js";

const RELEASE_AFTER_MS = 20000; // push-to-talk keeps the mic warm this long after a release
const MAX_BUFFERED_BYTES = 512 * 1024; // drop audio rather than build up latency

export class VoiceInput extends EventTarget {
  constructor({ connection, microphone }) {
    super();
    this.connection = connection;
    this.microphone = microphone;
    this.mode = "off";
    this.streaming = false;
    this.pushHeld = false;
    this.releaseTimer = null;
    this.unavailable = null; // why voice cannot be used here (the server has no stt), or null
    microphone.addEventListener("chunk", (event) => this.forward(event.detail));
    microphone.addEventListener("level", (event) => {
      if (this.mode !== "off") {
        this.dispatchEvent(new CustomEvent("level", { detail: Math.min(1, event.detail.rms * 4) }));
      }
    });
    microphone.addEventListener("ended", () => {
      this.fail(new DOMException("The microphone was disconnected.", "NotFoundError"));
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.dispatchEvent(new CustomEvent("mode", { detail: mode }));
  }

  /** Reports that voice is off on this server; true if so. */
  refuse() {
    if (!this.unavailable) return false;
    this.dispatchEvent(new CustomEvent("error", { detail: { message: this.unavailable } }));
    return true;
  }

  fail(error) {
    this.streaming = false;
    this.pushHeld = false;
    this.setMode("off");
    this.dispatchEvent(
      new CustomEvent("error", { detail: { message: explainMicError(error), error } }),
    );
  }

  forward(chunk) {
    if (!this.streaming) return;
    if (this.connection.bufferedAmount > MAX_BUFFERED_BYTES) return;
    this.connection.sendBinary(chunk);
  }

  startStream(mode) {
    const sent = this.connection.send({
      type: "audio.start",
      format: "pcm_s16le",
      sample_rate: CAPTURE_RATE,
      mode,
    });
    this.streaming = sent;
    return sent;
  }

  /** Push-to-talk pressed. Resolves false if voice could not start. */
  async beginPush() {
    if (this.mode === "hands-free" || this.pushHeld || this.refuse()) return false;
    this.pushHeld = true;
    clearTimeout(this.releaseTimer);
    const warm = this.microphone.isOpen;
    this.setMode("push");
    try {
      await this.microphone.open();
    } catch (error) {
      this.fail(error);
      return false;
    }
    if (!this.pushHeld) return false; // released while the permission prompt was up
    if (!this.startStream("push-to-talk")) {
      this.pushHeld = false;
      this.setMode("off");
      this.dispatchEvent(
        new CustomEvent("error", { detail: { message: "Not connected: voice is unavailable." } }),
      );
      return false;
    }
    const preroll = this.microphone.takePreroll();
    if (warm) for (const chunk of preroll) this.connection.sendBinary(chunk);
    return true;
  }

  /** Push-to-talk released: sends the tail of the audio, then audio.end. */
  async endPush() {
    if (!this.pushHeld) return;
    this.pushHeld = false;
    if (this.streaming) {
      await this.microphone.flush();
      this.streaming = false;
      this.connection.send({ type: "audio.end" });
    }
    if (this.mode === "push") this.setMode("off");
    clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(() => {
      if (this.mode === "off") this.microphone.close();
    }, RELEASE_AFTER_MS);
  }

  /** Turns hands-free listening on or off. Resolves to the resulting state. */
  async setHandsFree(on) {
    if (on === (this.mode === "hands-free")) return on;
    if (on) {
      if (this.refuse()) return false;
      if (this.pushHeld) await this.endPush();
      this.setMode("hands-free");
      try {
        await this.microphone.open();
      } catch (error) {
        this.fail(error);
        return false;
      }
      if (this.mode !== "hands-free") return false;
      this.startStream("hands-free"); // if offline, resume() starts it once connected
      return true;
    }
    if (this.streaming) {
      await this.microphone.flush();
      this.connection.send({ type: "audio.end" });
    }
    this.streaming = false;
    this.setMode("off");
    this.microphone.close();
    return false;
  }

  /** After a reconnect: a held push is dropped, hands-free starts a new stream. */
  resume() {
    if (this.mode === "push") {
      this.streaming = false;
      this.pushHeld = false;
      this.setMode("off");
    } else if (this.mode === "hands-free" && this.microphone.isOpen) {
      this.startStream("hands-free");
    }
  }

  /** The connection dropped: nothing is streaming any more. */
  suspend() {
    this.streaming = false;
  }
}
