// The WebSocket to the edge (docs/protocol.md): connects, resumes the session after any drop
// with exponential backoff, and queues text frames sent while offline.
//
// On connect the server sends {"type":"session","session_id"}. If this tab already had a
// session, the client asks to resume it with {"type":"session.start","session_id",...}; the
// server confirms with a "session" frame, or answers an error if the session is gone, in which
// case the new session is kept. Either way, "ready" fires and the queued frames go out.
//
// Events: "state" (detail: {state, retryInMs?}), "ready" (detail: {sessionId, resumed,
// expired}), "frame" (detail: the parsed server frame), "protocolerror" (detail: text).

const STORAGE_KEY = "avatarchat.session";
const MAX_QUEUED = 20;
const RESUME_TIMEOUT_MS = 4000;

export function socketUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}/ws`);
  const token = new URLSearchParams(location.search).get("token");
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(10000, 400 * 2 ** attempt);
  return Math.round(base * (0.75 + random() * 0.5));
}

export class Connection extends EventTarget {
  constructor({ url = socketUrl(), storage = window.sessionStorage, options = () => ({}) } = {}) {
    super();
    this.url = url;
    this.storage = storage;
    this.options = options; // (session frame) → extra session.start fields, e.g. {avatar: true}
    this.info = null; // the server's last "session" frame: features, limits
    this.socket = null;
    this.state = "idle";
    this.sessionId = this.readStoredSession();
    this.ready = false;
    this.resuming = false;
    this.serverSessionId = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.resumeTimer = null;
    this.queue = [];
    this.everOpened = false;
    this.idleClosed = false;
    window.addEventListener("online", () => this.reconnectNow());
    for (const name of ["pointerdown", "keydown", "focus"]) {
      window.addEventListener(name, () => {
        if (this.state === "paused") this.reconnectNow();
      });
    }
  }

  readStoredSession() {
    try {
      return this.storage.getItem(STORAGE_KEY);
    } catch {
      return null;
    }
  }

  storeSession(sessionId) {
    this.sessionId = sessionId;
    try {
      if (sessionId) this.storage.setItem(STORAGE_KEY, sessionId);
      else this.storage.removeItem(STORAGE_KEY);
    } catch {
      // storage disabled: resume only works within this page's life
    }
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.ready = false;
    this.setState(this.everOpened ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.dispatchEvent(new CustomEvent("protocolerror", { detail: String(error) }));
      this.scheduleRetry();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("message", (event) => this.receive(socket, event));
    socket.addEventListener("close", (event) => this.closed(socket, event));
  }

  receive(socket, event) {
    if (socket !== this.socket) return;
    if (typeof event.data !== "string") return; // the server sends no binary frames
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      this.dispatchEvent(new CustomEvent("protocolerror", { detail: event.data.slice(0, 200) }));
      return;
    }
    if (frame.type === "session") {
      this.info = frame;
      this.dispatchEvent(new CustomEvent("info", { detail: frame }));
    }
    if (!this.ready && this.handshake(frame)) return;
    if (frame.type === "error" && frame.code === "idle_timeout") this.idleClosed = true;
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  /** Handles the session frames before the session is ready; true if the frame was consumed. */
  handshake(frame) {
    if (frame.type === "session" && !this.resuming) {
      this.serverSessionId = frame.session_id;
      const previous = this.sessionId;
      if (previous && previous !== frame.session_id) {
        this.resuming = true;
        this.rawSend({ type: "session.start", session_id: previous, ...this.options(frame) });
        this.resumeTimer = setTimeout(() => this.becomeReady(previous, true, false), RESUME_TIMEOUT_MS);
      } else {
        this.rawSend({ type: "session.start", session_id: frame.session_id, ...this.options(frame) });
        this.becomeReady(frame.session_id, false, false);
      }
      return true;
    }
    if (frame.type === "session" && this.resuming) {
      this.becomeReady(frame.session_id, frame.session_id === this.sessionId, false);
      return true;
    }
    if (frame.type === "error" && this.resuming) {
      // The old session is gone (expired or unknown): carry on with the new one.
      this.becomeReady(this.serverSessionId, false, true, frame);
      return true;
    }
    return false;
  }

  becomeReady(sessionId, resumed, expired, error = null) {
    clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    if (this.ready) return;
    if (expired) {
      // The resume failed, so its options were not applied: apply them to the new session.
      this.rawSend({ type: "session.start", session_id: sessionId, ...this.options(this.info) });
    }
    this.resuming = false;
    this.ready = true;
    this.attempt = 0;
    this.everOpened = true;
    this.storeSession(sessionId);
    this.setState("open");
    this.dispatchEvent(
      new CustomEvent("ready", { detail: { sessionId, resumed, expired, error } }),
    );
    const queued = this.queue;
    this.queue = [];
    for (const frame of queued) this.rawSend(frame);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    clearTimeout(this.resumeTimer);
    this.socket = null;
    this.ready = false;
    this.resuming = false;
    if (this.state === "closed") return;
    this.dispatchEvent(new CustomEvent("disconnected", { detail: { code: event.code } }));
    if (this.idleClosed) {
      // The server closed an idle socket: reconnect when the person is back, not in a loop.
      this.idleClosed = false;
      this.setState("paused");
      return;
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState(this.everOpened ? "reconnecting" : "connecting", {
      retryInMs: delay,
      retryAt: performance.now() + delay,
    });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Skips the backoff wait (the "Retry now" button, the browser coming back online). */
  reconnectNow() {
    if (this.socket || this.state === "closed") return;
    this.attempt = 0;
    this.connect();
  }

  rawSend(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a control frame now, or queues it (queue: true) until the session is ready. */
  send(frame, { queue = false } = {}) {
    if (this.ready && this.rawSend(frame)) return true;
    if (queue) {
      this.queue.push(frame);
      if (this.queue.length > MAX_QUEUED) this.queue.shift();
      if (this.state === "paused") this.reconnectNow();
    }
    return false;
  }

  /** Sends audio; dropped when offline (stale audio is worse than none). */
  sendBinary(data) {
    if (!this.ready || !this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(data);
    return true;
  }

  /** Forgets the session: the next connection starts a fresh one. */
  forgetSession() {
    this.storeSession(null);
  }

  get bufferedAmount() {
    return this.socket ? this.socket.bufferedAmount : 0;
  }

  close() {
    this.setState("closed");
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "bye");
    this.socket = null;
  }
}
