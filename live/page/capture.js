// An AudioWorklet that hands the page what it hears in blocks of 512 frames (about 11 ms),
// channel by channel, for the engine (a microphone's analysis, or a recording).
class GanterpCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.channels = options.processorOptions.channels;
    this.size = 512;
    this.reset();
  }

  reset() {
    this.buffers = Array.from({ length: this.channels }, () => new Float32Array(this.size));
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    const frames = input.length ? input[0].length : 128;
    let offset = 0;
    while (offset < frames) {
      const take = Math.min(frames - offset, this.size - this.filled);
      for (let c = 0; c < this.channels; c++) {
        const data = input[Math.min(c, input.length - 1)];
        if (data) this.buffers[c].set(data.subarray(offset, offset + take), this.filled);
        // a missing input (nothing connected yet) leaves silence
      }
      this.filled += take;
      offset += take;
      if (this.filled === this.size) {
        this.port.postMessage(this.buffers, this.buffers.map((b) => b.buffer));
        this.reset();
      }
    }
    return true;
  }
}
registerProcessor("ganterp-capture", GanterpCapture);
