// One alert line above the conversation for problems that need the person: a blocked
// microphone, autoplay blocked, the connection down. role="alert" makes screen readers say it.

export class Banner {
  constructor({ root, text, action, dismiss }) {
    this.root = root;
    this.text = text;
    this.action = action;
    this.kind = null;
    this.onAction = null;
    action.addEventListener("click", () => {
      const run = this.onAction;
      this.hide();
      if (run) run();
    });
    dismiss.addEventListener("click", () => this.hide());
  }

  /** Shows `message`; `actionLabel` + `onClick` add a button; `kind` lets hide() target it. */
  show(message, { kind = "info", actionLabel = null, onClick = null } = {}) {
    this.kind = kind;
    this.text.textContent = message;
    this.onAction = onClick;
    this.action.hidden = !actionLabel;
    if (actionLabel) this.action.textContent = actionLabel;
    this.root.dataset.kind = kind;
    this.root.hidden = false;
  }

  /** Hides the banner (only if it shows `kind`, when given). */
  hide(kind = null) {
    if (kind && kind !== this.kind) return;
    this.root.hidden = true;
    this.kind = null;
    this.onAction = null;
  }
}
