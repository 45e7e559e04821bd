// Runs on the audio rendering thread. Turns the microphone's float samples, at whatever rate
// the AudioContext runs (usually 44.1 or 48 kHz), into 16 kHz mono signed 16-bit PCM:
// an anti-alias low-pass (windowed sinc), then linear interpolation at the target rate.
// Posts {type: "pcm", buffer} chunks of `chunkMs`, {type: "level", rms, peak} about 20 times
// a second, and answers {type: "flush"} with the partial chunk then {type: "flushed"}.

const DEFAULT_TARGET_RATE = 16000;
const DEFAULT_CHUNK_MS = 40;
const FILTER_TAPS = 31;

function lowPassTaps(cutoff, count) {
  // cutoff as a fraction of the input rate (0 < cutoff < 0.5); Blackman-windowed sinc.
  const taps = new Float32Array(count);
  const middle = (count - 1) / 2;
  let sum = 0;
  for (let i = 0; i < count; i += 1) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const window =
      0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (count - 1)) +
      0.08 * Math.cos((4 * Math.PI * i) / (count - 1));
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < count; i += 1) taps[i] /= sum;
  return taps;
}

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const targetRate = opts.targetRate || DEFAULT_TARGET_RATE;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.taps = this.step > 1 ? lowPassTaps((0.45 * targetRate) / sampleRate, FILTER_TAPS) : null;
    this.ring = new Float32Array(FILTER_TAPS);
    this.ringPos = 0;
    this.previous = 0; // filtered sample before the current one
    this.offset = 0; // position of the next output sample, relative to the current input sample
    this.chunk = new Int16Array(Math.round((targetRate * (opts.chunkMs || DEFAULT_CHUNK_MS)) / 1000));
    this.filled = 0;
    this.levelEvery = Math.round(sampleRate / 20);
    this.levelCount = 0;
    this.levelSum = 0;
    this.levelPeak = 0;
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "flush") {
        this.emitChunk();
        this.port.postMessage({ type: "flushed" });
      }
    };
  }

  filter(x) {
    if (!this.taps) return x;
    const n = this.ring.length;
    this.ring[this.ringPos] = x;
    let y = 0;
    let index = this.ringPos;
    for (let j = 0; j < n; j += 1) {
      y += this.taps[j] * this.ring[index];
      index = index === 0 ? n - 1 : index - 1;
    }
    this.ringPos = (this.ringPos + 1) % n;
    return y;
  }

  push(sample) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.chunk[this.filled] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.filled += 1;
    if (this.filled === this.chunk.length) this.emitChunk();
  }

  emitChunk() {
    if (this.filled === 0) return;
    const out = this.chunk.slice(0, this.filled);
    this.port.postMessage({ type: "pcm", buffer: out.buffer }, [out.buffer]);
    this.filled = 0;
  }

  meter(x) {
    this.levelSum += x * x;
    const magnitude = Math.abs(x);
    if (magnitude > this.levelPeak) this.levelPeak = magnitude;
    this.levelCount += 1;
    if (this.levelCount >= this.levelEvery) {
      const rms = Math.sqrt(this.levelSum / this.levelCount);
      this.port.postMessage({ type: "level", rms, peak: this.levelPeak });
      this.levelCount = 0;
      this.levelSum = 0;
      this.levelPeak = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i += 1) {
      let x = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c += 1) x += input[c][i];
        x /= channels;
      }
      this.meter(x);
      const y = this.filter(x);
      // Emit every output sample that falls between the previous and this filtered sample.
      this.offset -= 1;
      while (this.offset <= 0) {
        const t = 1 + this.offset; // 0 at the previous sample, 1 at this one
        this.push(this.previous + (y - this.previous) * t);
        this.offset += this.step;
      }
      this.previous = y;
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
