// Plays the avatar's speech clips with Web Audio, gaplessly and in order.
//
// Each `clip.speech` frame is fetched and decoded as soon as it arrives (in parallel), then
// scheduled on the AudioContext clock right after the previous clip ends, so sentences flow
// without gaps. `current()` tells which clip is heard now and how far into it, which is what
// the avatar's lips follow. `stop()` silences everything at once (barge-in).
//
// Events: "clipstart" / "clipend" (detail: the clip frame), "failed" (detail: {clip, error}).

import { audioContext, heardTime } from "./audio-context.js";

const LEAD_S = 0.05; // scheduling head-room for the first clip after a pause

export class SpeechPlayer extends EventTarget {
  constructor({ getContext = audioContext, fetchImpl = (url) => fetch(url) } = {}) {
    super();
    this.getContext = getContext;
    this.fetchImpl = fetchImpl;
    this.generation = 0; // bumped by stop(): work from before it is dropped
    this.chain = Promise.resolve();
    this.scheduled = []; // {clip, source, start, end}
    this.endTime = 0; // context time at which the last scheduled clip ends
    this.output = null;
    this.analyser = null;
    this.levelBuffer = null;
    this.heardId = null;
    this.heardClip = null;
    this.muted = false;
  }

  /** The gain → analyser → speakers chain, built on first use. */
  outputNode() {
    if (!this.output) {
      const ctx = this.getContext();
      this.output = ctx.createGain();
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 512;
      this.levelBuffer = new Float32Array(this.analyser.fftSize);
      this.output.connect(this.analyser);
      this.analyser.connect(ctx.destination);
    }
    return this.output;
  }

  setMuted(muted) {
    this.muted = muted;
    const gain = this.outputNode().gain;
    gain.setTargetAtTime(muted ? 0 : 1, this.getContext().currentTime, 0.015);
  }

  /** Queues a clip.speech frame: starts loading now, plays after the clips queued before it. */
  enqueue(clip) {
    const generation = this.generation;
    const loading = this.load(clip);
    this.chain = this.chain.then(async () => {
      let buffer;
      try {
        buffer = await loading;
      } catch (error) {
        if (generation === this.generation) {
          this.dispatchEvent(new CustomEvent("failed", { detail: { clip, error } }));
        }
        return;
      }
      if (generation === this.generation) this.schedule(clip, buffer);
    });
    return this.chain;
  }

  async load(clip) {
    const response = await this.fetchImpl(clip.audio_url);
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${clip.audio_url}`);
    const bytes = await response.arrayBuffer();
    return await this.getContext().decodeAudioData(bytes);
  }

  schedule(clip, buffer) {
    const ctx = this.getContext();
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.outputNode());
    const start = Math.max(ctx.currentTime + LEAD_S, this.endTime);
    const entry = { clip, source, start, end: start + buffer.duration };
    source.onended = () => {
      this.scheduled = this.scheduled.filter((item) => item !== entry);
    };
    source.start(start);
    this.endTime = entry.end;
    this.scheduled.push(entry);
  }

  /** Silences everything now and forgets what was queued or loading. */
  stop() {
    this.generation += 1;
    this.chain = Promise.resolve();
    for (const entry of this.scheduled) {
      try {
        entry.source.onended = null;
        entry.source.stop();
        entry.source.disconnect();
      } catch {
        // already stopped
      }
    }
    const wasPlaying = this.scheduled.length > 0;
    this.scheduled = [];
    this.endTime = 0;
    return wasPlaying;
  }

  /** True while a clip is scheduled or sounding. */
  get busy() {
    return this.scheduled.length > 0;
  }

  /** The clip heard now, as {clip, ms} with ms from the clip's start, or null. */
  current() {
    if (this.scheduled.length === 0) return null;
    const t = heardTime(this.getContext());
    for (const entry of this.scheduled) {
      if (t >= entry.start && t < entry.end) {
        return { clip: entry.clip, ms: (t - entry.start) * 1000 };
      }
    }
    return null;
  }

  /** Fires clipstart / clipend as the heard clip changes; called once per animation frame. */
  tick() {
    const now = this.current();
    const id = now ? now.clip.clip_id : null;
    if (id !== this.heardId) {
      if (this.heardClip) this.dispatchEvent(new CustomEvent("clipend", { detail: this.heardClip }));
      this.heardId = id;
      this.heardClip = now ? now.clip : null;
      if (now) this.dispatchEvent(new CustomEvent("clipstart", { detail: now.clip }));
    }
    return now;
  }

  /** RMS of what is being played, 0-1 (for the stage glow and for tests). */
  level() {
    if (!this.analyser) return 0;
    this.analyser.getFloatTimeDomainData(this.levelBuffer);
    let sum = 0;
    for (const x of this.levelBuffer) sum += x * x;
    return Math.sqrt(sum / this.levelBuffer.length);
  }
}
