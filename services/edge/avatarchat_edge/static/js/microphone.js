// The microphone: getUserMedia with echo cancellation and noise suppression, then an
// AudioWorklet that turns it into 16 kHz mono s16le PCM chunks (pcm-capture.worklet.js).
//
// Events: "chunk" (detail: ArrayBuffer of PCM), "level" (detail: {rms, peak}), "ended" (the
// device went away). Keeps the last few chunks as pre-roll, so the first syllable after a
// push-to-talk press is not lost while the press is being handled.

import { audioContext } from "./audio-context.js";

export const CAPTURE_RATE = 16000;
const PREROLL_CHUNKS = 5; // × 40 ms

/** Why the microphone cannot be used, as a sentence a person can act on. */
export function explainMicError(error, { secure = window.isSecureContext, origin = location.origin } = {}) {
  const name = error && error.name;
  if (!secure || name === "InsecureContextError") {
    return (
      `The microphone needs a secure page, and ${origin} is not one (browsers only allow ` +
      "microphones on https:// pages or on localhost). Open the page over HTTPS (make run " +
      "TLS=1, or TLS at your ingress), or on localhost."
    );
  }
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
      return (
        "Microphone access is blocked for this page. Allow it in the browser's site settings " +
        "(the icon at the left of the address bar), then try again."
      );
    case "SecurityError":
      return "The microphone is blocked by this page's permissions policy or by the browser.";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, then try again.";
    case "NotReadableError":
    case "TrackStartError":
      return (
        "The microphone could not be started: another application may be using it, or the " +
        "system denied access."
      );
    case "UnsupportedError":
      return "This browser cannot capture audio here (no getUserMedia or AudioWorklet).";
    case "AbortError":
      return "Starting the microphone was interrupted. Try again.";
    default:
      return `The microphone could not be used: ${(error && error.message) || error}.`;
  }
}

function named(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

export class Microphone extends EventTarget {
  constructor({ getContext = audioContext, workletUrl = new URL("./pcm-capture.worklet.js", import.meta.url) } = {}) {
    super();
    this.getContext = getContext;
    this.workletUrl = workletUrl;
    this.stream = null;
    this.node = null;
    this.source = null;
    this.opening = null;
    this.preroll = [];
    this.flushWaiters = [];
    this.workletLoaded = false;
  }

  get isOpen() {
    return Boolean(this.node);
  }

  /** Opens the microphone (asks permission the first time). Rejects with a named Error. */
  open() {
    if (this.node) return Promise.resolve();
    if (!this.opening) {
      this.opening = this.start().finally(() => {
        this.opening = null;
      });
    }
    return this.opening;
  }

  async start() {
    if (!window.isSecureContext) throw named("InsecureContextError", "insecure context");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw named("UnsupportedError", "getUserMedia is not available");
    }
    const ctx = this.getContext();
    if (!ctx.audioWorklet) throw named("UnsupportedError", "AudioWorklet is not available");
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
        channelCount: 1,
      },
      video: false,
    });
    try {
      if (ctx.state === "suspended") await ctx.resume();
      if (!this.workletLoaded) {
        await ctx.audioWorklet.addModule(this.workletUrl);
        this.workletLoaded = true;
      }
      const node = new AudioWorkletNode(ctx, "pcm-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1, // silent; connected so the graph always pulls the node
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { targetRate: CAPTURE_RATE, chunkMs: 40 },
      });
      node.port.onmessage = (event) => this.fromWorklet(event.data);
      const source = ctx.createMediaStreamSource(stream);
      source.connect(node);
      node.connect(ctx.destination);
      for (const track of stream.getAudioTracks()) {
        track.addEventListener("ended", () => {
          this.close();
          this.dispatchEvent(new Event("ended"));
        });
      }
      this.stream = stream;
      this.source = source;
      this.node = node;
    } catch (error) {
      for (const track of stream.getTracks()) track.stop();
      throw error;
    }
  }

  fromWorklet(message) {
    if (message.type === "pcm") {
      this.preroll.push(message.buffer);
      if (this.preroll.length > PREROLL_CHUNKS) this.preroll.shift();
      this.dispatchEvent(new CustomEvent("chunk", { detail: message.buffer }));
    } else if (message.type === "level") {
      this.dispatchEvent(new CustomEvent("level", { detail: message }));
    } else if (message.type === "flushed") {
      const waiters = this.flushWaiters;
      this.flushWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** The last ~200 ms of audio, to send ahead of a push-to-talk utterance. */
  takePreroll() {
    const chunks = this.preroll;
    this.preroll = [];
    return chunks;
  }

  /** Emits the partial chunk in the worklet; resolves once it has been delivered. */
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushWaiters.push(resolve);
      this.node.port.postMessage({ type: "flush" });
      setTimeout(resolve, 300); // never hang the caller if the worklet is gone
    });
  }

  /** Stops capture and releases the device (the browser's recording indicator goes off). */
  close() {
    if (this.source) this.source.disconnect();
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.disconnect();
    }
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.source = null;
    this.node = null;
    this.preroll = [];
    for (const resolve of this.flushWaiters) resolve();
    this.flushWaiters = [];
  }
}
