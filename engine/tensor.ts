// Tensors: a shape and dtype over a pooled GPU buffer. f32 is the compute type; f16 and bf16 are storage
// formats converted to f32 on load (T5 overflows f16 in its feed-forward outputs). i32 holds ids and masks.
import { recordOp, type GradNode } from './autograd.ts';
import { rt, type BufferBinding } from './runtime.ts';
import { gpu } from './gpu.ts';
import { track, untrack } from './scope.ts';
import { fillKernel } from './fill.wgsl.ts';
import { bindingChunks } from './binding-chunks.ts';

export type DType = 'f32' | 'i32';
export type Shape = readonly number[];

const BYTES_PER_ELEMENT = 4;

/** A GPU buffer shared by tensor handles (a view, a tensor saved for backward); freed with its last user. */
export class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) rt().pool.release(this.buffer);
  }
}

let poisonOutputs = false;
/** Tests turn this on: every new uninitialised tensor is filled with NaN, so unwritten elements show. */
export function setPoison(on: boolean): void {
  poisonOutputs = on;
}
export const POISON_BITS = 0x7fc00000; // a quiet NaN as f32; 2143289344 as i32

let nextId = 1;

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${what}: invalid shape [${shape.join(', ')}]`);
  }
}

export class Tensor {
  readonly id = nextId++;
  readonly shape: number[];
  readonly size: number;
  private storage_: Storage | null;
  requiresGrad = false;
  /** accumulated gradient of a leaf tensor with requiresGrad */
  grad: Tensor | null = null;
  /** the op that made this tensor, while its graph is alive */
  node: GradNode | null = null;
  kept = false;
  name?: string;

  constructor(shape: Shape, readonly dtype: DType, storage: Storage) {
    this.shape = [...shape];
    this.size = sizeOf(shape);
    this.storage_ = storage;
    track(this);
  }

  get rank(): number {
    return this.shape.length;
  }
  get bytes(): number {
    return this.size * BYTES_PER_ELEMENT;
  }
  get disposed(): boolean {
    return this.storage_ === null;
  }
  get storage(): Storage {
    if (!this.storage_) {
      throw new Error(`use of a disposed tensor${this.name ? ` '${this.name}'` : ''} [${this.shape.join(', ')}]`);
    }
    return this.storage_;
  }
  get buffer(): GPUBuffer {
    return this.storage.buffer;
  }

  /** A binding of this tensor for a kernel launch (`what` names it in errors). */
  read(what = this.describe()): BufferBinding {
    return { buffer: this.buffer, size: Math.max(this.bytes, BYTES_PER_ELEMENT), write: false, what };
  }
  write(what = this.describe()): BufferBinding {
    return { buffer: this.buffer, size: Math.max(this.bytes, BYTES_PER_ELEMENT), write: true, what };
  }

  describe(): string {
    return `${this.name ?? 'tensor'} ${this.dtype}[${this.shape.join(', ')}]`;
  }

  /** Exempts this tensor from enclosing `tidy` scopes; it lives until `dispose()`. */
  keep(): this {
    this.kept = true;
    untrack(this);
    return this;
  }

  dispose(): void {
    if (!this.storage_) return;
    this.storage_.release();
    this.storage_ = null;
    this.node?.release();
    this.node = null;
    this.grad?.dispose();
    this.grad = null;
  }

  /** Another handle on the same buffer, same shape and name, without this handle's graph node. */
  share(): Tensor {
    const h = new Tensor(this.shape, this.dtype, this.storage.retain());
    h.name = this.name;
    return h;
  }

  /** Another handle on the same buffer with another shape (same element count). */
  reshape(shape: Shape): Tensor {
    return reshape(this, shape);
  }

  async toArray(): Promise<Float32Array | Int32Array> {
    if (this.size === 0) return this.dtype === 'f32' ? new Float32Array(0) : new Int32Array(0);
    const bytes = await rt().read(this.buffer, 0, this.bytes, this.describe());
    return this.dtype === 'f32' ? new Float32Array(bytes) : new Int32Array(bytes);
  }

  /** The values as float32; an f32 tensor's are read into `into` when it has exactly this tensor's size. */
  async toFloat32(into?: Float32Array): Promise<Float32Array> {
    if (into && this.dtype === 'f32' && into.length === this.size && into.byteOffset === 0 && this.size > 0) {
      await rt().read(this.buffer, 0, this.bytes, this.describe(), into.buffer as ArrayBuffer);
      return into;
    }
    const a = await this.toArray();
    return a instanceof Float32Array ? a : Float32Array.from(a);
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new RangeError(`item() needs a tensor of one element, got [${this.shape.join(', ')}]`);
    return (await this.toArray())[0]!;
  }
}

/** A new tensor whose contents are undefined (NaN when poisoning is on). */
export function empty(shape: Shape, dtype: DType = 'f32'): Tensor {
  checkShape(shape, 'empty');
  const bytes = Math.max(sizeOf(shape) * BYTES_PER_ELEMENT, BYTES_PER_ELEMENT);
  const buffer = rt().pool.acquire(bytes, `${dtype}[${shape.join(',')}]`);
  const t = new Tensor(shape, dtype, new Storage(buffer, bytes));
  if (poisonOutputs) fillBits(t, POISON_BITS);
  return t;
}

function fillBits(t: Tensor, bits: number): void {
  // bound in ranges: a tensor may be larger than maxStorageBufferBindingSize; the ranges of a run that starts
  // at element 0 start on an aligned element, so the kernel's own index starts at 0 in each (c.start is 0)
  for (const c of bindingChunks(0, t.size, 1, gpu().limits.maxStorageBufferBindingSize)) {
    const k = fillKernel(c.count);
    rt().dispatch({
      name: 'fill',
      code: k.code,
      bindings: [{ buffer: t.buffer, offset: c.offset, size: c.size, write: true, what: t.describe() }],
      params: [['u32', c.count], ['u32', bits >>> 0]],
      workgroups: k.workgroups,
    });
  }
}

export function full(shape: Shape, value: number, dtype: DType = 'f32'): Tensor {
  const wasPoison = poisonOutputs;
  poisonOutputs = false;
  const t = empty(shape, dtype);
  poisonOutputs = wasPoison;
  const view = new DataView(new ArrayBuffer(4));
  if (dtype === 'f32') view.setFloat32(0, value, true);
  else view.setInt32(0, value, true);
  fillBits(t, view.getUint32(0, true));
  return t;
}

export const zeros = (shape: Shape, dtype: DType = 'f32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: Shape, dtype: DType = 'f32'): Tensor => full(shape, 1, dtype);

export interface TensorOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  name?: string;
}

/** Uploads host data. Numbers arrays become f32 unless `dtype: 'i32'` is given. */
export function tensor(
  data: ArrayLike<number> | Float32Array | Int32Array,
  shape: Shape,
  opts: TensorOptions = {},
): Tensor {
  const dtype: DType = opts.dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
  checkShape(shape, 'tensor');
  if (data.length !== sizeOf(shape)) {
    throw new RangeError(
      `tensor${opts.name ? ` '${opts.name}'` : ''}: ${data.length} values do not fill shape [${shape.join(', ')}] (${sizeOf(shape)} elements)`,
    );
  }
  const wasPoison = poisonOutputs;
  poisonOutputs = false;
  const t = empty(shape, dtype);
  poisonOutputs = wasPoison;
  if (opts.name) t.name = opts.name;
  const host =
    dtype === 'f32'
      ? data instanceof Float32Array ? data : Float32Array.from(data)
      : data instanceof Int32Array ? data : Int32Array.from(data);
  if (host.length > 0) rt().write(t.buffer, 0, host);
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

/** f16 bits to f32 (storage conversion on load). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** bf16 bits to f32: the top half of an f32. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/** Uploads f16 or bf16 storage as an f32 tensor. */
export function tensorFromHalf(bits: Uint16Array, format: 'f16' | 'bf16', shape: Shape, opts: TensorOptions = {}): Tensor {
  return tensor(format === 'f16' ? f16ToF32(bits) : bf16ToF32(bits), shape, { ...opts, dtype: 'f32' });
}

export function reshape(t: Tensor, shape: Shape): Tensor {
  const resolved = [...shape];
  const infer = resolved.indexOf(-1);
  if (infer >= 0) {
    const known = resolved.reduce((a, d, i) => (i === infer ? a : a * d), 1);
    resolved[infer] = known === 0 ? 0 : t.size / known;
  }
  if (sizeOf(resolved) !== t.size || resolved.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`reshape: cannot view ${t.describe()} as [${shape.join(', ')}]`);
  }
  const out = new Tensor(resolved, t.dtype, t.storage.retain());
  const inShape = t.shape;
  return recordOp('reshape', [t], out, [], (g) => [g.reshape(inShape)]);
}

export function memory() {
  return rt().pool.memory();
}

/** Gives every free pooled buffer back to the driver (torch.cuda.empty_cache); live tensors are untouched. */
export function emptyCache(): void {
  rt().emptyCache();
}

/** Keeps at most `bytes` of freed buffers for reuse (default: no limit); those freed longest ago go back first. */
export function setPoolLimit(bytes: number): void {
  rt().pool.setLimit(bytes);
}
