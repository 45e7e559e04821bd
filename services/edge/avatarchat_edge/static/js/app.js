// The conversation: reacts to server frames (docs/protocol.md) and to what the person does,
// and keeps the chat, the avatar's voice and the status in step.

import { normalizeTimeline } from "./timeline.js";
import { TurnProgress } from "./turn-progress.js";

const THINKING_GRACE_MS = 15000; // after reply.done, how long to wait for a clip at most

export class App extends EventTarget {
  constructor({ connection, chat, status, stage, speech, video, voice, banner, settings }) {
    super();
    Object.assign(this, { connection, chat, status, stage, speech, video, voice, banner, settings });
    this.turn = new TurnProgress(); // the turn being answered
    this.dropped = new Set(); // turns interrupted here: their late frames are ignored
    this.speechByClip = new Map(); // clip_id → clip.speech frame (captions in video mode)
    this.failedTurns = new Set();
    this.thinkingTimer = null;
    this.stats = { clipsQueued: 0, clipsHeard: 0, interrupts: 0, reconnects: 0, sessions: 0 };
    this.bind();
  }

  get player() {
    return this.settings.mode === "video" ? this.video : this.speech;
  }

  bind() {
    const { connection, voice, status } = this;
    connection.addEventListener("state", ({ detail }) => {
      status.set({ connection: detail.state, retryAt: detail.retryAt || 0 });
    });
    connection.addEventListener("ready", ({ detail }) => this.onReady(detail));
    connection.addEventListener("disconnected", () => this.onDisconnected());
    connection.addEventListener("frame", ({ detail }) => this.onFrame(detail));
    voice.addEventListener("mode", ({ detail }) => status.set({ mic: detail }));
    voice.addEventListener("error", ({ detail }) => {
      status.error(detail.message);
      this.banner.show(detail.message, { kind: "mic" });
    });
    for (const player of [this.speech, this.video]) {
      player.addEventListener("clipstart", ({ detail }) => {
        this.stats.clipsHeard += 1;
        if (detail.turn_id === this.turn.turnId) this.turn.started = true;
        this.setThinking(false);
        this.chat.speaking(detail.turn_id, true);
      });
      player.addEventListener("clipend", ({ detail }) => this.chat.speaking(detail.turn_id, false));
      player.addEventListener("failed", ({ detail }) => this.clipProblem(detail.clip, String(detail.error)));
    }
    this.video.addEventListener("blocked", () => {
      this.banner.show("The browser paused the video. Click anywhere to let the avatar speak.", {
        kind: "autoplay",
        actionLabel: "Play",
        onClick: () => this.video.retry(),
      });
    });
    this.stage.addEventListener("speaking", () => this.updateSpeaking());
  }

  /** Speaking while the voice plays, and between sentences while more are on their way. */
  updateSpeaking() {
    this.status.set({ speaking: this.player.busy || this.turn.speakingOn });
  }

  /** The session.start options; `info` is the server's session frame (its features). */
  sessionOptions(info = this.connection.info) {
    const features = (info && info.features) || {};
    return { avatar: features.avatar !== false, video: this.settings.mode === "video", protocol: 1 };
  }

  onReady({ sessionId, resumed, expired }) {
    this.stats.sessions += 1;
    if (this.stats.sessions > 1) {
      this.stats.reconnects += 1;
      if (expired) {
        this.chat.notice("Reconnected. The server had forgotten the conversation, so this is a new one.", "warn");
      } else {
        this.chat.notice(resumed ? "Reconnected." : "Connected.", "ok");
      }
    }
    this.banner.hide("connection");
    this.voice.resume();
    this.dispatchEvent(new CustomEvent("session", { detail: { sessionId, resumed } }));
  }

  onDisconnected() {
    this.voice.suspend();
    this.status.set({ hearing: false });
    if (this.turn.streaming || this.chat.pending) {
      this.chat.interruptOpen("connection lost");
      this.turn.reset(null);
      this.setThinking(false);
      this.updateSpeaking();
    }
  }

  onFrame(frame) {
    switch (frame.type) {
      case "reply.delta":
        if (this.dropped.has(frame.turn_id)) return;
        this.turn.delta(frame.turn_id);
        this.chat.delta(frame.turn_id, frame.text || "");
        break;
      case "reply.interrupted":
        // The server stopped this turn (our interrupt, a new message, or speech over it).
        if (frame.turn_id === this.turn.turnId) {
          this.turn.reset(null);
          this.setThinking(false);
          this.updateSpeaking();
        }
        this.chat.interrupted(frame.turn_id, "interrupted");
        break;
      case "reply.done":
        if (this.dropped.has(frame.turn_id)) return;
        this.turn.done(frame.turn_id, frame.clips);
        this.chat.done(frame.turn_id, frame.text);
        this.awaitSpeech();
        break;
      case "clip.speech":
        this.onSpeech(frame);
        break;
      case "clip.ready":
        this.onVideo(frame);
        break;
      case "clip.failed":
        if (this.dropped.has(frame.turn_id)) return;
        this.turn.clip(frame.turn_id, frame.clip_id);
        this.clipProblem(frame, frame.reason);
        this.awaitSpeech();
        break;
      case "speech.start":
        this.status.set({ hearing: true });
        this.silence(); // the server interrupts the turn itself (barge-in by voice)
        break;
      case "speech.end":
        this.status.set({ hearing: false });
        break;
      case "transcript.partial":
        this.chat.showPartial(frame.text);
        break;
      case "transcript.final":
        this.onTranscript(frame);
        break;
      case "error":
        this.onError(frame);
        break;
      default:
        break; // newer server frames this page does not know are ignored
    }
  }

  onSpeech(frame) {
    if (this.dropped.has(frame.turn_id)) return;
    const clip = { ...frame, timeline: normalizeTimeline(frame.timeline) };
    this.speechByClip.set(clip.clip_id, clip);
    if (this.speechByClip.size > 64) this.speechByClip.delete(this.speechByClip.keys().next().value);
    if (this.settings.mode !== "video") {
      this.stats.clipsQueued += 1;
      this.turn.clip(clip.turn_id, clip.clip_id);
      this.speech.enqueue(clip);
      this.dispatchEvent(new CustomEvent("audioneeded"));
    }
  }

  onVideo(ready) {
    if (this.dropped.has(ready.turn_id) || this.settings.mode !== "video") return;
    const speech = this.speechByClip.get(ready.clip_id) || {};
    this.stats.clipsQueued += 1;
    this.turn.clip(ready.turn_id, ready.clip_id);
    this.video.enqueue({ ...speech, ...ready });
  }

  onTranscript(frame) {
    const text = (frame.text || "").trim();
    if (!text) {
      this.chat.clearPartial();
      this.chat.notice("I didn't catch that. Try again, a little closer to the microphone.", "info");
      return;
    }
    this.silence();
    this.turn.follow(frame.turn_id);
    this.chat.addUser(text, { voice: true });
    this.chat.expectReply();
    this.setThinking(true);
  }

  onError(frame) {
    const message = frame.message || frame.code || "Something went wrong.";
    switch (frame.code) {
      case "session_taken_over":
        this.connection.forgetSession();
        this.chat.notice("This conversation was opened in another tab; starting a new one here.", "warn");
        return;
      case "idle_timeout":
        this.chat.notice("Disconnected after a long idle time. It reconnects when you come back.", "info");
        return;
      case "rate_limited":
        this.status.error(message);
        this.chat.notice(`Slow down a little: ${message}`, "warn");
        return;
      default:
        break;
    }
    this.status.error(message);
    const turnFailed = /^(llm|stt)_/.test(frame.code) || frame.code === "internal";
    if (turnFailed || frame.code === "empty_audio" || frame.code === "bad_audio") {
      this.chat.clearPartial();
      this.chat.interruptOpen("failed");
      this.turn.reset(null);
      this.setThinking(false);
      this.updateSpeaking();
    }
    this.chat.notice(message, "error");
  }

  clipProblem(clip, reason) {
    // One notice per turn is enough; the text of the reply is still in the chat.
    if (!clip || this.failedTurns.has(clip.turn_id)) return;
    this.failedTurns.add(clip.turn_id);
    this.chat.notice(`The avatar could not say part of its answer (${reason}). The text is above.`, "warn");
  }

  setThinking(on) {
    clearTimeout(this.thinkingTimer);
    this.thinkingTimer = null;
    this.status.set({ thinking: on });
  }

  /** After reply.done (or a failed clip): stop "thinking" once nothing more is coming. */
  awaitSpeech() {
    const info = this.connection.info;
    const textOnly = info && info.avatar === false;
    if (textOnly || (this.turn.complete && !this.player.busy)) {
      this.setThinking(false);
    } else if (!this.turn.started) {
      clearTimeout(this.thinkingTimer);
      this.thinkingTimer = setTimeout(() => this.setThinking(false), THINKING_GRACE_MS);
    }
    this.updateSpeaking();
  }

  /** True while the avatar is answering: reply streaming, voice coming, queued or playing. */
  get answering() {
    return (
      this.turn.streaming || this.turn.speakingOn || Boolean(this.chat.pending) ||
      this.speech.busy || this.video.busy
    );
  }

  /** Stops the avatar's voice at once, here, without telling the server. */
  silence() {
    const stopped = this.speech.stop() | this.video.stop();
    this.stage.captions.clear();
    return Boolean(stopped);
  }

  /** Barge-in: stops the voice now and interrupts the turn on the server. */
  interrupt(reason = "interrupted") {
    if (!this.answering) return false;
    this.silence();
    this.stats.interrupts += 1;
    this.connection.send({ type: "interrupt" });
    if (this.turn.turnId) this.dropped.add(this.turn.turnId);
    this.chat.interruptOpen(reason);
    this.turn.reset(null);
    this.setThinking(false);
    this.updateSpeaking();
    return true;
  }

  /** Sends a typed message (queued while reconnecting). */
  sendText(text) {
    const clean = text.trim();
    if (!clean) return false;
    this.interrupt();
    this.banner.hide("autoplay");
    this.chat.addUser(clean);
    this.chat.expectReply();
    this.setThinking(true);
    if (!this.connection.send({ type: "text", text: clean }, { queue: true })) {
      this.chat.notice("Offline: the message will be sent when the connection is back.", "info");
    }
    return true;
  }

  /** Starts a new conversation: the server forgets the history. */
  reset() {
    this.interrupt();
    this.silence();
    this.connection.send({ type: "reset" }, { queue: true });
    this.chat.clear();
    this.chat.notice("New conversation.", "info");
  }

  /** Switches between the live rig and the rendered video. */
  setMode(mode) {
    if (mode === this.settings.mode) return;
    this.interrupt();
    this.settings.mode = mode;
    this.stage.setMode(mode);
    if (this.connection.sessionId) {
      this.connection.send({ type: "session.start", session_id: this.connection.sessionId, ...this.sessionOptions() });
    }
  }
}
