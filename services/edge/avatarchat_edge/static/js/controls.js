// Binds the page's controls and keyboard shortcuts to the app (see docs/ui.md):
//   Enter send · Shift+Enter new line · hold Space (outside the text box) push-to-talk ·
//   Esc stop the avatar · / focus the text box · ? shortcuts · Alt+H hands-free ·
//   Alt+V live rig / video · Alt+M mute · Alt+N new conversation.

import { PushToTalk } from "./push-to-talk.js";

function isEditable(target) {
  if (!target || !(target instanceof Element)) return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']"));
}

function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
}

export function bindControls({ app, voice, dom, output }) {
  const ptt = new PushToTalk({ voice, onBegin: () => app.interrupt("interrupted") });

  // --- composer --------------------------------------------------------------------------
  const submit = () => {
    if (app.sendText(dom.message.value)) {
      dom.message.value = "";
      autosize(dom.message);
    }
    dom.message.focus();
  };
  dom.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  dom.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  dom.message.addEventListener("input", () => {
    autosize(dom.message);
    // Barge-in by typing: the avatar stops talking as soon as you start to type.
    if (dom.message.value.trim() && (app.speech.busy || app.video.busy)) app.interrupt("interrupted");
  });

  // --- push-to-talk button (hold, or tap to latch) -----------------------------------------
  const mic = dom.mic;
  mic.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    mic.setPointerCapture(event.pointerId);
    ptt.press();
  });
  for (const name of ["pointerup", "pointercancel"]) {
    mic.addEventListener(name, () => ptt.release());
  }
  mic.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      event.preventDefault();
      event.stopPropagation();
      ptt.press();
    }
  });
  mic.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      event.stopPropagation();
      ptt.release();
    }
  });
  mic.addEventListener("click", (event) => event.preventDefault());
  ptt.addEventListener("change", ({ detail }) => {
    mic.setAttribute("aria-pressed", String(detail.active));
    mic.classList.toggle("latched", detail.latched);
    dom.micLabel.textContent = detail.latched ? "Tap to send" : detail.active ? "Release to send" : "Hold to talk";
  });
  window.addEventListener("blur", () => {
    if (!ptt.latched) ptt.finish();
  });

  // --- hands-free ----------------------------------------------------------------------------
  const handsFree = dom.handsFree;
  const toggleHandsFree = async () => {
    const on = handsFree.getAttribute("aria-checked") !== "true";
    handsFree.setAttribute("aria-checked", String(on));
    const result = await voice.setHandsFree(on);
    handsFree.setAttribute("aria-checked", String(result));
  };
  handsFree.addEventListener("click", toggleHandsFree);
  voice.addEventListener("mode", ({ detail }) => {
    handsFree.setAttribute("aria-checked", String(detail === "hands-free"));
    document.body.dataset.mic = detail;
    if (detail === "off") {
      shownLevel = 0;
      setLevel(0);
    }
  });

  // --- level meter ---------------------------------------------------------------------------
  let shownLevel = 0;
  const setLevel = (level) => {
    shownLevel = Math.max(level, shownLevel * 0.8);
    const percent = Math.round(shownLevel * 100);
    dom.meter.style.setProperty("--level", String(shownLevel));
    mic.style.setProperty("--level", String(shownLevel));
    dom.meter.setAttribute("aria-valuenow", String(percent));
  };
  voice.addEventListener("level", ({ detail }) => setLevel(detail));

  // --- mode, sound, new conversation, help ---------------------------------------------------
  for (const radio of dom.modeRadios) {
    radio.checked = radio.value === app.settings.mode;
    radio.addEventListener("change", () => {
      if (radio.checked) app.setMode(radio.value);
    });
  }
  const setMuted = (muted) => {
    output.muted = muted;
    dom.mute.setAttribute("aria-pressed", String(muted));
    dom.mute.querySelector(".label").textContent = muted ? "Sound off" : "Sound on";
  };
  dom.mute.addEventListener("click", () => setMuted(!output.muted));
  dom.newChat.addEventListener("click", () => {
    app.reset();
    dom.message.focus();
  });
  dom.helpButton.addEventListener("click", () => dom.help.showModal());
  dom.stopButton.addEventListener("click", () => app.interrupt("stopped"));

  // --- global shortcuts ----------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (dom.help.open) return;
    const editable = isEditable(event.target);
    if (event.altKey && !event.ctrlKey && !event.metaKey) {
      const key = event.key.toLowerCase();
      const actions = {
        h: toggleHandsFree,
        v: () => {
          const next = app.settings.mode === "video" ? "rig" : "video";
          for (const radio of dom.modeRadios) radio.checked = radio.value === next;
          app.setMode(next);
        },
        m: () => setMuted(!output.muted),
        n: () => app.reset(),
      };
      if (actions[key]) {
        event.preventDefault();
        actions[key]();
      }
      return;
    }
    if (event.key === "Escape") {
      app.interrupt("stopped");
      return;
    }
    if (editable || event.ctrlKey || event.metaKey) return;
    if (event.key === " " && !event.repeat) {
      if (event.target instanceof Element && event.target.closest("button, a, summary, [role=button]")) return;
      event.preventDefault();
      ptt.press();
    } else if (event.key === "/") {
      event.preventDefault();
      dom.message.focus();
    } else if (event.key === "?") {
      event.preventDefault();
      dom.help.showModal();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " " && !isEditable(event.target)) ptt.release();
  });

  return { ptt, setMuted };
}
