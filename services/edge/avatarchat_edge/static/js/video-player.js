// Video mode: plays the rendered `clip.ready` MP4s in order (the mode for the D-ID backend).
//
// Two <video> elements take turns: while one plays, the next clip loads into the other, so
// the switch is quick. Between clips the elements fade out and the live rig shows through.
// Same surface as SpeechPlayer: enqueue, stop, busy, current, tick, and the "clipstart",
// "clipend", "failed" events, plus "blocked" when the browser refuses to autoplay.

export class VideoPlayer extends EventTarget {
  constructor(elements) {
    super();
    this.elements = elements;
    this.queue = [];
    this.active = null; // {clip, element}
    this.heardId = null;
    this.heardClip = null;
    for (const element of elements) {
      element.preload = "auto";
      element.playsInline = true;
      element.addEventListener("ended", () => this.finished(element));
      element.addEventListener("error", () => this.broken(element));
    }
  }

  enqueue(clip) {
    this.queue.push(clip);
    if (!this.active) this.playNext();
    else this.preload();
  }

  spare() {
    const busy = this.active ? this.active.element : null;
    return this.elements.find((element) => element !== busy) || this.elements[0];
  }

  preload() {
    const next = this.queue[0];
    const element = this.spare();
    if (next && element.dataset.clipId !== next.clip_id) {
      element.dataset.clipId = next.clip_id;
      element.src = next.video_url;
      element.load();
    }
  }

  playNext() {
    const clip = this.queue.shift();
    if (!clip) {
      this.active = null;
      for (const element of this.elements) element.classList.remove("front");
      return;
    }
    const element = this.spare();
    if (element.dataset.clipId !== clip.clip_id) {
      element.dataset.clipId = clip.clip_id;
      element.src = clip.video_url;
    }
    const previous = this.active ? this.active.element : null;
    this.active = { clip, element };
    element.currentTime = 0;
    element
      .play()
      .then(() => {
        if (this.active && this.active.element === element) {
          element.classList.add("front");
          if (previous && previous !== element) previous.classList.remove("front");
          this.preload();
        }
      })
      .catch((error) => {
        if (error && error.name === "NotAllowedError") {
          this.queue.unshift(clip);
          this.active = null;
          this.dispatchEvent(new CustomEvent("blocked", { detail: { clip, error } }));
        } else if (!error || error.name !== "AbortError") {
          this.broken(element, error);
        }
      });
  }

  finished(element) {
    if (this.active && this.active.element === element) this.playNext();
  }

  broken(element, error) {
    if (!element.getAttribute("src")) return; // cleared by stop()
    if (this.active && this.active.element === element) {
      const { clip } = this.active;
      this.dispatchEvent(
        new CustomEvent("failed", {
          detail: { clip, error: error || element.error || new Error("video failed") },
        }),
      );
      this.playNext();
    }
  }

  /** Resumes after the browser blocked autoplay (call from a click). */
  retry() {
    if (!this.active && this.queue.length) this.playNext();
  }

  stop() {
    const wasPlaying = Boolean(this.active) || this.queue.length > 0;
    this.queue = [];
    this.active = null;
    for (const element of this.elements) {
      element.pause();
      element.classList.remove("front");
      element.removeAttribute("src");
      delete element.dataset.clipId;
      element.load();
    }
    return wasPlaying;
  }

  get busy() {
    return Boolean(this.active) || this.queue.length > 0;
  }

  current() {
    if (!this.active) return null;
    const { clip, element } = this.active;
    if (element.paused || element.readyState < 2) return null;
    return { clip, ms: element.currentTime * 1000 };
  }

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

  level() {
    return 0;
  }
}
