// matmul: every variant forward against the float64 reference (odd shapes, all transposes, batches with
// broadcasting, the fused epilogue), backward against float64 gradients and finite differences, bindings
// split in ranges (forced small limit, and a real output over 128 MiB), argument errors, and the autotune
// cache. Autotuning is off here: each variant is forced in turn.
process.env.T5_WEBGPU_AUTOTUNE = '0';

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { gpu, initGpu, measurementKey } from '../engine/gpu.ts';
import { memory, setPoison, tensor, type Tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { rt } from '../engine/runtime.ts';
import { matmul, matmulVariantFor } from '../kernels/matmul.ts';
import { add } from '../kernels/elementwise.ts';
import { geluRef, matmulRef, matmulRefAt } from '../kernels/matmul-reference.ts';
import { eligibleMatmulVariants, MATMUL_TUNING } from '../kernels/matmul-spec.ts';
import { packRows } from '../kernels/matmul-packed.wgsl.ts';
import { MATMUL_VARIANTS, type Activation, type MatmulVariant } from '../kernels/matmul.wgsl.ts';
import {
  AutotuneBusyError,
  autotuneCachePath,
  chooseMatmulVariant,
  forceMatmulVariant,
  matmulAutotuneSettled,
  resetMatmulAutotune,
  shapeClass,
  tuneClass,
  type TuneProblem,
} from '../kernels/matmul-autotune.ts';
import { centralDiff } from './helpers/finite-diff.ts';

// opened at collection time, so that tests of variants this adapter lacks show as skipped
await initGpu();
const available = eligibleMatmulVariants();

beforeAll(() => {
  setPoison(true);
});
afterAll(() => {
  setPoison(false);
  forceMatmulVariant(null);
});

type Shape = number[];
const size = (s: Shape) => s.reduce((a, b) => a * b, 1);
let seed = 12345;
function floats(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = seed / 2 ** 32 - 0.5;
  }
  return out;
}

/** |got - want| <= 2e-6 * (sum of |a_k b_k| + |bias| + |residual|) + 1e-6 elementwise, for
 * out = act(op(a)·op(b) + bias) + residual. */
function expectMatmulClose(got: Float32Array, a: Float32Array, aShape: Shape, b: Float32Array, bShape: Shape,
  opts: { transA?: boolean; transB?: boolean; bias?: Float32Array; activation?: Activation; residual?: Float32Array }, what: string): void {
  const ref = matmulRef(a, aShape, b, bShape, opts);
  const mag = matmulRef(a.map(Math.abs), aShape, b.map(Math.abs), bShape, { ...opts, bias: opts.bias?.map(Math.abs), activation: 'none' });
  const r = opts.residual;
  expect(got.length, `${what}: length`).toBe(ref.data.length);
  for (let i = 0; i < got.length; i++) {
    const want = ref.data[i]! + (r ? r[i]! : 0);
    const tol = 2e-6 * (mag.data[i]! + (r ? Math.abs(r[i]!) : 0)) + 1e-6;
    if (!(Math.abs(got[i]! - want) <= tol)) {
      throw new Error(`${what}: element ${i} is ${got[i]}, reference ${want} (tolerance ${tol})`);
    }
  }
}

interface Case {
  a: Shape; // as stored (transposed when transA)
  b: Shape;
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  activation?: Activation;
  /** a residual of the output's shape added in the kernel's store */
  residual?: boolean;
}

/** [M, K, N] for a stored pair */
function storedShapes(M: number, K: number, N: number, tA: boolean, tB: boolean, batchA: Shape = [], batchB: Shape = []): Case {
  return { a: [...batchA, ...(tA ? [K, M] : [M, K])], b: [...batchB, ...(tB ? [N, K] : [K, N])], transA: tA, transB: tB };
}

const TRANSPOSES: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];

// Shapes reaching every path, per transpose pair: 1x1x1; primes (no vec4 anywhere, partial tiles in both
// directions, a scalar K tail); multiples of 4 (vec4 loads and stores) over several tiles with a K that leaves
// a remainder after an unrolled loop of 8. Then a row (M = 1, the subgroup kernel's short tile), K = 1 and
// N = 1, the fused epilogue (bias as vec4 and scalars, relu, gelu), and batches: a weight shared by a batch
// (folded into M), both batched (attention), broadcasting on either side, more than two collapsed batch dims
// (host loop). Kept to few distinct kernels: on lavapipe each costs a compile of up to seconds.
const FORWARD: Record<string, Case[]> = {};
for (const [tA, tB] of TRANSPOSES) {
  FORWARD[`transA ${tA}, transB ${tB}`] = [
    storedShapes(1, 1, 1, tA, tB),
    storedShapes(37, 29, 41, tA, tB),
    storedShapes(68, 20, 72, tA, tB),
  ];
}
FORWARD['edges and epilogue'] = [
  storedShapes(1, 64, 33, false, true),
  storedShapes(45, 1, 1, false, false),
  { ...storedShapes(33, 16, 40, false, true), bias: true, activation: 'relu' },
  { ...storedShapes(33, 17, 39, true, false), bias: true, activation: 'gelu' },
  // a relu alone: the packed kernel stores it itself over one K chunk (vec4 stores with N 40, scalar with N 41)
  { ...storedShapes(33, 16, 40, false, true), activation: 'relu' },
  { ...storedShapes(37, 29, 41, false, true), activation: 'relu' },
  // a residual after the activation: vec4 stores (N 40) and scalar ones (N 41)
  { ...storedShapes(33, 16, 40, false, true), bias: true, activation: 'relu', residual: true },
  { ...storedShapes(37, 29, 41, false, true), residual: true },
  // 9-16 rows with a residual (decoding at batch 16): the subgroup variant adds it with a kernel of its own
  { ...storedShapes(13, 20, 40, false, true), residual: true },
];
FORWARD['batches'] = [
  storedShapes(7, 12, 20, false, true, [3, 2], []),
  storedShapes(9, 8, 12, false, true, [2, 3], [2, 3]),
  storedShapes(9, 8, 12, false, false, [4], [1]),
  storedShapes(6, 5, 7, true, false, [], [3]),
  storedShapes(5, 4, 8, false, false, [2, 1, 3], [4, 1]),
  storedShapes(5, 4, 8, true, true, [2, 3, 2, 2], [3, 1, 2]),
];
/** per-test timeout: kernel compiles dominate, and take much longer on a loaded machine */
const SLOW = 600_000;

function caseName(c: Case): string {
  return `[${c.a}]${c.transA ? 'ᵀ' : ''} @ [${c.b}]${c.transB ? 'ᵀ' : ''}${c.bias ? ' +bias' : ''}${c.activation && c.activation !== 'none' ? ` ${c.activation}` : ''}${c.residual ? ' +residual' : ''}`;
}

async function runCase(c: Case, what: string): Promise<void> {
  const a = floats(size(c.a));
  const b = floats(size(c.b));
  const N = c.transB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
  const bias = c.bias ? floats(N) : undefined;
  const ta = tensor(a, c.a);
  const tb = tensor(b, c.b);
  const tbias = bias ? tensor(bias, [N]) : undefined;
  const ref = matmulRef(a, c.a, b, c.b, { transA: c.transA, transB: c.transB });
  const residual = c.residual ? floats(size(ref.shape)) : undefined;
  const tres = residual ? tensor(residual, ref.shape) : undefined;
  const out = matmul(ta, tb, { transA: c.transA, transB: c.transB, bias: tbias, activation: c.activation, residual: tres });
  expect(out.shape, what).toEqual(ref.shape);
  expectMatmulClose(await out.toFloat32(), a, c.a, b, c.b, { ...c, bias, residual }, what);
  if (tres) expect(await tres.toFloat32(), `${what}: the residual is read, not written`).toEqual(residual);
  for (const t of [ta, tb, tbias, tres, out]) t?.dispose();
}

describe('matmul forward', () => {
  for (const variant of MATMUL_VARIANTS) {
    for (const [group, cases] of Object.entries(FORWARD)) {
      it.skipIf(!available.includes(variant))(`${variant}: ${group}`, async () => {
        forceMatmulVariant(variant);
        try {
          for (const c of cases) await runCase(c, `${variant} ${caseName(c)}`);
        } finally {
          forceMatmulVariant(null);
        }
      }, SLOW);
    }
  }

  it.skipIf(!available.includes('subgroup'))('runs the subgroup kernel with two vec4 columns per lane', async () => {
    forceMatmulVariant('subgroup');
    MATMUL_TUNING.subgroupCols = 2;
    // one row per lane (8 on lavapipe, 16 with LP_NATIVE_VECTOR_WIDTH=512): several row tiles per problem, and
    // a kernel LLVM compiles in a quarter of the 32-row one's time
    MATMUL_TUNING.subgroupRows = gpu().limits.subgroupMinSize!;
    try {
      await runCase(storedShapes(40, 44, 72, false, true), 'subgroup cv2');
      await runCase(storedShapes(17, 13, 9, true, false), 'subgroup cv2');
    } finally {
      MATMUL_TUNING.subgroupCols = null;
      MATMUL_TUNING.subgroupRows = null;
      forceMatmulVariant(null);
    }
  }, SLOW);

  it.skipIf(!available.includes('gemv'))('gemv: K over several blocks of 4 x subgroup lanes, and a remainder one k at a time', async () => {
    forceMatmulVariant('gemv');
    try {
      for (const [tA, tB] of TRANSPOSES) {
        // K = 100: three whole blocks of 32 (8 lanes) and 4 values left; K = 77: no vec4 along K, 13 left
        await runCase(storedShapes(3, 100, 12, tA, tB), `gemv K 100 ${tA} ${tB}`);
        await runCase(storedShapes(1, 77, 9, tA, tB), `gemv K 77 ${tA} ${tB}`);
      }
      await runCase({ ...storedShapes(5, 260, 68, false, true), bias: true, activation: 'gelu' }, 'gemv two row tiles, gelu');
      await runCase(storedShapes(2, 64, 40, false, true, [3], []), 'gemv batch sharing a weight');
    } finally {
      forceMatmulVariant(null);
    }
  }, SLOW);

  it.skipIf(!available.includes('packed'))('packed: K over one uniform block (partial sums of later chunks added by the second pass)', async () => {
    forceMatmulVariant('packed');
    try {
      for (const slabBytes of [null, 1]) {
        MATMUL_TUNING.slabBytes = slabBytes; // 1: one chunk of partial sums at a time
        await runCase(storedShapes(20, 1100, 36, false, false), `packed long K slabs ${slabBytes}`);
        await runCase({ ...storedShapes(33, 1536, 40, false, true), bias: true, activation: 'gelu' }, `packed long K gelu slabs ${slabBytes}`);
        await runCase({ ...storedShapes(33, 1030, 40, false, true), activation: 'relu' }, `packed long K relu slabs ${slabBytes}`);
        await runCase(storedShapes(9, 1030, 12, true, false, [2], [2]), `packed long K batched slabs ${slabBytes}`);
      }
      await runCase({ ...storedShapes(20, 1100, 36, false, false), residual: true }, 'packed long K, residual in the last combine');
      // more K chunks than the combine pass may bind slabs (16 storage buffers on lavapipe), as in the LM
      // head's dX product (K = 32128): the slabs are added in several groups
      const chunks = Math.ceil(9001 / packRows(gpu().limits.subgroupMinSize ?? 8));
      expect(chunks).toBeGreaterThan(gpu().limits.maxStorageBuffersPerShaderStage);
      MATMUL_TUNING.slabBytes = null; // as many slabs at once as the budget holds
      await runCase({ ...storedShapes(3, 9001, 5, false, false), bias: true }, 'packed K over the storage-buffer limit');
    } finally {
      MATMUL_TUNING.slabBytes = null;
      forceMatmulVariant(null);
    }
  }, SLOW);

  it('treats empty dims: M = 0 gives an empty output, K = 0 gives the bias', async () => {
    const e = matmul(tensor([], [0, 3]), tensor(floats(12), [3, 4]));
    expect(e.shape).toEqual([0, 4]);
    const bias = floats(4);
    const z = matmul(tensor([], [2, 0]), tensor([], [0, 4]), { bias: tensor(bias, [4]) });
    const got = await z.toFloat32();
    expect([...got]).toEqual([...bias, ...bias]);
    const zb = matmul(tensor([], [0, 2, 3]), tensor(floats(12), [3, 4]));
    expect(zb.shape).toEqual([0, 2, 4]);
  }, SLOW);
});

describe('matmul arguments', () => {
  it('names the op and the shapes in its errors', () => {
    const a = tensor(floats(6), [2, 3]);
    expect(() => matmul(a, tensor(floats(8), [4, 2]))).toThrow(/matmul\(\[2, 3\], \[4, 2\]\): inner dimensions differ \(K = 3 for a, 4 for b\)/);
    expect(() => matmul(a, tensor(floats(3), [3]))).toThrow(/at least 2 dims/);
    expect(() => matmul(tensor(floats(12), [2, 2, 3]), tensor(floats(18), [3, 3, 2]))).toThrow(/batch dims \[2\] and \[3\] do not broadcast/);
    expect(() => matmul(a, tensor(floats(6), [3, 2]), { bias: tensor(floats(3), [3]) })).toThrow(/bias must be \[2\]/);
    expect(() => matmul(a, tensor(new Int32Array(6), [3, 2]))).toThrow(/b must be f32/);
    expect(() => matmul(a, tensor(floats(6), [3, 2]), { activation: 'tanh' as Activation })).toThrow(/unknown activation/);
    expect(() => matmul(a, tensor(floats(6), [3, 2]), { residual: tensor(floats(4), [4]) })).toThrow(/residual must have the output's shape \[2, 2\], got/);
  });

  it('refuses an output over maxBufferSize before allocating it', () => {
    const max = rt().gpu.limits.maxBufferSize;
    const M = Math.ceil(max / 4 / 16384) + 1;
    expect(() => matmul(tensor(floats(M), [M, 1]), tensor(floats(16384), [1, 16384]))).toThrow(/over this adapter's maxBufferSize/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// bindings in ranges

describe('matmul over the storage binding limit', () => {
  it('splits batches, rows and columns into ranges that fit (forced small limit), every variant', async () => {
    const cases: Array<[Case, number]> = [
      [storedShapes(256, 40, 72, false, false), 24576], // a and out split by rows
      [storedShapes(8, 36, 200, false, true), 24576], // bᵀ ([N, K]) split by rows, so out by columns
      [storedShapes(33, 8, 20, false, false, [6], [6]), 4096], // batches
      [{ ...storedShapes(64, 12, 40, false, true, [3], []), bias: true, activation: 'gelu' }, 16384],
      // aᵀ ([K, M]) and b ([K, N]) span their buffers for any tile: K in ranges of ~100 rows, each range's product
      // added to the sum before it; with a residual, added to the first
      [storedShapes(40, 300, 24, true, false), 16384],
      [{ ...storedShapes(40, 300, 24, true, false), residual: true }, 16384],
      // neither transposed, b ([K, N]) over the limit (a large LM head's input gradient, dlogits · W): K in ranges
      // of b's rows, each range's columns of a copied out first; the copy of a 130-row a splits by rows again
      [storedShapes(40, 300, 24, false, false), 16384],
      [{ ...storedShapes(40, 300, 24, false, false), residual: true }, 16384],
      [storedShapes(130, 301, 20, false, false), 16384],
    ];
    try {
      for (const variant of available) {
        forceMatmulVariant(variant);
        for (const [c, limit] of cases) {
          MATMUL_TUNING.maxBindingBytes = limit;
          await runCase(c, `split ${variant} ${caseName(c)}`);
        }
      }
    } finally {
      MATMUL_TUNING.maxBindingBytes = null;
      forceMatmulVariant(null);
    }
  }, SLOW);

  it('runs a wide B in column blocks that a CPU core caches (forced small block), every variant but packed', async () => {
    // 16 row tiles at any variant's tile height, B [K, N] 48 KB: over 32 blocks of 1 KiB, one tile of columns
    // each; with aᵀ too (Bᵀ is not blocked: its columns are contiguous)
    const cases = [storedShapes(16 * 64 + 5, 40, 300, false, false), storedShapes(16 * 64 + 5, 40, 300, true, false)];
    try {
      for (const variant of available.filter((v) => v !== 'packed')) {
        forceMatmulVariant(variant);
        for (const c of cases) {
          const count = async (block: number): Promise<number> => {
            MATMUL_TUNING.cacheBlockBytes = block;
            const before = rt().counters.dispatches;
            await runCase(c, `cache blocks of ${block} bytes, ${variant} ${caseName(c)}`);
            return rt().counters.dispatches - before;
          };
          const whole = await count(0);
          expect(await count(1024), `${variant} ${caseName(c)}: more dispatches than ${whole}`).toBeGreaterThan(whole);
        }
      }
    } finally {
      MATMUL_TUNING.cacheBlockBytes = null;
      forceMatmulVariant(null);
    }
  }, SLOW);

  it('explains when an operand cannot be split under the limit', () => {
    MATMUL_TUNING.maxBindingBytes = 4096;
    try {
      // Aᵀ is [K, M]: every row of op(A) reaches across the whole of it, and with bᵀ ([N, K]) a range of K is
      // not a block of b
      expect(() => matmul(tensor(floats(64 * 64), [64, 64]), tensor(floats(64 * 8), [8, 64]), { transA: true, transB: true })).toThrow(
        /operand a needs a \d+-byte storage binding.*maxStorageBufferBindingSize \(4096 bytes\)/,
      );
    } finally {
      MATMUL_TUNING.maxBindingBytes = null;
    }
  });

  it('writes a real output over maxStorageBufferBindingSize (sampled check)', async () => {
    const limit = rt().gpu.limits.maxStorageBufferBindingSize;
    const N = 32128;
    const K = 8;
    const M = Math.floor(limit / 4 / N) + 50; // just over the limit
    const a = floats(M * K);
    const b = floats(N * K);
    setPoison(false); // the NaN fill binds a whole tensor at once
    const out = matmul(tensor(a, [M, K]), tensor(b, [N, K]), { transB: true }); // the tied LM head's layout
    setPoison(true);
    expect(out.bytes).toBeGreaterThan(limit);
    const got = await out.toFloat32();
    for (let s = 0; s < 4000; s++) {
      const m = s < 200 ? M - 1 - (s % 50) : (s * 7919) % M;
      const n = (s * 104729 + 13) % N;
      const r = matmulRefAt(a, [M, K], b, [N, K], 0, m, n, { transB: true });
      const e = Math.abs(got[m * N + n]! - r.value);
      if (!(e <= 2e-6 * r.magnitude + 1e-6)) throw new Error(`out[${m}, ${n}] = ${got[m * N + n]}, reference ${r.value}`);
    }
    out.dispose();
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------------------
// backward

/** float64 gradients of sum(w * act(op(a)·op(b) + bias)) for a, b, bias, from the reference definitions. */
function refGrads(c: Case, a: Float32Array, b: Float32Array, bias: Float32Array | undefined, w: Float32Array) {
  const f = (aa: ArrayLike<number>, bb: ArrayLike<number>, bi?: ArrayLike<number>) => {
    const o = matmulRef(aa, c.a, bb, c.b, { ...c, bias: bi });
    let s = 0;
    for (let i = 0; i < o.data.length; i++) s += w[i]! * o.data[i]!;
    return s;
  };
  // central differences in float64 (the reference is exact enough for h = 1e-4)
  const h = 1e-4;
  const diff = (x: Float32Array, put: (y: Float64Array) => number) => centralDiff(Float64Array.from(x), put, h);
  return {
    a: diff(a, (y) => f(y, b, bias)),
    b: diff(b, (y) => f(a, y, bias)),
    bias: bias ? diff(bias, (y) => f(a, b, y)) : undefined,
  };
}

function expectGradClose(got: Float32Array, want: Float64Array, what: string): void {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const tol = 1e-4 * scale + 1e-5;
    if (!(Math.abs(got[i]! - want[i]!) <= tol)) throw new Error(`${what}: grad[${i}] = ${got[i]}, reference ${want[i]} (tolerance ${tol})`);
  }
}

async function checkBackward(c: Case, what: string): Promise<void> {
  const a = floats(size(c.a));
  const b = floats(size(c.b));
  const N = c.transB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
  const bias = c.bias ? floats(N) : undefined;
  const ta = tensor(a, c.a, { requiresGrad: true });
  const tb = tensor(b, c.b, { requiresGrad: true });
  const tbias = bias ? tensor(bias, [N], { requiresGrad: true }) : undefined;
  const outShape = matmulRef(a, c.a, b, c.b, { transA: c.transA, transB: c.transB }).shape;
  const w = floats(size(outShape));
  const out = matmul(ta, tb, { transA: c.transA, transB: c.transB, bias: tbias, activation: c.activation });
  const tw = tensor(w, outShape);
  backward(out, { gradient: tw });
  const ref = refGrads(c, a, b, bias, w);
  expectGradClose(await ta.grad!.toFloat32(), ref.a, `${what} dA`);
  expectGradClose(await tb.grad!.toFloat32(), ref.b, `${what} dB`);
  if (tbias) expectGradClose(await tbias.grad!.toFloat32(), ref.bias!, `${what} dBias`);
  for (const t of [ta, tb, tbias, out, tw]) t?.dispose();
}

const BACKWARD: Case[] = [
  ...TRANSPOSES.map(([tA, tB]) => ({ ...storedShapes(7, 5, 6, tA, tB), bias: true, activation: 'gelu' as const })),
  ...TRANSPOSES.map(([tA, tB]) => ({ ...storedShapes(8, 4, 12, tA, tB), activation: 'relu' as const })),
  storedShapes(1, 3, 1, false, false),
  // a weight shared by a batch (dB folded over the batch), with and without transposes
  { ...storedShapes(5, 4, 6, false, true, [2, 3], []), bias: true },
  storedShapes(5, 4, 6, true, false, [3], []),
  // both batched, and broadcasting on either side (gradients summed back to each input's shape)
  storedShapes(4, 3, 5, false, true, [2, 2], [2, 2]),
  storedShapes(4, 3, 5, false, false, [], [3]),
  storedShapes(4, 3, 5, true, true, [2, 1], [1, 3]),
];

describe('matmul backward', () => {
  it('matches finite differences of the float64 reference (heuristic variant)', async () => {
    for (const c of BACKWARD) await checkBackward(c, caseName(c));
  }, SLOW);

  for (const variant of MATMUL_VARIANTS) {
    it.skipIf(!available.includes(variant))(`${variant}: gradients through gelu with bias, batched`, async () => {
      forceMatmulVariant(variant);
      try {
        await checkBackward({ ...storedShapes(6, 9, 10, false, true, [2], []), bias: true, activation: 'gelu' }, `${variant} gelu`);
        await checkBackward(storedShapes(6, 9, 10, true, false, [2], [2]), `${variant} batched`);
      } finally {
        forceMatmulVariant(null);
      }
    }, SLOW);
  }

  it('with a gradient recorded, adds the residual as its own op: the same values and gradients as add()', async () => {
    const [ad, wd, rd] = [floats(12), floats(20), floats(15)];
    const leaves = () => [tensor(ad, [3, 4], { requiresGrad: true }), tensor(wd, [5, 4], { requiresGrad: true }), tensor(rd, [3, 5], { requiresGrad: true })];
    const [a1, w1, r1] = leaves();
    const [a2, w2, r2] = leaves();
    const fused = matmul(a1!, w1!, { transB: true, activation: 'relu', residual: r1 });
    const separate = add(r2!, matmul(a2!, w2!, { transB: true, activation: 'relu' }));
    expect(await fused.toFloat32()).toEqual(await separate.toFloat32());
    backward(fused);
    backward(separate);
    for (const [x, y] of [[a1, a2], [w1, w2], [r1, r2]] as const) expect(await x!.grad!.toFloat32()).toEqual(await y!.grad!.toFloat32());
    expect([...(await r1!.grad!.toFloat32())]).toEqual(new Array(15).fill(1));
  });

  it('writes the pre-activation only when a gradient is needed, and leaks nothing', async () => {
    const a = tensor(floats(24), [4, 6], { requiresGrad: true });
    const w = tensor(floats(18), [3, 6], { requiresGrad: true });
    const step = () => {
      const y = tidy(() => matmul(a, w, { transB: true, activation: 'gelu' }));
      backward(y);
      y.dispose();
      a.grad?.dispose();
      w.grad?.dispose();
      a.grad = null;
      w.grad = null;
    };
    step();
    await rt().sync();
    const m0 = memory();
    for (let i = 0; i < 10; i++) step();
    await rt().sync();
    const m1 = memory();
    expect(m1.bytesLive).toBe(m0.bytesLive);
    expect(m1.buffersCreated).toBe(m0.buffersCreated);
    // without a gradient: no graph, and the output is still gelu(x w^T)
    const plain = matmul(tensor(floats(24), [4, 6]), tensor(floats(18), [3, 6]), { transB: true, activation: 'gelu' });
    expect(plain.node).toBeNull();
    expect(geluRef(1)).toBeCloseTo(0.8411919906, 9);
    for (const t of [a, w, plain]) t.dispose();
  }, SLOW);
});

// ---------------------------------------------------------------------------------------------------------
// autotune

describe('matmul autotune', () => {
  const problem: TuneProblem = { M: 512, N: 512, K: 512, batch: 1, transA: false, transB: true };

  it('is off in these tests: the heuristic decides unless a variant is forced', () => {
    const big = matmulVariantFor([512, 512], [512, 512], { transB: true });
    const small = matmulVariantFor([8, 8], [8, 8]);
    const row = matmulVariantFor([1, 512], [2048, 512], { transB: true }); // decoding one token
    const tokens = matmulVariantFor([8, 256, 512], [512, 512], { transB: true }); // an encoder projection
    const head = matmulVariantFor([2048, 512], [32128, 512], { transB: true }); // an LM head
    const gradW = matmulVariantFor([2048, 512], [2048, 512], { transA: true }); // a weight gradient
    const shortWt = matmulVariantFor([4, 256, 512], [2048, 512], { transB: true }); // 1,024 rows through a Linear
    const shortW = matmulVariantFor([1024, 2048], [2048, 512]); // its input gradient, x·W
    expect(big).toMatch(/\((autotune off)\)$/);
    forceMatmulVariant('tiled');
    expect(matmulVariantFor([512, 512], [512, 512])).toBe('tiled (forced)');
    forceMatmulVariant(null);
    const g = rt().gpu;
    if (!g.info.isSoftware) expect(big).toBe('tiled (autotune off)');
    else if (available.includes('subgroup')) {
      expect(big).toBe('subgroup (autotune off)');
      expect(small).toBe('subgroup (autotune off)');
      expect(row).toBe('gemv (autotune off)');
      expect(head).toBe('subgroup (autotune off)');
      expect(gradW).toBe('subgroup (autotune off)');
      expect(tokens).toBe(available.includes('packed') ? 'packed (autotune off)' : 'subgroup (autotune off)');
      expect(shortWt).toBe(available.includes('packed') ? 'packed (autotune off)' : 'subgroup (autotune off)');
      expect(shortW).toBe('subgroup (autotune off)');
    }
  });

  it('keeps the fastest variant per adapter and shape class, in memory and in the cache file', async () => {
    await withTuning(async () => {
      const fake: Record<MatmulVariant, number> = { packed: 4, subgroup: 3, gemv: 3.5, regblock: 2, tiled: 5 };
      const rec = await tuneClass(problem, MATMUL_VARIANTS, async (v) => fake[v]);
      expect(rec!.variant).toBe('regblock');
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS)).toEqual({ variant: 'regblock', source: 'autotuned' });
      // same class, other sizes in the same power-of-two buckets
      expect(chooseMatmulVariant({ ...problem, M: 300 }, MATMUL_VARIANTS).variant).toBe('regblock');
      const file = JSON.parse(readFileSync(autotuneCachePath(), 'utf8'));
      const adapter = Object.keys(file.adapters)[0]!;
      expect(file.adapters[adapter][shapeClass(problem)].variant).toBe('regblock');
      // a new process (simulated) reads it back
      resetMatmulAutotune();
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS).source).toBe('autotuned');
      // a failing variant drops out
      const rec2 = await tuneClass({ ...problem, K: 8 }, MATMUL_VARIANTS, async (v) => {
        if (v === 'regblock') throw new Error('no');
        return fake[v];
      });
      expect(rec2!.variant).toBe('subgroup');
      // an unknown class runs with the heuristic and is tuned in the background, for real
      const x = tensor(floats(40 * 24), [40, 24]);
      const y = tensor(floats(24 * 36), [36, 24]);
      const first = matmul(x, y, { transB: true });
      expect(matmulVariantFor([40, 24], [36, 24], { transB: true })).toMatch(/\(heuristic\)$/);
      await matmulAutotuneSettled();
      expect(matmulVariantFor([40, 24], [36, 24], { transB: true })).toMatch(/\(autotuned\)$/);
      const again = matmul(x, y, { transB: true });
      const [g1, g2] = [await first.toFloat32(), await again.toFloat32()];
      for (let i = 0; i < g1.length; i++) expect(Math.abs(g1[i]! - g2[i]!)).toBeLessThan(1e-5);
      for (const t of [x, y, first, again] as Tensor[]) t.dispose();
    });
  }, SLOW);

  /** Runs `fn` with autotuning on and an empty cache folder of its own. */
  async function withTuning(fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 't5-webgpu-autotune-'));
    const before = { dir: process.env.T5_WEBGPU_CACHE_DIR, on: process.env.T5_WEBGPU_AUTOTUNE };
    process.env.T5_WEBGPU_CACHE_DIR = dir;
    process.env.T5_WEBGPU_AUTOTUNE = '1';
    resetMatmulAutotune();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      await fn(dir);
    } finally {
      warn.mockRestore();
      if (before.on === undefined) delete process.env.T5_WEBGPU_AUTOTUNE;
      else process.env.T5_WEBGPU_AUTOTUNE = before.on;
      if (before.dir === undefined) delete process.env.T5_WEBGPU_CACHE_DIR;
      else process.env.T5_WEBGPU_CACHE_DIR = before.dir;
      resetMatmulAutotune();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('keeps a winner only if it beats the heuristic by the margin, on medians of interleaved rounds', async () => {
    await withTuning(async () => {
      const calls: MatmulVariant[] = [];
      // regblock is 5% faster than the heuristic's subgroup: not enough; one slow outlier of subgroup is ignored
      const times: Record<MatmulVariant, number[]> = { packed: [4, 4, 4], subgroup: [3, 30, 3], gemv: [6, 6, 6], regblock: [2.85, 2.85, 2.85], tiled: [5, 5, 5] };
      const rec = await tuneClass(problem, MATMUL_VARIANTS, async (v) => {
        calls.push(v);
        return times[v][calls.filter((c) => c === v).length - 1]!;
      }, 'subgroup');
      expect(rec!.variant).toBe('subgroup');
      expect(rec!.ms.subgroup).toBe(3);
      // interleaved: every variant once per round
      const n = MATMUL_VARIANTS.length;
      expect(calls.slice(0, n)).toEqual([...MATMUL_VARIANTS]);
      expect(calls.slice(n, 2 * n)).toEqual([...MATMUL_VARIANTS]);
    });
  });

  it('a winner just tuned, other than the heuristic\'s choice, runs only once a second timing confirms it', async () => {
    await withTuning(async () => {
      const heuristic = 'subgroup' as const;
      let lucky = true; // the first timing favours regblock by luck
      const measured: MatmulVariant[] = [];
      const measure = async (v: MatmulVariant) => {
        measured.push(v);
        return v === 'regblock' ? (lucky ? 1 : 4) : 3;
      };
      const p2 = { ...problem, K: 24 };
      // unknown class: the heuristic runs while it is tuned
      expect(chooseMatmulVariant(p2, MATMUL_VARIANTS, measure, heuristic)).toEqual({ variant: heuristic, source: 'heuristic' });
      await matmulAutotuneSettled();
      lucky = false;
      // tuned: regblock won, but the next use still runs the heuristic and times the two again
      measured.length = 0;
      expect(chooseMatmulVariant(p2, MATMUL_VARIANTS, measure, heuristic)).toEqual({ variant: heuristic, source: 'heuristic' });
      await matmulAutotuneSettled();
      expect(new Set(measured)).toEqual(new Set(['regblock', heuristic]));
      // the second timing did not confirm it: dropped
      expect(chooseMatmulVariant(p2, MATMUL_VARIANTS, measure, heuristic)).toEqual({ variant: heuristic, source: 'autotuned' });
      // a winner that holds up runs from its confirmation on
      const p3 = { ...problem, K: 40 };
      const steady = async (v: MatmulVariant) => (v === 'regblock' ? 1 : 3);
      chooseMatmulVariant(p3, MATMUL_VARIANTS, steady, heuristic);
      await matmulAutotuneSettled();
      expect(chooseMatmulVariant(p3, MATMUL_VARIANTS, steady, heuristic).source).toBe('heuristic');
      await matmulAutotuneSettled();
      expect(chooseMatmulVariant(p3, MATMUL_VARIANTS, steady, heuristic)).toEqual({ variant: 'regblock', source: 'autotuned' });
      // a winner equal to the heuristic's choice needs no second timing
      const p4 = { ...problem, K: 72 };
      const plain = async (v: MatmulVariant) => (v === heuristic ? 1 : 3);
      chooseMatmulVariant(p4, MATMUL_VARIANTS, plain, heuristic);
      await matmulAutotuneSettled();
      expect(chooseMatmulVariant(p4, MATMUL_VARIANTS, plain, heuristic)).toEqual({ variant: heuristic, source: 'autotuned' });
    });
  });

  it('a slow winner planted in the cache file is re-timed on first use, dropped and replaced', async () => {
    await withTuning(async () => {
      const slow = 'regblock' as const;
      const heuristic = 'subgroup' as const;
      // a winner tuned long ago, on another driver or before a change of kernels
      await tuneClass(problem, MATMUL_VARIANTS, async (v) => (v === slow ? 1 : 5), heuristic);
      resetMatmulAutotune(); // a new process
      const measured: MatmulVariant[] = [];
      const measure = async (v: MatmulVariant) => {
        measured.push(v);
        return v === slow ? 9 : 3; // it is now three times slower than the heuristic's choice
      };
      // until verified, the heuristic runs
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, heuristic)).toEqual({ variant: heuristic, source: 'heuristic' });
      await matmulAutotuneSettled();
      expect(new Set(measured)).toEqual(new Set([slow, heuristic]));
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, heuristic)).toEqual({ variant: heuristic, source: 'autotuned' });
      const file = JSON.parse(readFileSync(autotuneCachePath(), 'utf8'));
      expect(file.adapters[Object.keys(file.adapters)[0]!][shapeClass(problem)].variant).toBe(heuristic);
      // verified once per process: no second timing
      measured.length = 0;
      chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, heuristic);
      await matmulAutotuneSettled();
      expect(measured).toEqual([]);
    });
  });

  it('runs tuning jobs one at a time, and a job that cannot time alone gives up without deciding', async () => {
    await withTuning(async () => {
      // two classes tuned at once: their timings must not overlap (each would time the other's launches)
      let running = 0;
      let overlapped = false;
      const measure = async (v: MatmulVariant) => {
        running++;
        if (running > 1) overlapped = true;
        await new Promise((r) => setTimeout(r, 2));
        running--;
        return v === 'regblock' ? 1 : 5;
      };
      chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup');
      chooseMatmulVariant({ ...problem, K: 8 }, MATMUL_VARIANTS, measure, 'subgroup');
      await matmulAutotuneSettled();
      // the winners are verified at their next use, again one job at a time
      chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup');
      chooseMatmulVariant({ ...problem, K: 8 }, MATMUL_VARIANTS, measure, 'subgroup');
      await matmulAutotuneSettled();
      expect(overlapped).toBe(false);
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup')).toEqual({ variant: 'regblock', source: 'autotuned' });
      // the device stays busy with other work: nothing is recorded, the heuristic stays, no job is retried
      const busyProblem = { ...problem, N: 8 };
      let calls = 0;
      const busy = async (): Promise<number> => {
        calls++;
        throw new AutotuneBusyError('busy');
      };
      expect(chooseMatmulVariant(busyProblem, MATMUL_VARIANTS, busy, 'subgroup')).toEqual({ variant: 'subgroup', source: 'heuristic' });
      await matmulAutotuneSettled();
      expect(calls).toBe(1);
      expect(chooseMatmulVariant(busyProblem, MATMUL_VARIANTS, busy, 'subgroup')).toEqual({ variant: 'subgroup', source: 'heuristic' });
      await matmulAutotuneSettled();
      expect(calls).toBe(1);
      const file = JSON.parse(readFileSync(autotuneCachePath(), 'utf8'));
      expect(file.adapters[Object.keys(file.adapters)[0]!][shapeClass(busyProblem)]).toBeUndefined();
    });
  });

  it('verification keeps a winner that ties or wins by less than the margin, and drops one that is now slower', async () => {
    await withTuning(async () => {
      // adopted at 1 against 5; in later processes it times even, 5% faster, then 5% slower than the heuristic
      await tuneClass(problem, MATMUL_VARIANTS, async (v) => (v === 'regblock' ? 1 : 5), 'subgroup');
      for (const [now, kept] of [[3, true], [2.85, true], [3.15, false]] as const) {
        resetMatmulAutotune();
        const warn = vi.mocked(console.warn);
        warn.mockClear();
        const measure = async (v: MatmulVariant) => (v === 'regblock' ? now : 3);
        chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup');
        await matmulAutotuneSettled();
        const want = kept ? 'regblock' : 'subgroup';
        expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup'), `regblock at ${now} ms`).toEqual({ variant: want, source: 'autotuned' });
        expect(warn.mock.calls.length, `warnings at ${now} ms`).toBe(kept ? 0 : 1);
        if (!kept) expect(String(warn.mock.calls[0]![0])).toMatch(/tuned winner 'regblock' .* is now slower than 'subgroup' \(3\.15 ms against 3\.00 ms\); dropped/);
      }
    });
  });

  it('keys the cache by adapter and driver, and on a CPU adapter by the host processor too', async () => {
    await withTuning(async () => {
      await tuneClass(problem, MATMUL_VARIANTS, async (v) => (v === 'regblock' ? 1 : 5), 'subgroup');
      const file = JSON.parse(readFileSync(autotuneCachePath(), 'utf8'));
      const g = gpu();
      expect(Object.keys(file.adapters)).toEqual([measurementKey()]);
      expect(measurementKey()).toContain(`${g.info.name} | ${g.info.driver}`);
      // lavapipe is the same driver on every machine: a cache from another processor must not be taken as this one's
      if (g.info.isSoftware) expect(measurementKey().endsWith(` | ${cpus()[0]!.model.trim()}`)).toBe(true);
    });
  });

  it('a cached winner that is still faster survives its verification', async () => {
    await withTuning(async () => {
      await tuneClass(problem, MATMUL_VARIANTS, async (v) => (v === 'regblock' ? 1 : 5), 'subgroup');
      resetMatmulAutotune();
      const measure = async (v: MatmulVariant) => (v === 'regblock' ? 1 : 3);
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup').variant).toBe('subgroup');
      await matmulAutotuneSettled();
      expect(chooseMatmulVariant(problem, MATMUL_VARIANTS, measure, 'subgroup')).toEqual({ variant: 'regblock', source: 'autotuned' });
    });
  });
});
