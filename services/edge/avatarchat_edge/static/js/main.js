// Builds the page: finds the elements, creates the parts, wires them, connects.
// `window.avatarchat` exposes a small read-only view of the state for tests and debugging.

import { App } from "./app.js";
import { audioContext, resumeAudio, unlockAudioOnGesture } from "./audio-context.js";
import { Banner } from "./banner.js";
import { Captions } from "./captions.js";
import { ChatLog } from "./chat-log.js";
import { Connection } from "./connection.js";
import { bindControls } from "./controls.js";
import { Microphone } from "./microphone.js";
import { Rig } from "./rig.js";
import { SpeechPlayer } from "./speech-player.js";
import { Stage } from "./stage.js";
import { Status } from "./status.js";
import { VideoPlayer } from "./video-player.js";
import { VoiceInput } from "./voice-input.js";

const $ = (selector) => document.querySelector(selector);
const MODE_KEY = "avatarchat.mode";

function readMode() {
  const fromUrl = new URLSearchParams(location.search).get("mode");
  if (fromUrl === "video" || fromUrl === "rig") return fromUrl;
  try {
    return localStorage.getItem(MODE_KEY) === "video" ? "video" : "rig";
  } catch {
    return "rig";
  }
}

function saveMode(mode) {
  try {
    localStorage.setItem(MODE_KEY, mode);
  } catch {
    // private mode: the choice lasts for this page only
  }
}

async function explainMicUpFront(banner, micButton) {
  if (!window.isSecureContext) {
    micButton.classList.add("blocked");
    micButton.title = "The microphone needs HTTPS or localhost";
    return;
  }
  try {
    const permission = await navigator.permissions.query({ name: "microphone" });
    const mark = () => micButton.classList.toggle("blocked", permission.state === "denied");
    mark();
    permission.addEventListener("change", mark);
  } catch {
    // the Permissions API does not know "microphone" in this browser
  }
}

function main() {
  const settings = { mode: readMode() };
  const dom = {
    composer: $("#composer"),
    message: $("#message"),
    mic: $("#mic"),
    micLabel: $("#mic-label"),
    meter: $("#level"),
    handsFree: $("#hands-free"),
    modeRadios: [...document.querySelectorAll("input[name=mode]")],
    mute: $("#mute"),
    newChat: $("#new-chat"),
    helpButton: $("#help-button"),
    help: $("#help"),
    stopButton: $("#stop"),
  };
  const banner = new Banner({
    root: $("#banner"),
    text: $("#banner-text"),
    action: $("#banner-action"),
    dismiss: $("#banner-dismiss"),
  });
  const status = new Status({ pill: $("#status"), text: $("#status-text") });
  const chat = new ChatLog($("#messages"), $("#chat-scroll"));
  const speech = new SpeechPlayer();
  const videos = [...document.querySelectorAll(".avatar-video")];
  const video = new VideoPlayer(videos);
  const canvas = $("#avatar-canvas");
  const rig = new Rig({ base: "/rig/" });
  const stage = new Stage({
    canvas,
    frame: $("#stage-frame"),
    captions: new Captions($("#caption")),
    speech,
    video,
    rig,
    mode: settings.mode,
  });
  let app = null;
  const connection = new Connection({ options: () => app.sessionOptions() });
  const microphone = new Microphone();
  const voice = new VoiceInput({ connection, microphone });
  app = new App({ connection, chat, status, stage, speech, video, voice, banner, settings });

  const output = {
    get muted() {
      return speech.muted;
    },
    set muted(muted) {
      speech.setMuted(muted);
      for (const element of videos) element.muted = muted;
    },
  };
  bindControls({ app, voice, dom, output });

  // The avatar's mood follows the conversation; the mouth follows the audio.
  status.addEventListener("change", ({ detail }) => {
    stage.setMood(detail.state === "listening" ? "listening" : detail.state === "thinking" ? "thinking" : "idle");
  });
  app.addEventListener("audioneeded", () => {
    if (audioContext().state !== "running") {
      resumeAudio().then(() => {
        if (audioContext().state !== "running") {
          banner.show("The browser is holding the avatar's voice until you interact with the page.", {
            kind: "autoplay",
            actionLabel: "Enable sound",
            onClick: () => resumeAudio(),
          });
        }
      });
    }
  });
  for (const radio of dom.modeRadios) radio.addEventListener("change", () => saveMode(app.settings.mode));

  connection.addEventListener("state", ({ detail }) => {
    if (detail.state === "reconnecting" && detail.retryInMs > 2500) {
      banner.show("The connection to the server was lost. Retrying…", {
        kind: "connection",
        actionLabel: "Retry now",
        onClick: () => connection.reconnectNow(),
      });
    }
  });
  // The rig loads at once; a failure is only worth a word if the server has an avatar, and
  // it is tried again when a (re)connected server says it has one.
  let rigLoading = null;
  let rigReported = false;
  const loadRig = (report) => {
    if (rig.loaded || rigLoading) return;
    rigLoading = rig.load().then(
      () => {
        const box = rig.mouthRegion();
        canvas.dataset.mouthRegion = [box.x, box.y, box.w, box.h].join(",");
        stage.wake(); // draw the avatar now, not at the next idle tick
      },
      (error) => {
        if (report && !rigReported) {
          rigReported = true;
          chat.notice(`The avatar's drawing could not be loaded (${error.message}).`, "warn");
        }
      },
    ).finally(() => {
      rigLoading = null;
    });
  };
  loadRig(false);
  // What this server offers (its session frame): voice, avatar, limits.
  connection.addEventListener("info", ({ detail }) => {
    const features = detail.features || {};
    voice.unavailable =
      features.voice === false
        ? "Voice input is not available on this server (its speech-to-text service is not deployed). Type instead."
        : null;
    dom.mic.setAttribute("aria-disabled", String(features.voice === false));
    dom.handsFree.setAttribute("aria-disabled", String(features.voice === false));
    $("#stage-frame").classList.toggle("no-avatar", features.avatar === false);
    if (features.avatar !== false) loadRig(true);
    dom.message.placeholder =
      features.text === false ? "Replies are not available: this server has no llm service." : "Type a message…";
    const limits = detail.limits || {};
    if (Number.isInteger(limits.max_text_chars)) dom.message.maxLength = limits.max_text_chars;
  });
  const wake = () => {
    if (!connection.socket && connection.state !== "closed") connection.reconnectNow();
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") wake();
  });

  unlockAudioOnGesture();
  explainMicUpFront(banner, dom.mic);
  stage.start();
  connection.connect();

  window.avatarchat = Object.freeze({
    get state() {
      return status.state;
    },
    get sessionId() {
      return connection.sessionId;
    },
    get connected() {
      return connection.ready;
    },
    get mode() {
      return settings.mode;
    },
    get mouthRegion() {
      return stage.mouthRegion();
    },
    get audio() {
      return {
        contextState: audioContext().state,
        busy: speech.busy,
        heard: (() => {
          const now = stage.player.current();
          return now ? now.clip.clip_id : null;
        })(),
        level: speech.level(),
        videoBusy: video.busy,
      };
    },
    get pose() {
      const pose = stage.pose;
      return pose && { eyes: pose.eyes, mouth: { ...pose.mouth }, hands: { ...pose.hands } };
    },
    get stats() {
      return { ...app.stats, frames: stage.frames, ticks: stage.ticks, rigLoaded: rig.loaded };
    },
  });
}

main();
