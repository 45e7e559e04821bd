// How far the avatar's answer to the current turn has come: the reply text streams first, then
// one clip per sentence arrives; `reply.done` says how many clips the turn has (`clips`).
// This tells "still speaking, the next sentence is on its way" apart from "finished", so the
// status does not flicker to Ready between two sentences.

export class TurnProgress {
  constructor() {
    this.reset(null);
  }

  reset(turnId) {
    this.turnId = turnId;
    this.streaming = false; // reply deltas still coming
    this.expected = null; // clips the turn has, once reply.done says so
    this.clips = new Set(); // clips that arrived (playable, or failed)
    this.started = false; // its voice has started playing
  }

  /** Makes `turnId` the current turn (a new one resets the counts). */
  follow(turnId) {
    if (turnId !== this.turnId) this.reset(turnId);
  }

  /** A reply delta of the current turn. */
  delta(turnId) {
    this.follow(turnId);
    this.streaming = true;
  }

  /** reply.done; `clips` may be absent on older servers (then nothing more is awaited). */
  done(turnId, clips) {
    this.follow(turnId);
    this.streaming = false;
    this.expected = Number.isInteger(clips) ? clips : this.clips.size;
  }

  /** A clip of `turnId` arrived: playable (speech, or video in video mode), or failed. */
  clip(turnId, clipId) {
    if (turnId === this.turnId) this.clips.add(clipId);
  }

  /** True once nothing more is coming for the turn: no text, no clip. */
  get complete() {
    return !this.streaming && this.expected !== null && this.clips.size >= this.expected;
  }

  /** The voice has started and more of it is still on its way. */
  get speakingOn() {
    return this.started && !this.complete;
  }
}
