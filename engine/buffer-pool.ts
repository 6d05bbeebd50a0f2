// GPU buffers recycled by size class. Exact-size pools grow without bound when shapes vary (a padded batch
// changes length every step), so requests are rounded up to one of four classes per power of two
// (at most 25% waste), and a freed buffer serves any later request of its class.
//
// A request takes the free buffer of its class that was created first, not the one freed last. A step that
// repeats the same requests and releases then gets the same buffers every time, so the runtime's bind groups
// (keyed by the buffers bound) are found in its cache. Freed last, first out permuted the buffers from one step
// to the next, as activations are released in another order than requested: a t5-small training step made 2,100
// new bind groups out of 2,231 dispatches, 4-beam decoding at batch 16 about 1,200 a run; now none once warm.
//
// Shapes that change every step (a padded batch's length) would each leave their own buffers in their own classes,
// so a request that finds none of its class takes a free one from the next classes up (REUSE_CLASSES_UP).
//
// A pool that keeps every buffer it once allocated holds a long process's worst moment forever, so memory goes
// back two ways: `trim()` (the engine's `emptyCache()`, PyTorch's torch.cuda.empty_cache) after a phase, and an
// optional limit on pooled bytes past which the buffers freed longest ago are given back. A buffer given back may
// still be named by commands recorded but not yet submitted: it is destroyed only after the next submit
// (`destroyRetired`, called by the runtime), which WebGPU allows while the submitted work still runs.

const MIN_BYTES = 256;
const CLASSES_PER_OCTAVE = 4;
/**
 * A request with no free buffer of its class takes one from up to this many classes above (at most 50% larger)
 * before creating one. Fine-tuning t5-small on the tutorial's data, whose batches have other lengths every step,
 * the pool held 4,067 MiB of free buffers at step 10, 4,340 at step 20 and 5,636 at step 30, still growing (a set
 * of buffers for each length class seen); with 2 classes 2,454 at step 12 and 2,518 at step 20, at the same step
 * times. With 4 classes it held 1,972 at step 20, but the parameters and AdamW moments took larger buffers for
 * good (192 MiB more live).
 */
const REUSE_CLASSES_UP = 2;
// GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST: the spec's fixed bit values, written out because in Node the
// GPUBufferUsage global exists only once initGpu has loaded Dawn, after this module is evaluated.
export const BUFFER_USAGE = 0x80 | 0x04 | 0x08;

export function sizeClass(bytes: number): number {
  const n = Math.max(MIN_BYTES, bytes);
  const octave = 2 ** Math.floor(Math.log2(n));
  const step = octave / CLASSES_PER_OCTAVE;
  return Math.ceil(n / step) * step;
}

export interface MemoryStats {
  /** bytes held by live tensors (size classes, as allocated) */
  bytesLive: number;
  /** bytes sitting free in the pool */
  bytesPooled: number;
  /** GPU buffers outside the pool: uniform arena, upload staging, kept readback buffers, the packed matmul's scratch */
  bytesOther: number;
  /** largest bytesLive + bytesPooled + bytesOther seen */
  peakBytes: number;
  buffersLive: number;
  buffersPooled: number;
  /** createBuffer calls so far: flat across training steps when the pool works */
  buffersCreated: number;
}

export class BufferPool {
  /** free buffers by size class, each list in descending creation order: pop() gives the oldest */
  private free = new Map<number, GPUBuffer[]>();
  /** creation order of every buffer the pool made */
  private ids = new WeakMap<GPUBuffer, number>();
  private nextId = 0;
  /** every free buffer, oldest release first (a Set keeps insertion order) */
  private freeOrder = new Set<GPUBuffer>();
  private retired: GPUBuffer[] = [];
  private limit = Infinity;
  private stats: MemoryStats = {
    bytesLive: 0, bytesPooled: 0, bytesOther: 0, peakBytes: 0, buffersLive: 0, buffersPooled: 0, buffersCreated: 0,
  };

  constructor(private readonly device: GPUDevice, private readonly maxBufferSize: number) {}

  acquire(bytes: number, label: string): GPUBuffer {
    const size = sizeClass(bytes);
    if (size > this.maxBufferSize) {
      throw new RangeError(
        `${label}: ${bytes} bytes exceeds this adapter's maxBufferSize (${this.maxBufferSize} bytes)`,
      );
    }
    let buf = this.free.get(size)?.pop();
    // none of its class: the smallest free buffer a few classes up, rather than a new one
    for (let c = size, up = 0; !buf && up < REUSE_CLASSES_UP && c < this.maxBufferSize; up++) {
      c = sizeClass(c + 1);
      buf = this.free.get(c)?.pop();
    }
    if (buf) {
      this.freeOrder.delete(buf);
      this.stats.bytesPooled -= buf.size;
      this.stats.buffersPooled--;
    } else {
      buf = this.device.createBuffer({ size, usage: BUFFER_USAGE, label });
      this.ids.set(buf, this.nextId++);
      this.stats.buffersCreated++;
    }
    this.stats.bytesLive += buf.size;
    this.stats.buffersLive++;
    this.notePeak();
    return buf;
  }

  /**
   * Counts a buffer created (bytes > 0) or destroyed (bytes < 0) outside the pool, so that peakBytes is all the
   * GPU memory the engine holds, not only its tensors.
   */
  noteOther(bytes: number): void {
    this.stats.bytesOther += bytes;
    this.notePeak();
  }

  private notePeak(): void {
    const held = this.stats.bytesLive + this.stats.bytesPooled + this.stats.bytesOther;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, held);
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.stats.bytesLive -= size;
    this.stats.buffersLive--;
    this.stats.bytesPooled += size;
    this.stats.buffersPooled++;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    // insertion keeps the list in descending id order (binary search; lists hold tens of buffers)
    const id = this.ids.get(buf) ?? -1;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ids.get(list[mid]!) ?? -1) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
    this.freeOrder.add(buf);
    if (this.stats.bytesPooled > this.limit) this.shrinkTo(this.limit);
  }

  /** Gives back every pooled (free) buffer. */
  trim(): void {
    this.shrinkTo(0);
  }

  /** Pooled bytes above `bytes` are given back, oldest-freed first, now and after every release. */
  setLimit(bytes: number): void {
    if (!(bytes >= 0)) throw new RangeError(`pool limit: expected a number of bytes >= 0, got ${bytes}`);
    this.limit = bytes;
    this.shrinkTo(bytes);
  }

  private shrinkTo(bytes: number): void {
    for (const buf of this.freeOrder) {
      if (this.stats.bytesPooled <= bytes) break;
      this.freeOrder.delete(buf);
      const list = this.free.get(buf.size)!;
      list.splice(list.lastIndexOf(buf), 1);
      this.stats.bytesPooled -= buf.size;
      this.stats.buffersPooled--;
      this.retired.push(buf);
    }
  }

  /** Destroys the buffers given back; the runtime calls this after a submit. */
  destroyRetired(): void {
    for (const b of this.retired.splice(0)) b.destroy();
  }

  memory(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.bytesLive + this.stats.bytesPooled + this.stats.bytesOther;
  }
}
