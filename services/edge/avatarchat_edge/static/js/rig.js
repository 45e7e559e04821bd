// Draws the avatar from the layers the avatar service exports (`/rig/manifest.json` and the
// PNGs it names; format in docs/timeline.md), composited the way the video renderer does:
// layers in `draw_order`; "body" layers move with breathing; the head turns about the neck
// pivot and carries the "face" layers (eyes, brows, cheeks, mouth), which shift on their own
// channels; each arm is an upper arm on the shoulder, a forearm on the elbow and a hand drawing
// on the wrist, at angles from the pose (degrees, clockwise, 0 = hanging down).

const SUPPORTED_VERSION = 1;
const DEG = Math.PI / 180;

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`could not load ${url}`));
    image.src = url;
  });
}

/** Every image file the manifest names. */
export function manifestImages(manifest) {
  const names = new Set();
  for (const layer of Object.values(manifest.layers)) {
    if (layer.image) names.add(layer.image);
    if (layer.atlas) names.add(layer.atlas);
    for (const name of Object.values(layer.images || {})) names.add(name);
  }
  for (const arm of Object.values(manifest.arms)) {
    names.add(arm.upper_image);
    names.add(arm.fore_image);
    for (const name of Object.values(arm.hand_images)) names.add(name);
  }
  return [...names];
}

/** The point `length` away from `start` in direction `angle` (degrees; 0 = down, clockwise). */
function along([x, y], angle, length) {
  return [x - length * Math.sin(angle * DEG), y + length * Math.cos(angle * DEG)];
}

export class Rig {
  constructor({ base = "/rig/", scale = window.devicePixelRatio >= 1.5 ? 2 : 1 } = {}) {
    this.base = base;
    this.scale = scale; // backing pixels per rig pixel (sharper on high-density screens)
    this.loaded = false;
    this.manifest = null;
    this.images = new Map();
    this.size = 512;
  }

  async load() {
    const response = await fetch(`${this.base}manifest.json`);
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${this.base}manifest.json`);
    const manifest = await response.json();
    if (manifest.version !== SUPPORTED_VERSION) {
      throw new Error(`rig manifest version ${manifest.version}; this page knows ${SUPPORTED_VERSION}`);
    }
    const names = manifestImages(manifest);
    const images = await Promise.all(names.map((name) => loadImage(`${this.base}${name}`)));
    names.forEach((name, i) => this.images.set(name, images[i]));
    this.manifest = manifest;
    this.size = manifest.canvas.width;
    this.loaded = true;
    return manifest;
  }

  /** Sizes the canvas's backing store for this rig. */
  fit(canvas) {
    const side = Math.round(this.size * this.scale);
    if (canvas.width !== side) canvas.width = side;
    if (canvas.height !== side) canvas.height = side;
  }

  /** The mouth's box at rest, in canvas (backing) pixels. */
  mouthRegion() {
    if (!this.manifest) return { x: 196 * this.scale, y: 254 * this.scale, w: 120 * this.scale, h: 84 * this.scale };
    const mouth = this.manifest.layers.mouth;
    const [w, h] = mouth.frame_size;
    return { x: mouth.x * this.scale, y: mouth.y * this.scale, w: w * this.scale, h: h * this.scale };
  }

  draw(ctx, pose) {
    ctx.setTransform(this.scale, 0, 0, this.scale, 0, 0);
    if (!this.loaded) {
      this.drawPlaceholder(ctx);
      return;
    }
    const m = this.manifest;
    const v = (channel) => pose.values[channel] || 0;
    const breath = v("body.dy");
    const [nx, ny] = m.head.neck_pivot;
    const headTransform = () => {
      ctx.translate(nx + v("head.dx"), ny + v("head.dy") + breath);
      ctx.rotate(v("head.rot") * DEG);
      ctx.translate(-nx, -ny);
    };
    for (const name of m.draw_order) {
      ctx.save();
      const arm = this.armPart(name);
      if (arm) {
        this.drawArmPart(ctx, pose, arm.arm, arm.part, breath);
      } else {
        const layer = m.layers[name];
        if (layer) {
          if (layer.parent === "body") ctx.translate(0, breath);
          if (layer.parent === "head" || layer.parent === "face") headTransform();
          if (layer.parent === "face") ctx.translate(v("face.dx"), v("face.dy"));
          if (layer.dy_channel) ctx.translate(0, v(layer.dy_channel));
          this.drawLayer(ctx, name, layer, pose);
        }
      }
      ctx.restore();
    }
  }

  drawLayer(ctx, name, layer, pose) {
    if (layer.atlas) {
      const { viseme, level, smile } = pose.mouth;
      const frames = layer.frames;
      const key = `${viseme}/${viseme === "sil" ? 1 : level}/${smile ? "smile" : "plain"}`;
      const at = frames[key] || frames[`${viseme}/${viseme === "sil" ? 1 : level}/plain`] || frames["sil/1/plain"];
      const [w, h] = layer.frame_size;
      ctx.drawImage(this.images.get(layer.atlas), at[0], at[1], w, h, layer.x, layer.y, w, h);
    } else if (layer.images) {
      const image = this.images.get(layer.images[pose.eyes] || layer.images.open);
      ctx.drawImage(image, layer.x, layer.y);
    } else {
      ctx.drawImage(this.images.get(layer.image), layer.x, layer.y);
    }
  }

  /** "upper_arm_r" → {arm: "arm_r", part: "upper"}; null for other layers. */
  armPart(name) {
    const match = /^(upper_arm|forearm|hand)_(\w+)$/.exec(name);
    if (!match) return null;
    const arm = `arm_${match[2]}`;
    if (!this.manifest.arms[arm]) return null;
    return { arm, part: { upper_arm: "upper", forearm: "fore", hand: "hand" }[match[1]] };
  }

  drawArmPart(ctx, pose, armName, part, breath) {
    const arm = this.manifest.arms[armName];
    const v = (channel) => pose.values[channel] || 0;
    const shoulderAngle = arm.rest_shoulder_deg + v(`${armName}.shoulder`);
    const foreAngle = shoulderAngle + arm.rest_elbow_deg + v(`${armName}.elbow`);
    const joint = [arm.shoulder[0], arm.shoulder[1] + breath + v("shoulders.dy")];
    let at = joint;
    let angle = shoulderAngle;
    let image = arm.upper_image;
    let pivot = arm.upper_pivot;
    if (part !== "upper") {
      const elbow = along(joint, shoulderAngle, arm.upper_length);
      at = elbow;
      angle = foreAngle;
      image = arm.fore_image;
      pivot = arm.fore_pivot;
      if (part === "hand") {
        at = along(elbow, foreAngle, arm.fore_length);
        angle = foreAngle + v(`${armName}.hand`);
        const shape = pose.hands[armName] || "relaxed";
        image = arm.hand_images[shape] || arm.hand_images.relaxed;
        pivot = arm.hand_pivot;
      }
    }
    ctx.translate(at[0], at[1]);
    ctx.rotate(angle * DEG);
    ctx.drawImage(this.images.get(image), -pivot[0], -pivot[1]);
  }

  /** Until (or unless) the rig loads: a soft, breathing silhouette. */
  drawPlaceholder(ctx) {
    const s = this.size;
    ctx.clearRect(0, 0, s, s);
    ctx.fillStyle = "rgba(255, 255, 255, 0.07)";
    ctx.beginPath();
    ctx.ellipse(s / 2, s * 0.4, s * 0.17, s * 0.21, 0, 0, Math.PI * 2);
    ctx.fill();
    ctx.beginPath();
    ctx.ellipse(s / 2, s * 1.02, s * 0.36, s * 0.3, 0, 0, Math.PI * 2);
    ctx.fill();
  }
}
