// The caption under the avatar: the sentence it is saying now, with the current word lit, from
// the clip's word timings. The chat panel holds the same words for screen readers, so the
// caption itself stays out of the accessibility tree.

import { wordIndexAt } from "./timeline.js";

export class Captions {
  constructor(node) {
    this.node = node;
    this.clipId = null;
    this.spans = [];
    this.lit = -1;
    this.hideTimer = null;
  }

  show(clip) {
    clearTimeout(this.hideTimer);
    this.clipId = clip.clip_id;
    this.lit = -1;
    const words = (clip.timeline && clip.timeline.words) || [];
    this.node.replaceChildren();
    this.spans = [];
    if (words.length) {
      for (const word of words) {
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = word.text;
        this.spans.push(span);
        this.node.append(span, " ");
      }
    } else {
      this.node.textContent = clip.text || "";
    }
    this.node.classList.add("visible");
  }

  /** Lights the word at `ms` into the clip being heard. */
  update(clip, ms) {
    if (!clip) return;
    if (clip.clip_id !== this.clipId) this.show(clip);
    const words = (clip.timeline && clip.timeline.words) || [];
    const index = wordIndexAt(words, ms);
    if (index === this.lit) return;
    for (let i = 0; i < this.spans.length; i += 1) {
      this.spans[i].classList.toggle("said", i < index);
      this.spans[i].classList.toggle("now", i === index);
    }
    this.lit = index;
  }

  /** Fades the caption out shortly after the avatar stops. */
  idle(delayMs = 1200) {
    if (!this.clipId) return;
    this.clipId = null;
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => this.node.classList.remove("visible"), delayMs);
  }

  clear() {
    this.clipId = null;
    this.node.classList.remove("visible");
    this.node.replaceChildren();
  }
}
