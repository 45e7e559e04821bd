// The conversation panel: your messages, the avatar's streamed replies, live transcripts and
// notices. The list is an ARIA log, so screen readers announce new messages; a reply is
// aria-busy while it streams and is announced once, whole.

const STICK_PX = 48; // stay pinned to the bottom unless the reader scrolled up further

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function speaker(label) {
  return element("span", "visually-hidden", `${label}: `);
}

export class ChatLog {
  constructor(list, scroller = list) {
    this.list = list;
    this.scroller = scroller;
    this.replies = new Map(); // turn_id → {item, text}
    this.pending = null; // reply bubble waiting for its first delta
    this.partial = null;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  append(item) {
    const stick = this.nearBottom();
    this.list.append(item);
    if (stick) this.scrollToEnd();
    return item;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  message(role, label) {
    const item = element("li", `msg msg-${role}`);
    const bubble = element("div", "bubble");
    const text = element("p", "text");
    text.append(speaker(label));
    const body = element("span", "body");
    text.append(body);
    bubble.append(text);
    item.append(bubble);
    return { item, body, bubble };
  }

  addUser(text, { voice = false } = {}) {
    this.clearPartial();
    const { item, body, bubble } = this.message("user", "You");
    body.textContent = text;
    if (voice) {
      item.classList.add("via-voice");
      bubble.prepend(element("span", "via", "spoken"));
    }
    return this.append(item);
  }

  /** A live, not yet final, transcript of what the person is saying. */
  showPartial(text) {
    if (!this.partial) {
      const { item, body } = this.message("user", "You (still speaking)");
      item.classList.add("partial");
      item.setAttribute("aria-hidden", "true");
      this.partial = { item, body };
      this.append(item);
    }
    this.partial.body.textContent = text || "…";
    if (this.nearBottom()) this.scrollToEnd();
  }

  clearPartial() {
    if (this.partial) this.partial.item.remove();
    this.partial = null;
  }

  /** Shows that a reply is coming (typing dots) before its first delta. */
  expectReply() {
    if (this.pending) return this.pending;
    const { item, body } = this.message("assistant", "Avatar");
    item.setAttribute("aria-busy", "true");
    item.classList.add("waiting");
    const dots = element("span", "typing");
    dots.setAttribute("aria-hidden", "true");
    dots.append(element("i"), element("i"), element("i"));
    body.after(dots);
    this.pending = { item, body, text: "" };
    this.append(item);
    return this.pending;
  }

  reply(turnId) {
    let reply = this.replies.get(turnId);
    if (!reply) {
      reply = this.pending || this.expectReply();
      this.pending = null;
      reply.item.dataset.turnId = turnId;
      this.replies.set(turnId, reply);
    }
    return reply;
  }

  delta(turnId, text) {
    const reply = this.reply(turnId);
    const stick = this.nearBottom();
    reply.item.classList.remove("waiting");
    reply.text += text;
    reply.body.textContent = reply.text;
    if (stick) this.scrollToEnd();
  }

  done(turnId, text) {
    const reply = this.reply(turnId);
    reply.item.classList.remove("waiting");
    if (typeof text === "string" && text.length) {
      reply.text = text;
      reply.body.textContent = text;
    }
    if (!reply.text) reply.body.textContent = "(no reply)";
    reply.item.setAttribute("aria-busy", "false");
    reply.item.classList.add("done");
  }

  /** Marks the reply of `turnId` (or the one still waiting) as cut short. */
  interrupted(turnId, reason = "interrupted") {
    const reply = turnId ? this.replies.get(turnId) : this.pending;
    if (!reply || reply.item.classList.contains("cut")) return;
    if (!turnId && reply === this.pending) this.pending = null;
    reply.item.classList.remove("waiting");
    reply.item.classList.add("cut");
    reply.item.setAttribute("aria-busy", "false");
    if (!reply.text) reply.body.textContent = "";
    reply.item.querySelector(".bubble").append(element("span", "cut-note", reason));
  }

  /** Cuts every reply still streaming (after a reconnect or an interrupt). */
  interruptOpen(reason) {
    for (const [turnId, reply] of this.replies) {
      if (reply.item.getAttribute("aria-busy") === "true") this.interrupted(turnId, reason);
    }
    if (this.pending) this.interrupted(null, reason);
  }

  /** Highlights the reply whose sentence the avatar is saying now. */
  speaking(turnId, on) {
    const reply = this.replies.get(turnId);
    if (reply) reply.item.classList.toggle("speaking", on);
  }

  notice(text, kind = "info") {
    const item = element("li", `msg msg-notice notice-${kind}`, text);
    return this.append(item);
  }

  clear() {
    this.list.replaceChildren();
    this.replies.clear();
    this.pending = null;
    this.partial = null;
  }
}
