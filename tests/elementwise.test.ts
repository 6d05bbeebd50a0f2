// Tests generated from the elementwise table: every op forward against its float64 reference (same-shape
// vec4 and scalar paths, broadcasting, awkward sizes) and backward against central finite differences.
import { describe, expect, it } from 'vitest';
import { memory, sizeOf, tensor, type Tensor } from '../engine/tensor.ts';
import { rt } from '../engine/runtime.ts';
import { tidy } from '../engine/scope.ts';
import { backward } from '../engine/autograd.ts';
import { EW_TABLE, type EwOp } from '../kernels/elementwise-table.ts';
import { add, applyOp, ewMapRef, ewRef, maskFill, mul, scale, where } from '../kernels/elementwise.ts';
import { broadcastShapes } from '../kernels/elementwise-dispatch.ts';
import { broadcastTo } from '../kernels/reduce.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';

usePoisonedGpu();

type Shape = number[];

function rand(n: number, [lo, hi]: [number, number]): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * Math.random());
}

/** max over i of |got - want| / max(1, |want|) */
function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; at: number } {
  let err = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = i;
    }
  }
  return { err, at };
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  const { err, at } = maxErr(got, want);
  if (err > tol) throw new Error(`${what}: error ${err} > ${tol} at ${at}: got ${got[at]}, want ${want[at]}`);
}

/** Random inputs for an op; the where condition is 0/1; for finite differences (small shapes), inputs
 * near a kink (relu at 0, maximum on ties) are redrawn. */
function inputsFor(op: EwOp, shapes: Shape[], avoidKinks = false): Float32Array[] {
  const domain = op.domain ?? [-3, 3];
  for (;;) {
    const data = shapes.map((s, k) =>
      op.name === 'where' && k === 0 ? Float32Array.from({ length: sizeOf(s) }, () => (Math.random() < 0.5 ? 0 : 1)) : rand(sizeOf(s), domain),
    );
    if (!op.kinks || !avoidKinks) return data;
    const vals = data.map((d, k) => ({ data: d, shape: shapes[k]! }));
    if (!ewMapRef(op.name, vals, (v) => (op.kinks!(v) ? 1 : 0)).some((b) => b !== 0)) return data;
  }
}

const SCALAR = Math.fround(0.37); // an f32 value, so the kernel's f32 uniform equals the reference's scalar

async function forwardCheck(op: EwOp, shapes: Shape[]): Promise<void> {
  const data = inputsFor(op, shapes);
  const ts = data.map((d, k) => tensor(d, shapes[k]!));
  const y = applyOp(op.name, ts, SCALAR);
  const want = ewRef(op.name, data.map((d, k) => ({ data: d, shape: shapes[k]! })), SCALAR);
  expect(y.shape).toEqual(broadcastShapes(op.name, shapes));
  expectClose(await y.toArray(), want, op.tol, `${op.name} ${shapes.map((s) => `[${s}]`).join(' ')} (${op.why})`);
  y.dispose();
  ts.forEach((t) => t.dispose());
}

/** GPU backward of loss = sum(op(inputs) * W) against central differences of the float64 reference.
 * Bound: 2e-4 of max(1, |fd|): h = 1e-3 leaves an O(h^2 f''') truncation error (~1e-6 for these functions on
 * their test domains) and the GPU gradient carries f32 rounding (~1e-6); 2e-4 leaves margin, yet a wrong
 * rule (a factor, a sign, a missing broadcast sum) is off by O(1). */
async function backwardCheck(op: EwOp, shapes: Shape[]): Promise<void> {
  const data = inputsFor(op, shapes, true);
  const diff = op.bwd.map((b) => b !== null);
  const ts = data.map((d, k) => tensor(d, shapes[k]!, { requiresGrad: diff[k] }));
  const outShape = broadcastShapes(op.name, shapes);
  const w = rand(sizeOf(outShape), [-1, 1]);
  const y = applyOp(op.name, ts, SCALAR);
  const W = tensor(w, outShape);
  backward(y, { gradient: W });
  const h = 1e-3;
  const loss = (ins: Float64Array[]) => {
    const out = ewRef(op.name, ins.map((d, k) => ({ data: d, shape: shapes[k]! })), SCALAR);
    let s = 0;
    for (let i = 0; i < out.length; i++) s += out[i]! * w[i]!;
    return s;
  };
  for (let k = 0; k < ts.length; k++) {
    if (!diff[k]) {
      expect(ts[k]!.grad).toBeNull();
      continue;
    }
    const base = data.map((d) => Float64Array.from(d));
    const fd = centralDiff(base[k]!, () => loss(base), h);
    const g = ts[k]!.grad;
    expect(g, `${op.name}: input ${k} has no gradient`).not.toBeNull();
    expect(g!.shape).toEqual(shapes[k]);
    expectClose(await g!.toArray(), fd, 2e-4, `${op.name} d/d${op.args[k]} ${shapes.map((s) => `[${s}]`).join(' ')}`);
  }
  y.dispose();
  W.dispose();
  ts.forEach((t) => t.dispose());
}

// Same-shape sizes: 1, a prime, a multiple of 4 just past a workgroup's vec4 tile (8 vec4 x 256 = 8192
// elements), and a non-multiple of 4 (scalar path) past one tile.
const SAME_SIZES = [[1], [7], [1031], [8192 + 12], [3, 2741]];
// Broadcasting: row bias, T5's [B,1,1,L] mask on [B,H,Lq,L], a scalar, both sides broadcast (vec4 inner),
// outer product shape (scalar path), leading ones.
const BCAST2: Shape[][] = [
  [[5, 12], [12]],
  [[2, 1, 1, 8], [2, 3, 5, 8]],
  [[4, 9], []],
  [[2, 1, 8], [1, 3, 8]],
  [[6, 1], [1, 5]],
  [[1, 1, 7], [3, 7]],
];
const BCAST3: Shape[][] = [
  [[2, 1, 4], [2, 3, 4], [1]],
  [[5, 1], [5, 6], [6]],
];

// The broadcast kernel is shared by every row: the full set of shapes runs on a few ops, one shape on the
// others (to check each expression on the broadcast path) — pipeline compiles dominate this file's time.
const FULL_BCAST = new Set(['add', 'mul', 'where']);
const BCAST_BACKWARD = new Set(['add', 'mul', 'div', 'maximum']);

describe('elementwise table: forward', () => {
  for (const op of EW_TABLE) {
    it(`${op.name} same shape at sizes 1, prime, vec4 tile + 12, scalar path`, async () => {
      for (const s of SAME_SIZES) await forwardCheck(op, op.args.map(() => s));
    });
    if (op.args.length > 1) {
      it(`${op.name} broadcasting`, async () => {
        const all = op.args.length === 2 ? BCAST2 : BCAST3;
        for (const shapes of FULL_BCAST.has(op.name) ? all : all.slice(1, 2)) await forwardCheck(op, shapes);
      });
    }
  }
});

describe('elementwise table: backward vs finite differences', () => {
  for (const op of EW_TABLE) {
    it(`${op.name}`, async () => {
      await backwardCheck(op, op.args.map(() => [3, 5]));
      // the broadcast sum of a gradient is shared code: checked on a few ops (and on where, below)
      if (BCAST_BACKWARD.has(op.name)) {
        await backwardCheck(op, [[2, 3, 4], [3, 1]]);
        await backwardCheck(op, [[4], [2, 1, 4]]);
      }
      if (op.args.length === 3) await backwardCheck(op, [[2, 1, 4], [3, 4], [2, 3, 1]]);
    });
  }
});

describe('elementwise extras', () => {
  it('gelu is Hugging Face gelu_new on known values', async () => {
    // Hugging Face NewGELUActivation's expression, 0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * x**3))),
    // evaluated in Python float64 (math module); bound 1e-6: f32 exp/division roundings on O(1) values
    const x = tensor([-3, -1, 0, 0.5, 2], [5]);
    const y = applyOp('gelu', [x]);
    const want = [-0.0036373920817729943, -0.15880800939172324, 0, 0.34571400982514394, 1.954597694087775];
    expectClose(await y.toArray(), want, 1e-6, 'gelu_new values');
    x.dispose();
    y.dispose();
  });

  it('maskFill and broadcastTo, forward and backward', async () => {
    const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
    const m = tensor(new Int32Array([0, 1, 0]), [3]);
    const y = maskFill(x, m, -1e9);
    expect([...(await y.toArray())]).toEqual([1, -1e9, 3, 4, -1e9, 6]);
    backward(y);
    expect([...(await x.grad!.toArray())]).toEqual([1, 0, 1, 1, 0, 1]);
    const b = tensor([1, 2], [2, 1], { requiresGrad: true });
    const z = broadcastTo(b, [2, 3]);
    expect([...(await z.toArray())]).toEqual([1, 1, 1, 2, 2, 2]);
    backward(z, { gradient: tensor([1, 2, 3, 4, 5, 6], [2, 3]) });
    expect([...(await b.grad!.toArray())]).toEqual([6, 15]);
    [x, m, y, b, z].forEach((t) => t.dispose());
  });

  it('gradients accumulate through a chain with a broadcast bias', async () => {
    // y = (x * w + bias) * x: dy/dx = 2 x w + bias, dy/dbias = sum over rows of x
    const xd = rand(12, [-1, 1]);
    const wd = rand(12, [-1, 1]);
    const bd = rand(4, [-1, 1]);
    const x = tensor(xd, [3, 4], { requiresGrad: true });
    const w = tensor(wd, [3, 4]);
    const bias = tensor(bd, [4], { requiresGrad: true });
    const y = mul(add(mul(x, w), bias), x);
    backward(y);
    const gx = Float64Array.from(xd, (v, i) => 2 * v * wd[i]! + bd[i % 4]!);
    const gb = Float64Array.from({ length: 4 }, (_, j) => xd[j]! + xd[j + 4]! + xd[j + 8]!);
    expectClose(await x.grad!.toArray(), gx, 1e-6, 'dy/dx');
    expectClose(await bias.grad!.toArray(), gb, 1e-6, 'dy/dbias');
    // one tensor as both operands: both edges reach the same leaf
    const x2 = tensor(xd, [3, 4], { requiresGrad: true });
    const sq = mul(x2, x2);
    backward(sq);
    expectClose(await x2.grad!.toArray(), Float64Array.from(xd, (v) => 2 * v), 0, 'd(x*x)/dx');
    [x, w, bias, y, x2, sq].forEach((t) => t.dispose());
  });

  it('frees every intermediate of forward and backward (broadcast sums, saved inputs)', async () => {
    const step = () => tidy(() => {
      const a = tensor(rand(24, [0.5, 2]), [2, 3, 4], { requiresGrad: true });
      const b = tensor(rand(3, [0.5, 2]), [1, 3, 1], { requiresGrad: true });
      const c = tensor(rand(4, [0.5, 2]), [4], { requiresGrad: true });
      const y = applyOp('div', [applyOp('gelu', [applyOp('mul', [a, b])]), applyOp('add', [c, tensor([1], [1, 1, 1])])]);
      backward(y);
    });
    step();
    await rt().sync();
    const before = memory();
    for (let i = 0; i < 5; i++) step();
    await rt().sync();
    const after = memory();
    expect(after.bytesLive).toBe(before.bytesLive);
    expect(after.buffersCreated).toBe(before.buffersCreated);
  });

  it('where takes an i32 condition (vec4 path) and T5 position-bias gradients sum over the batch', async () => {
    const c = Int32Array.from({ length: 8 }, () => (Math.random() < 0.5 ? 0 : 7));
    const ad = rand(16, [-1, 1]);
    const a = tensor(ad, [2, 8]);
    const b = tensor([-5], [1]);
    const y = where(tensor(c, [8]), a, b);
    expectClose(await y.toArray(), Float64Array.from(ad, (v, i) => (c[i % 8] !== 0 ? v : -5)), 0, 'where i32');
    // scores [B, H, Lq, Lk] + bias [1, H, Lq, Lk]: d/dbias = sum over B of the incoming gradient
    const [B, H, Lq, Lk] = [3, 2, 5, 8];
    const scores = tensor(rand(B * H * Lq * Lk, [-1, 1]), [B, H, Lq, Lk]);
    const bias = tensor(rand(H * Lq * Lk, [-1, 1]), [1, H, Lq, Lk], { requiresGrad: true });
    const gd = rand(B * H * Lq * Lk, [-1, 1]);
    const z = add(scores, bias);
    backward(z, { gradient: tensor(gd, z.shape) });
    const want = Float64Array.from({ length: H * Lq * Lk }, (_, i) => gd[i]! + gd[i + H * Lq * Lk]! + gd[i + 2 * H * Lq * Lk]!);
    // three f32 additions: 2 roundings of values below 3
    expectClose(await bias.grad!.toArray(), want, 5e-7, 'position bias gradient');
    [a, b, y, scores, bias, z].forEach((t) => t.dispose());
  });

  it('rejects bad input before the GPU', () => {
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tensor([1, 2, 3, 4], [4]);
    expect(() => add(a, b)).toThrow(/add: shapes \[2, 3\] and \[4\] do not broadcast/);
    const i = tensor(new Int32Array([1, 2, 3]), [3]);
    expect(() => mul(a, i)).toThrow(/mul: input b is .*i32\[3\].*f32/);
    expect(() => scale(a, NaN)).toThrow(/scale: scalar NaN/);
    const d = tensor([1], [1]);
    d.dispose();
    expect(() => add(a, d)).toThrow(/add: input b is a disposed tensor/);
    [a, b, i].forEach((t: Tensor) => t.dispose());
  });
});

describe('elementwise over the storage binding limit', () => {
  it('adds same-shape tensors a window at a time when they are over maxStorageBufferBindingSize (mT5 embedding gradients)', async () => {
    const limit = rt().gpu.limits.maxStorageBufferBindingSize;
    // just over one binding: a multiple of 4 (the vec4 kernel) and an odd size (the scalar one)
    for (const n of [limit / 4 + 4000, limit / 4 + 1001]) {
      const a = new Float32Array(n).map((_, i) => (i % 1000) * 0.5);
      const b = new Float32Array(n).map((_, i) => -(i % 7));
      const out = add(tensor(a, [n]), tensor(b, [n]));
      expect(out.bytes).toBeGreaterThan(limit);
      const got = await out.toFloat32();
      let wrong = -1;
      for (let i = 0; i < n && wrong < 0; i++) if (got[i] !== a[i]! + b[i]!) wrong = i;
      expect(wrong, `n ${n}: first wrong element (output poisoned with NaN first)`).toBe(-1);
      out.dispose();
    }
  }, 60_000);
});
