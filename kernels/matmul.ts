// matmul: C = op(A) · op(B) (+ bias) (then relu or gelu), f32, batched with broadcasting, and its backward.
//
//   a: [..., M, K] ([..., K, M] with transA)    b: [..., K, N] ([..., N, K] with transB)    out: [..., M, N]
//
// Batch dims broadcast as in NumPy. A weight b without batch dims shared by a batched a folds the batch into M
// (one plain matmul). Otherwise the batch is walked by the kernel (two levels of batch index with per-operand
// strides, 0 along broadcast dims) and, past two collapsed levels, by the host.
//
// Tensors larger than maxStorageBufferBindingSize (128 MiB on lavapipe; the t5-small LM head writes 526 MB)
// are bound in ranges: the work is split into chunks of batches, rows and columns whose operand ranges each fit
// one binding (offsets aligned to minStorageBufferOffsetAlignment), one dispatch per chunk. An output over
// maxBufferSize, or an operand range that no split can bring under the binding limit, fails with an error
// naming the limit.
//
// Backward: dA = dC · op(B)ᵀ and dB = op(A)ᵀ · dC computed by this same kernel with transpose flags (nothing is
// transposed in memory), summed over broadcast batch dims; dBias = column sums of dC. With an activation the
// gradient first goes through it: relu from the output itself, gelu from the pre-activation, which the
// epilogue writes as a second output only when a gradient will be needed. A weight shared by a batch gets its
// gradient as one matmul with the batch folded into K.
//
// Variants (matmul.wgsl.ts): chosen by `matmul-autotune.ts` (measured once per adapter and shape class, or a
// fixed heuristic with T5_WEBGPU_AUTOTUNE=0), forced with `forceMatmulVariant`; `matmulVariantFor` tells which
// one a shape gets. Tile sizes can be overridden through MATMUL_TUNING for experiments.
import { isGradEnabled } from '../engine/autograd.ts';
import { recordOp } from './record-op.ts';
import { gpu } from '../engine/gpu.ts';
import { grid1D, rt, type BufferBinding, type Param } from '../engine/runtime.ts';
import { empty, tensor, type Shape, Tensor } from '../engine/tensor.ts';
import { broadcastShapes } from './elementwise-dispatch.ts';
import { sumTo } from './reduce.ts';
import {
  activationGradCode,
  combineCode,
  matmulKernel,
  matmulTile,
  MATMUL_VARIANTS,
  PACK_BLOCK_FLOATS,
  PACK_PARAMS,
  packCode,
  PACKED_PARAMS,
  packRows,
  type Activation,
  type MatmulKernelSpec,
  type MatmulVariant,
} from './matmul.wgsl.ts';
import {
  chooseMatmulVariant,
  forceMatmulVariant,
  matmulAutotuneSettled,
  type MeasureFn,
  type TuneProblem,
  type VariantChoice,
} from './matmul-autotune.ts';

export type { Activation, MatmulVariant };
export { MATMUL_VARIANTS, forceMatmulVariant, matmulAutotuneSettled };

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** [N], added to every row before the activation */
  bias?: Tensor;
  activation?: Activation;
}

// ---------------------------------------------------------------------------------------------------------
// shapes

interface Operand {
  /** element offset added to every index of this operand (host batch loop) */
  base: number;
}

/** One matmul problem as the kernels see it. */
interface Problem {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** batch handled by the kernel: z in [0, nb), z1 = z / inner, z2 = z % inner */
  nb: number;
  inner: number;
  aS1: number;
  aS2: number;
  bS1: number;
  bS2: number;
  /** batch handled by the host: one entry per kernel batch, with each operand's base offset */
  outer: Array<{ a: Operand; b: Operand; c: Operand }>;
  outShape: number[];
  /** for error messages */
  desc: string;
}

function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

/** Strides (elements) of each batch dim of an operand seen from the broadcast batch shape; 0 along broadcast dims. */
function batchStrides(batch: Shape, outBatch: Shape, matrix: number): number[] {
  const st = new Array<number>(outBatch.length).fill(0);
  let s = matrix;
  for (let d = batch.length - 1; d >= 0; d--) {
    const od = outBatch.length - batch.length + d;
    st[od] = batch[d] === 1 ? 0 : s;
    s *= batch[d]!;
  }
  return st;
}

function problemOf(a: Shape, b: Shape, transA: boolean, transB: boolean, op = 'matmul'): Problem {
  const desc = `${op}(${shapeStr(a)}${transA ? 'ᵀ' : ''}, ${shapeStr(b)}${transB ? 'ᵀ' : ''})`;
  if (a.length < 2 || b.length < 2) {
    throw new RangeError(`${desc}: both operands need at least 2 dims ([..., M, K] and [..., K, N])`);
  }
  const [ar, ac] = [a[a.length - 2]!, a[a.length - 1]!];
  const [br, bc] = [b[b.length - 2]!, b[b.length - 1]!];
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const Kb = transB ? bc : br;
  const N = transB ? br : bc;
  if (K !== Kb) {
    throw new RangeError(`${desc}: inner dimensions differ (K = ${K} for a, ${Kb} for b)`);
  }
  const aBatch = a.slice(0, -2);
  const bBatch = b.slice(0, -2);
  let outBatch: number[];
  try {
    outBatch = broadcastShapes(op, [aBatch, bBatch]);
  } catch {
    throw new RangeError(`${desc}: batch dims ${shapeStr(aBatch)} and ${shapeStr(bBatch)} do not broadcast`);
  }
  const outShape = [...outBatch, M, N];
  // collapse the batch: drop size-1 dims, merge neighbours that both operands walk contiguously
  const sa = batchStrides(aBatch, outBatch, M * K);
  const sb = batchStrides(bBatch, outBatch, K * N);
  const dims: Array<{ size: number; a: number; b: number }> = [];
  outBatch.forEach((size, d) => {
    if (size === 1) return;
    const last = dims[dims.length - 1];
    if (last && last.a === sa[d]! * size && last.b === sb[d]! * size) {
      last.size *= size;
      last.a = sa[d]!;
      last.b = sb[d]!;
    } else {
      dims.push({ size, a: sa[d]!, b: sb[d]! });
    }
  });
  let Mk = M;
  // a weight shared by the whole batch: fold the batch into M (rows of a and of out are contiguous)
  if (dims.length === 1 && dims[0]!.b === 0 && dims[0]!.a === M * K && !transA) {
    Mk = M * dims[0]!.size;
    dims.length = 0;
  }
  const empty = outBatch.some((d) => d === 0);
  const kern = dims.slice(-2);
  const host = dims.slice(0, -2);
  const nb = kern.reduce((p, d) => p * d.size, 1);
  const prob: Problem = {
    M: Mk, N, K, transA, transB, nb,
    inner: kern.length === 2 ? kern[1]!.size : 1,
    aS1: kern[0]?.a ?? 0,
    aS2: kern[1]?.a ?? 0,
    bS1: kern[0]?.b ?? 0,
    bS2: kern[1]?.b ?? 0,
    outer: [],
    outShape,
    desc,
  };
  // host loop over the leading collapsed dims
  const hostCount = empty ? 0 : host.reduce((p, d) => p * d.size, 1);
  for (let i = 0; i < hostCount; i++) {
    let rest = i;
    let aB = 0;
    let bB = 0;
    for (let d = host.length - 1; d >= 0; d--) {
      const idx = rest % host[d]!.size;
      rest = Math.floor(rest / host[d]!.size);
      aB += idx * host[d]!.a;
      bB += idx * host[d]!.b;
    }
    prob.outer.push({ a: { base: aB }, b: { base: bB }, c: { base: i * nb * Mk * N } });
  }
  return prob;
}

// ---------------------------------------------------------------------------------------------------------
// variants and specs

function eligibleVariants(): MatmulVariant[] {
  const g = gpu();
  const out: MatmulVariant[] = [];
  const s = g.limits.subgroupMinSize;
  if (g.hasSubgroups && s !== undefined && s >= 4 && s <= 32 && s <= g.limits.maxComputeInvocationsPerWorkgroup) {
    const l = g.device.limits;
    const cv = MATMUL_TUNING.packedCols ?? 2;
    if (l.maxUniformBufferBindingSize >= PACK_BLOCK_FLOATS * 4 && l.maxUniformBuffersPerShaderStage > cv) out.push('packed');
    out.push('subgroup');
  }
  out.push('regblock', 'tiled');
  return out;
}

/** Tile overrides for experiments and benchmarks (null: the defaults below). Pipelines are cached by source. */
export const MATMUL_TUNING = {
  subgroupRows: null as number | null,
  subgroupCols: null as number | null,
  regRows: null as number | null,
  regCols: null as number | null,
  packedRows: null as number | null,
  packedCols: null as number | null,
  /** plan chunks as if maxStorageBufferBindingSize were this (tests of the splitting on small tensors) */
  maxBindingBytes: null as number | null,
  /** packed variant: bytes of scratch partial sums held at once (tests force small values) */
  slabBytes: null as number | null,
};

function subgroupRows(M: number, S: number): number {
  // a short problem (decoding one token) wastes less of a smaller tile
  return Math.max(S, M <= 8 ? 8 : 32);
}

function specFor(variant: MatmulVariant, p: Problem, bias: boolean, activation: Activation, writePre: boolean): MatmulKernelSpec {
  const spec: MatmulKernelSpec = {
    variant,
    transA: p.transA,
    transB: p.transB,
    vecA: (p.transA ? p.M : p.K) % 4 === 0 && p.M > 0 && p.K > 0,
    vecB: (p.transB ? p.K : p.N) % 4 === 0 && p.N > 0 && p.K > 0,
    vecC: p.N % 4 === 0 && p.N > 0,
    bias,
    activation,
    writePre,
  };
  if (variant === 'subgroup' || variant === 'packed') {
    const S = gpu().limits.subgroupMinSize!;
    spec.subgroupSize = S;
    if (variant === 'subgroup') {
      spec.tm = MATMUL_TUNING.subgroupRows ?? subgroupRows(p.M, S);
      spec.cv = MATMUL_TUNING.subgroupCols ?? 1;
    } else {
      spec.tm = MATMUL_TUNING.packedRows ?? Math.max(S, p.M <= 8 ? 8 : 16);
      spec.cv = MATMUL_TUNING.packedCols ?? 2;
      spec.vecB = false; // B comes packed
    }
    if (p.transA && spec.tm % (4 * S) !== 0) spec.vecA = false;
  } else if (variant === 'regblock') {
    spec.tm = MATMUL_TUNING.regRows ?? 8;
    spec.cv = MATMUL_TUNING.regCols ?? 2;
  }
  return spec;
}

function tileOf(spec: MatmulKernelSpec): { tileM: number; tileN: number } {
  return matmulTile(spec.variant, spec.subgroupSize, spec.tm, spec.cv);
}

const kernelCache = new Map<string, { code: string; tileM: number; tileN: number }>();
function kernelFor(spec: MatmulKernelSpec) {
  const key = JSON.stringify(spec);
  let k = kernelCache.get(key);
  if (!k) kernelCache.set(key, (k = matmulKernel(spec)));
  return k;
}

// ---------------------------------------------------------------------------------------------------------
// dispatch: chunks whose operand ranges fit a binding

interface Chunk {
  z0: number;
  zc: number;
  m0: number;
  mc: number;
  n0: number;
  nc: number;
}

interface Window {
  offset: number; // bytes, aligned
  size: number; // bytes
  shift: number; // element shift to add to logical indices (u32 wrap)
}

/** Element range [lo, hi) an operand touches for a chunk (hi === lo: nothing). */
function ranges(p: Problem, o: Problem['outer'][number], ch: Chunk) {
  const { M, N, K } = p;
  const m1 = ch.m0 + ch.mc;
  const n1 = ch.n0 + ch.nc;
  let aLo = Infinity, aHi = -Infinity, bLo = Infinity, bHi = -Infinity, cLo = Infinity, cHi = -Infinity;
  for (let z = ch.z0; z < ch.z0 + ch.zc; z++) {
    const z1 = Math.floor(z / p.inner);
    const z2 = z - z1 * p.inner;
    const aOff = o.a.base + z1 * p.aS1 + z2 * p.aS2;
    const bOff = o.b.base + z1 * p.bS1 + z2 * p.bS2;
    const cOff = o.c.base + z * M * N;
    if (K > 0) {
      const [al, ah] = p.transA ? [ch.m0, (K - 1) * M + m1] : [ch.m0 * K, m1 * K];
      const [bl, bh] = p.transB ? [ch.n0 * K, n1 * K] : [ch.n0, (K - 1) * N + n1];
      aLo = Math.min(aLo, aOff + al);
      aHi = Math.max(aHi, aOff + ah);
      bLo = Math.min(bLo, bOff + bl);
      bHi = Math.max(bHi, bOff + bh);
    }
    cLo = Math.min(cLo, cOff + ch.m0 * N + ch.n0);
    cHi = Math.max(cHi, cOff + (m1 - 1) * N + n1);
  }
  return { a: [aLo, aHi], b: [bLo, bHi], c: [cLo, cHi] } as const;
}

/** The aligned binding range covering elements [lo, hi) and the shift that maps an element index into it. */
function windowOf([lo, hi]: readonly [number, number], align: number): Window {
  if (!(hi > lo)) return { offset: 0, size: 16, shift: 0 };
  const offset = Math.floor((lo * 4) / align) * align;
  const size = Math.ceil((hi * 4 - offset) / 4) * 4;
  return { offset, size, shift: -offset / 4 };
}

function planChunks(p: Problem, o: Problem['outer'][number], tile: { tileM: number; tileN: number }) {
  const g = gpu().limits;
  const maxBind = Math.min(MATMUL_TUNING.maxBindingBytes ?? Infinity, g.maxStorageBufferBindingSize);
  const maxWg = g.maxComputeWorkgroupsPerDimension;
  const align = Math.max(16, g.minStorageBufferOffsetAlignment);
  const roundTo = (x: number, t: number) => Math.max(t, Math.ceil(x / t) * t);
  const tryPlan = (zc: number, mc: number, nc: number) => {
    if (zc > maxWg || Math.ceil(mc / tile.tileM) > maxWg || Math.ceil(nc / tile.tileN) > maxWg) return null;
    const out: Array<{ ch: Chunk; a: Window; b: Window; c: Window }> = [];
    for (let z0 = 0; z0 < p.nb; z0 += zc) {
      for (let m0 = 0; m0 < p.M; m0 += mc) {
        for (let n0 = 0; n0 < p.N; n0 += nc) {
          const ch = { z0, zc: Math.min(zc, p.nb - z0), m0, mc: Math.min(mc, p.M - m0), n0, nc: Math.min(nc, p.N - n0) };
          const r = ranges(p, o, ch);
          const w = {
            ch,
            a: windowOf(r.a, align),
            b: windowOf(r.b, align),
            c: windowOf(r.c, align),
          };
          if (w.a.size > maxBind || w.b.size > maxBind || w.c.size > maxBind) return null;
          out.push(w);
        }
      }
    }
    return out;
  };
  const halvings = (n: number, t: number) => {
    const list: number[] = [];
    for (let x = roundTo(n, t); ; x = roundTo(Math.ceil(x / 2), t)) {
      list.push(x);
      if (x <= t) break;
    }
    return list;
  };
  const zs = halvings(p.nb, 1);
  const ms = halvings(p.M, tile.tileM);
  const ns = halvings(p.N, tile.tileN);
  for (const zc of zs) {
    const plan = tryPlan(zc, ms[0]!, ns[0]!);
    if (plan) return plan;
  }
  for (const mc of ms.slice(1)) {
    const plan = tryPlan(1, mc, ns[0]!);
    if (plan) return plan;
  }
  for (const mc of ms) {
    for (const nc of ns.slice(1)) {
      const plan = tryPlan(1, mc, nc);
      if (plan) return plan;
    }
  }
  // explain which operand cannot be bound: the smallest chunk's ranges
  const r = ranges(p, o, { z0: 0, zc: 1, m0: 0, mc: Math.min(p.M, tile.tileM), n0: 0, nc: Math.min(p.N, tile.tileN) });
  const worst = (['a', 'b', 'c'] as const)
    .map((k) => ({ k, size: windowOf(r[k], align).size }))
    .sort((x, y) => y.size - x.size)[0]!;
  const name = worst.k === 'c' ? 'the output' : `operand ${worst.k}`;
  throw new RangeError(
    `${p.desc}: ${name} needs a ${worst.size}-byte storage binding even for a single ${tile.tileM}x${tile.tileN} tile, ` +
      `over this adapter's maxStorageBufferBindingSize (${maxBind} bytes); a transposed operand can only be split ` +
      'along its contiguous axis',
  );
}

interface Launch {
  a: Tensor;
  b: Tensor;
  bias?: Tensor;
  out: Tensor;
  pre?: Tensor;
}

function dispatchProblem(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): void {
  if (p.M === 0 || p.N === 0 || p.nb === 0 || p.outer.length === 0) return;
  if (spec.variant === 'packed') {
    dispatchPacked(name, p, spec, t);
    return;
  }
  const k = kernelFor(spec);
  for (const o of p.outer) {
    for (const w of planChunks(p, o, k)) {
      const bind = (tn: Tensor, win: Window, write: boolean, what: string): BufferBinding => ({
        buffer: tn.buffer,
        offset: win.offset,
        size: win.size,
        write,
        what,
      });
      const bindings: BufferBinding[] = [
        bind(t.a, w.a, false, `a ${t.a.describe()}`),
        bind(t.b, w.b, false, `b ${t.b.describe()}`),
      ];
      if (t.bias) bindings.push(t.bias.read(`bias ${t.bias.describe()}`));
      bindings.push(bind(t.out, w.c, true, `out ${t.out.describe()}`));
      if (t.pre) bindings.push(bind(t.pre, w.c, true, `pre-activation ${t.pre.describe()}`));
      const ch = w.ch;
      const params: Param[] = [
        ['u32', p.M], ['u32', p.N], ['u32', p.K], ['u32', p.inner],
        ['u32', p.aS1], ['u32', p.aS2], ['u32', p.bS1], ['u32', p.bS2],
        ['u32', ch.m0], ['u32', ch.n0], ['u32', ch.z0],
        // index shifts: the host batch offset minus the binding's start (u32 arithmetic wraps)
        ['u32', (o.a.base + w.a.shift) >>> 0],
        ['u32', (o.b.base + w.b.shift) >>> 0],
        ['u32', (o.c.base + w.c.shift) >>> 0],
      ];
      rt().dispatch({
        name,
        code: k.code,
        bindings,
        params,
        workgroups: [Math.ceil(ch.nc / k.tileN), Math.ceil(ch.mc / k.tileM), ch.zc],
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// the packed variant: uniform-buffer bindings, which the runtime's storage-only dispatch does not offer, so
// its dispatches are encoded here, in order after everything the runtime recorded (flushed first), and
// submitted at once.

type Kind = 'read' | 'write' | 'uniform';
interface OwnBinding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
  kind: Kind;
}
interface OwnDispatch {
  code: string;
  kinds: Kind[];
  bindings: OwnBinding[];
  params: number[];
  workgroups: [number, number];
}

const PARAM_SLOT = 256;
const ownPipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
let paramArena: GPUBuffer | null = null;
let packScratch: GPUBuffer | null = null;

function ownPipeline(label: string, code: string, kinds: Kind[]) {
  const key = `${kinds.join('')}|${code}`;
  let c = ownPipelines.get(key);
  if (!c) {
    const device = gpu().device;
    const entries: GPUBindGroupLayoutEntry[] = kinds.map((k, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: k === 'uniform' ? 'uniform' : k === 'write' ? 'storage' : 'read-only-storage' },
    }));
    entries.push({ binding: kinds.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    const layout = device.createBindGroupLayout({ entries, label });
    const module = device.createShaderModule({ code, label });
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout], label }),
      compute: { module, entryPoint: 'main' },
      label,
    });
    rt().counters.pipelinesCompiled++;
    ownPipelines.set(key, (c = { pipeline, layout }));
  }
  return c;
}

/** The scratch buffer the packed blocks go to (uniform and storage usage), grown on demand. */
function scratchFor(bytes: number): GPUBuffer {
  if (!packScratch || packScratch.size < bytes) {
    packScratch?.destroy(); // work already submitted keeps it alive until done
    const size = Math.ceil(bytes / (1 << 20)) * (1 << 20);
    packScratch = gpu().device.createBuffer({
      size,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE,
      label: 'matmul packed blocks',
    });
  }
  return packScratch;
}

/** Frees the packed variant's scratch blocks (they grow to the largest B packed so far). */
export function releaseMatmulScratch(): void {
  packScratch?.destroy();
  packScratch = null;
  paramArena?.destroy();
  paramArena = null;
}

function submitOwn(name: string, list: OwnDispatch[]): void {
  if (list.length === 0) return;
  const g = gpu();
  const device = g.device;
  rt().flush(); // everything recorded before this op runs first
  const bytes = list.length * PARAM_SLOT;
  if (!paramArena || paramArena.size < bytes) {
    paramArena?.destroy();
    paramArena = device.createBuffer({
      size: Math.max(bytes, 64 * PARAM_SLOT),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'matmul params',
    });
  }
  const host = new Uint32Array(bytes / 4);
  const enc = device.createCommandEncoder({ label: name });
  const pass = enc.beginComputePass({ label: name });
  list.forEach((d, i) => {
    host.set(d.params, (i * PARAM_SLOT) / 4);
    const { pipeline, layout } = ownPipeline(name, d.code, d.kinds);
    const entries: GPUBindGroupEntry[] = d.bindings.map((b, j) => ({
      binding: j,
      resource: { buffer: b.buffer, offset: b.offset, size: b.size },
    }));
    entries.push({ binding: d.bindings.length, resource: { buffer: paramArena!, offset: i * PARAM_SLOT, size: PARAM_SLOT } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout, entries, label: name }));
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1]);
  });
  pass.end();
  device.queue.writeBuffer(paramArena!, 0, host);
  device.queue.submit([enc.finish()]);
  rt().counters.dispatches += list.length;
  rt().counters.submits++;
  g.check(`${name} (${list.length} dispatches)`);
}

/** Scratch partial sums of the packed variant's later K chunks: at most this many bytes at once. */
const SLAB_BUDGET = 256 * 1024 * 1024;

function dispatchPacked(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): void {
  const g = gpu().limits;
  const S = spec.subgroupSize!;
  const cv = spec.cv!;
  const tm = spec.tm!;
  const R = packRows(S);
  const colsPerGroup = 4 * S;
  const groups = Math.ceil(p.N / colsPerGroup);
  const chunks = Math.max(1, Math.ceil(p.K / R));
  const blockBytes = PACK_BLOCK_FLOATS * 4;
  const instanceBytes = groups * chunks * blockBytes;
  const maxBind = Math.min(MATMUL_TUNING.maxBindingBytes ?? Infinity, g.maxStorageBufferBindingSize);
  const align = Math.max(16, g.minStorageBufferOffsetAlignment);
  const maxWg = g.maxComputeWorkgroupsPerDimension;
  const scratch = scratchFor(instanceBytes);
  // the main kernel only sums; bias and activation come with the second pass
  const kernel = kernelFor({ ...spec, bias: false, activation: 'none', writePre: false });
  const packVec = !p.transB && p.N % 4 === 0 && p.K > 0;
  const pack = packCode(S, p.transB, packVec);
  const list: OwnDispatch[] = [];
  const win = (lo: number, hi: number) => windowOf([lo, hi], align);
  const bVaries = p.bS1 !== 0 || p.bS2 !== 0 || p.outer.some((o) => o.b.base !== p.outer[0]!.b.base);
  let packedFor: string | null = null;
  // K chunks after the first write partial sums to slabs (scratch copies of the output), added into it every
  // `perGroup` chunks by the combine pass
  const perGroup = chunks > 1 ? Math.max(1, Math.min(chunks - 1, Math.floor((MATMUL_TUNING.slabBytes ?? SLAB_BUDGET) / Math.max(1, t.out.bytes)))) : 0;
  const slabs: Tensor[] = [];
  for (let j = 0; j < perGroup; j++) slabs.push(empty(t.out.shape));
  const epilogue = spec.bias || spec.writePre || spec.activation !== 'none';
  const vecOut = p.N % 4 === 0;

  const packInstance = (bBase: number) => {
    // B's range for groups [gA, gB) x chunks [cA, cB): split by groups (Bᵀ rows) or chunks (B rows) to fit
    const rangeOf = (gA: number, gB: number, cA: number, cB: number): [number, number] => {
      if (p.K === 0) return [0, 0];
      const n0 = gA * colsPerGroup;
      const n1 = Math.min(p.N, gB * colsPerGroup);
      const k0 = cA * R;
      const k1 = Math.min(p.K, cB * R);
      return p.transB ? [bBase + n0 * p.K, bBase + (n1 - 1) * p.K + p.K] : [bBase + k0 * p.N, bBase + (k1 - 1) * p.N + p.N];
    };
    // the scratch range a pack dispatch writes is one binding too (groups x all chunks, real limit)
    const scratchGroups = Math.max(1, Math.floor(g.maxStorageBufferBindingSize / (chunks * blockBytes)));
    let gStep = Math.min(groups, scratchGroups);
    let cStep = chunks;
    while (win(...rangeOf(0, gStep, 0, cStep)).size > maxBind) {
      if (p.transB && gStep > 1) gStep = Math.ceil(gStep / 2);
      else if (!p.transB && cStep > 1) cStep = Math.ceil(cStep / 2);
      else throw new RangeError(`${p.desc}: b cannot be split into ranges under maxStorageBufferBindingSize (${maxBind} bytes)`);
    }
    for (let gA = 0; gA < groups; gA += gStep) {
      for (let cA = 0; cA < chunks; cA += cStep) {
        const gN = Math.min(gStep, groups - gA);
        const cN = Math.min(cStep, chunks - cA);
        const w = win(...rangeOf(gA, gA + gN, cA, cA + cN));
        const rows = chunks === 1 ? Math.max(1, Math.min(R, p.K)) : R;
        const total = gN * cN * rows * S;
        const [x, y] = grid1D(Math.ceil(total / 64));
        const sOff = gA * chunks * blockBytes;
        list.push({
          code: pack,
          kinds: ['read', 'write'],
          bindings: [
            { buffer: t.b.buffer, offset: w.offset, size: w.size, kind: 'read' },
            { buffer: scratch, offset: sOff, size: gN * chunks * blockBytes, kind: 'write' },
          ],
          params: [p.N, p.K, gA, gN, cA, cN, chunks, (bBase + w.shift) >>> 0, -(sOff / 16) >>> 0, total, rows],
          workgroups: [x, y],
        });
      }
    }
  };

  /** out[region] += slabs[0..n) (+ bias, activation, pre when `last`), in binding-sized windows */
  const combine = (lo: number, hi: number, n: number, last: boolean) => {
    const withEpi = last && epilogue;
    if (n === 0 && !withEpi) return;
    const code = combineCode(n, withEpi ? spec.activation : 'none', withEpi && spec.bias, withEpi && spec.writePre, vecOut);
    const step = Math.max(align, Math.floor(maxBind / align) * align) / 4;
    for (let e0 = lo; e0 < hi; e0 += step - align / 4) {
      const e1 = Math.min(hi, e0 + step - align / 4);
      const offset = Math.floor((e0 * 4) / align) * align;
      const first = e0 - offset / 4; // a multiple of 4 when the output is vec4 (N % 4 == 0)
      const range = { offset, size: (e1 - offset / 4) * 4 };
      const bindings: OwnBinding[] = [{ buffer: t.out.buffer, ...range, kind: 'write' }];
      for (let j = 0; j < n; j++) bindings.push({ buffer: slabs[j]!.buffer, ...range, kind: 'read' });
      if (withEpi && spec.bias) bindings.push({ buffer: t.bias!.buffer, offset: 0, size: Math.max(16, t.bias!.bytes), kind: 'read' });
      if (withEpi && spec.writePre) bindings.push({ buffer: t.pre!.buffer, ...range, kind: 'write' });
      const items = vecOut ? (e1 - e0) / 4 : e1 - e0;
      list.push({
        code,
        kinds: bindings.map((b) => b.kind),
        bindings,
        params: [items, p.N, e0 % p.N, vecOut ? first / 4 : first],
        workgroups: grid1D(Math.ceil(items / 64)),
      });
    }
  };

  for (const o of p.outer) {
    for (let z = 0; z < p.nb; z++) {
      const z1 = Math.floor(z / p.inner);
      const z2 = z - z1 * p.inner;
      const aOff = o.a.base + z1 * p.aS1 + z2 * p.aS2;
      const bOff = o.b.base + z1 * p.bS1 + z2 * p.bS2;
      const cOff = o.c.base + z * p.M * p.N;
      const key = bVaries ? `${bOff}` : 'shared';
      if (packedFor !== key) {
        packInstance(bOff);
        packedFor = key;
      }
      // rows per dispatch: all, unless a's or out's range needs splitting (or the grid is too long)
      const rangesFor = (m0: number, m1: number, n0: number, n1: number) => {
        const a: [number, number] = p.K === 0 ? [0, 0] : p.transA ? [aOff + m0, aOff + (p.K - 1) * p.M + m1] : [aOff + m0 * p.K, aOff + m1 * p.K];
        const c: [number, number] = [cOff + m0 * p.N + n0, cOff + (m1 - 1) * p.N + n1];
        return { a: win(...a), c: win(...c) };
      };
      let mStep = Math.ceil(p.M / tm) * tm;
      const fits = (m: number) => {
        const r = rangesFor(0, Math.min(p.M, m), 0, Math.min(p.N, cv * colsPerGroup));
        return r.a.size <= maxBind && r.c.size <= maxBind && Math.ceil(m / tm) <= maxWg;
      };
      while (!fits(mStep)) {
        if (mStep <= tm) throw new RangeError(`${p.desc}: a or the output cannot be split into ranges under maxStorageBufferBindingSize (${maxBind} bytes)`);
        mStep = Math.ceil(mStep / 2 / tm) * tm;
      }
      const mainFor = (c: number, target: Tensor) => {
        for (let gd = 0; gd < groups; gd += cv) {
          const n0 = gd * colsPerGroup;
          const n1 = Math.min(p.N, (gd + cv) * colsPerGroup);
          for (let m0 = 0; m0 < p.M; m0 += mStep) {
            const m1 = Math.min(p.M, m0 + mStep);
            const r = rangesFor(m0, m1, n0, n1);
            const bindings: OwnBinding[] = [{ buffer: t.a.buffer, offset: r.a.offset, size: r.a.size, kind: 'read' }];
            for (let v = 0; v < cv; v++) {
              // a group past N still needs a binding: the last one (its columns are never stored)
              const gv = Math.min(gd + v, groups - 1);
              bindings.push({ buffer: scratch, offset: (gv * chunks + c) * blockBytes, size: blockBytes, kind: 'uniform' });
            }
            bindings.push({ buffer: target.buffer, offset: r.c.offset, size: r.c.size, kind: 'write' });
            const kLen = Math.max(0, Math.min(R, p.K - c * R));
            list.push({
              code: kernel.code,
              kinds: bindings.map((b) => b.kind),
              bindings,
              params: [p.M, p.N, p.K, kLen, c * R, gd, m0, (aOff + r.a.shift) >>> 0, (cOff + r.c.shift) >>> 0],
              workgroups: [Math.ceil((m1 - m0) / tm), 1],
            });
          }
        }
      };
      mainFor(0, t.out);
      for (let c = 1; c < chunks; c += perGroup) {
        const n = Math.min(perGroup, chunks - c);
        for (let j = 0; j < n; j++) mainFor(c + j, slabs[j]!);
        combine(cOff, cOff + p.M * p.N, n, c + n >= chunks);
      }
      if (chunks === 1) combine(cOff, cOff + p.M * p.N, 0, true);
    }
  }
  submitOwn(name, list);
  for (const sl of slabs) sl.dispose();
}

// ---------------------------------------------------------------------------------------------------------
// the op

function checkF32(desc: string, t: Tensor, what: string): void {
  if (t.dtype !== 'f32') throw new TypeError(`${desc}: ${what} must be f32, got ${t.describe()}`);
}

function tuneProblemOf(p: Problem): TuneProblem {
  return { M: p.M, N: p.N, K: p.K, batch: p.nb * p.outer.length, transA: p.transA, transB: p.transB };
}

/** Flops of one timing run during autotuning: enough to time, small enough to keep tuning brief. */
const TUNE_FLOPS = 1e9;

/**
 * The problem timed for a class: the same K and (up to the flops budget) M, since the variants differ in how
 * they use rows (the packed kernel's dispatches cover all rows); batches first, then columns, then rows cut down.
 */
function tuneShapes(p: Problem) {
  const K = Math.max(1, p.K);
  let nb = p.nb * p.outer.length;
  let M = p.M;
  let N = p.N;
  const flops = () => 2 * nb * M * N * K;
  if (flops() > TUNE_FLOPS) nb = Math.max(1, Math.floor(TUNE_FLOPS / (2 * M * N * K)));
  if (flops() > TUNE_FLOPS) N = Math.min(N, Math.max(512, Math.floor(TUNE_FLOPS / (2 * M * K) / 64) * 64));
  if (flops() > TUNE_FLOPS) M = Math.min(M, Math.max(64, Math.floor(TUNE_FLOPS / (2 * N * K))));
  const aShape = nb > 1 ? [nb, ...(p.transA ? [p.K, M] : [M, p.K])] : p.transA ? [p.K, M] : [M, p.K];
  const batchB = nb > 1 && (p.bS1 !== 0 || p.bS2 !== 0);
  const bMat = p.transB ? [N, p.K] : [p.K, N];
  const bShape = batchB ? [nb, ...bMat] : bMat;
  return { aShape, bShape, shape: `${nb > 1 ? `${nb}x` : ''}${M}x${p.K}x${N}` };
}

function measureFor(p: Problem): MeasureFn {
  const { aShape, bShape, shape } = tuneShapes(p);
  const fn = async (variant: MatmulVariant) => {
    const q = problemOf(aShape, bShape, p.transA, p.transB);
    const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
    const a = tensor(rand(aShape.reduce((x, y) => x * y, 1)), aShape);
    const b = tensor(rand(bShape.reduce((x, y) => x * y, 1)), bShape);
    const out = empty(q.outShape);
    try {
      const spec = specFor(variant, q, false, 'none', false);
      const run = () => dispatchProblem('matmul autotune', q, spec, { a, b, out });
      await rt().sync(); // drain other work first
      const t0 = performance.now();
      run(); // compiles the pipeline
      await rt().sync();
      const first = performance.now() - t0;
      let best = first;
      const reps = first > 500 ? 1 : 3;
      for (let i = 0; i < reps; i++) {
        const t1 = performance.now();
        run();
        await rt().sync();
        best = Math.min(best, performance.now() - t1);
      }
      return best;
    } finally {
      a.dispose();
      b.dispose();
      out.dispose();
    }
  };
  return Object.assign(fn, { shape });
}

/**
 * The fixed choice, used with autotuning off and until a class is tuned: the subgroup kernel on a CPU adapter
 * (lavapipe, quiet machine, GFLOP/s subgroup / packed: 1024³ 26 / 26, 4096x512x2048 Bᵀ 31 / 28,
 * 2048³ 27 / 30, 64 x 256x64x256 20 / 12: equal on big products, far ahead on small ones, and recorded in the
 * runtime's batch), the shared-memory tiled kernel on a GPU. Autotuning times the candidates of tuningCandidates.
 */
function heuristicFor(_p: Problem, eligible: MatmulVariant[]): MatmulVariant {
  if (gpu().info.isSoftware) {
    if (eligible.includes('subgroup')) return 'subgroup';
    return 'regblock';
  }
  return 'tiled';
}

/**
 * The variants worth timing: all that run here, except on a CPU adapter the shared-memory tiled and the
 * register-blocked kernels (workgroup barriers are coroutine switches there: 3x and 2x slower than the subgroup
 * kernels in shared/LAVAPIPE.md and here), which would only lengthen each tuning.
 */
function tuningCandidates(eligible: MatmulVariant[]): MatmulVariant[] {
  if (!gpu().info.isSoftware) return eligible;
  const fast = eligible.filter((v) => v === 'subgroup' || v === 'packed');
  return fast.length ? fast : eligible;
}

function choose(p: Problem, tune: boolean): VariantChoice {
  const eligible = eligibleVariants();
  return chooseMatmulVariant(tuneProblemOf(p), eligible, tune ? measureFor(p) : undefined, heuristicFor(p, eligible), tuningCandidates(eligible));
}

/** The variant matmul would run for these shapes now, and why ('subgroup (autotuned)', 'tiled (forced)', ...). */
export function matmulVariantFor(aShape: Shape, bShape: Shape, opts: { transA?: boolean; transB?: boolean } = {}): string {
  const p = problemOf(aShape, bShape, opts.transA ?? false, opts.transB ?? false);
  const c = choose(p, false);
  return `${c.variant} (${c.source})`;
}

export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const activation = opts.activation ?? 'none';
  const p = problemOf(a.shape, b.shape, transA, transB);
  checkF32(p.desc, a, 'a');
  checkF32(p.desc, b, 'b');
  if (!['none', 'relu', 'gelu'].includes(activation)) {
    throw new RangeError(`${p.desc}: unknown activation '${activation}' (none, relu or gelu)`);
  }
  const bias = opts.bias;
  if (bias) {
    checkF32(p.desc, bias, 'bias');
    if (bias.rank !== 1 || bias.shape[0] !== p.N) {
      throw new RangeError(`${p.desc}: bias must be [${p.N}], got ${bias.describe()}`);
    }
  }
  const outBytes = p.outShape.reduce((x, y) => x * y, 1) * 4;
  const maxBuffer = gpu().limits.maxBufferSize;
  if (outBytes > maxBuffer) {
    throw new RangeError(
      `${p.desc}: the output [${p.outShape.join(', ')}] is ${outBytes} bytes, over this adapter's maxBufferSize ` +
        `(${maxBuffer} bytes); split the work (fewer rows per call)`,
    );
  }
  const inputs = bias ? [a, b, bias] : [a, b];
  const needsGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const writePre = needsGrad && activation === 'gelu';
  const choice = choose(p, true);
  const spec = specFor(choice.variant, p, !!bias, activation, writePre);
  const out = empty(p.outShape);
  const pre = writePre ? empty(p.outShape) : undefined;
  dispatchProblem(`matmul ${choice.variant}`, p, spec, { a, b, bias, out, pre });
  if (!needsGrad) return out;
  // relu's gradient needs only the output's sign; gelu's the pre-activation
  const saved = activation === 'none' ? [a, b] : [a, b, activation === 'gelu' ? pre! : out];
  const wants = inputs.map((t) => t.requiresGrad);
  recordOp('matmul', inputs, out, saved, (g, s) => matmulBackward(g, s[0]!, s[1]!, s[2] ?? null, transA, transB, activation, wants));
  pre?.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// backward

/** g * act'(x): x is the pre-activation (gelu) or the output (relu: out > 0 exactly where pre > 0). */
function activationGrad(act: 'relu' | 'gelu', g: Tensor, x: Tensor): Tensor {
  const out = empty(g.shape);
  if (g.size === 0) return out;
  rt().dispatch({
    name: `matmul ${act} backward`,
    code: activationGradCode(act),
    bindings: [g.read(), x.read(), out.write()],
    params: [['u32', g.size]],
    workgroups: grid1D(Math.ceil(g.size / 256)),
  });
  return out;
}

function isBroadcastFree(t: Tensor): boolean {
  return t.shape.slice(0, -2).every((d) => d === 1);
}

function reduceTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.join() === shape.join()) return g;
  const r = sumTo(g, shape);
  g.dispose();
  return r;
}

function matmulBackward(
  g: Tensor,
  a: Tensor,
  b: Tensor,
  x: Tensor | null,
  transA: boolean,
  transB: boolean,
  act: Activation,
  wants: boolean[],
): Array<Tensor | null> {
  const gz = act === 'none' ? g : activationGrad(act, g, x!);
  let dA: Tensor | null = null;
  let dB: Tensor | null = null;
  let dBias: Tensor | null = null;
  if (wants[0]) {
    // d op(A) = gz · op(B)ᵀ
    if (!transA) dA = matmul(gz, b, { transB: !transB });
    else dA = matmul(b, gz, { transA: transB, transB: true });
    dA = reduceTo(dA, a.shape);
  }
  if (wants[1]) {
    // d op(B) = op(A)ᵀ · gz; a weight shared across a batch: fold the batch into K (one matmul, no reduction)
    const fold = isBroadcastFree(b) && a.rank > 2 && !transA;
    const a2 = fold ? a.reshape([-1, a.shape[a.rank - 1]!]) : a;
    const g2 = fold ? gz.reshape([-1, gz.shape[gz.rank - 1]!]) : gz;
    if (!transB) dB = matmul(a2, g2, { transA: !transA });
    else dB = matmul(g2, a2, { transA: true, transB: transA });
    if (fold) {
      a2.dispose();
      g2.dispose();
      if (dB.shape.join() !== b.shape.join()) {
        const r = dB.reshape(b.shape); // b's leading size-1 dims
        dB.dispose();
        dB = r;
      }
    }
    dB = reduceTo(dB, b.shape);
  }
  if (wants[2]) dBias = sumTo(gz, [gz.shape[gz.rank - 1]!]);
  if (gz !== g) gz.dispose();
  return [dA, dB, dBias];
}

// ---------------------------------------------------------------------------------------------------------
// CPU reference (float64)

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: ArrayLike<number>;
  activation?: Activation;
}

export function geluRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** out = act(op(a) · op(b) + bias) in float64, with batch broadcasting. */
export function matmulRef(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  opts: MatmulRefOptions = {},
): { data: Float64Array; shape: number[] } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = problemOf(aShape, bShape, transA, transB, 'matmulRef');
  const { N, K } = p;
  const outBatch = p.outShape.slice(0, -2);
  const nb = outBatch.reduce((x, y) => x * y, 1);
  const sa = batchStrides(aShape.slice(0, -2), outBatch, aShape[aShape.length - 1]! * aShape[aShape.length - 2]!);
  const sb = batchStrides(bShape.slice(0, -2), outBatch, bShape[bShape.length - 1]! * bShape[bShape.length - 2]!);
  const Mr = p.outShape[p.outShape.length - 2]!;
  const out = new Float64Array(nb * Mr * N);
  const act = opts.activation ?? 'none';
  for (let z = 0; z < nb; z++) {
    let rest = z;
    let ao = 0;
    let bo = 0;
    for (let d = outBatch.length - 1; d >= 0; d--) {
      const i = rest % outBatch[d]!;
      rest = Math.floor(rest / outBatch[d]!);
      ao += i * sa[d]!;
      bo += i * sb[d]!;
    }
    for (let m = 0; m < Mr; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * Mr + m : m * K + k)]!;
          const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
          s += av * bv;
        }
        if (opts.bias) s += opts.bias[n]!;
        if (act === 'relu') s = Math.max(s, 0);
        else if (act === 'gelu') s = geluRef(s);
        out[(z * Mr + m) * N + n] = s;
      }
    }
  }
  return { data: out, shape: p.outShape };
}

/** One output element of matmulRef, for spot checks of large products: out[...batch, m, n]. */
export function matmulRefAt(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  z: number,
  m: number,
  n: number,
  opts: MatmulRefOptions = {},
): { value: number; magnitude: number } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = problemOf(aShape, bShape, transA, transB, 'matmulRefAt');
  const outBatch = p.outShape.slice(0, -2);
  const Mr = p.outShape[p.outShape.length - 2]!;
  const { N, K } = p;
  const sa = batchStrides(aShape.slice(0, -2), outBatch, aShape[aShape.length - 1]! * aShape[aShape.length - 2]!);
  const sb = batchStrides(bShape.slice(0, -2), outBatch, bShape[bShape.length - 1]! * bShape[bShape.length - 2]!);
  let rest = z;
  let ao = 0;
  let bo = 0;
  for (let d = outBatch.length - 1; d >= 0; d--) {
    const i = rest % outBatch[d]!;
    rest = Math.floor(rest / outBatch[d]!);
    ao += i * sa[d]!;
    bo += i * sb[d]!;
  }
  let s = 0;
  let mag = 0;
  for (let k = 0; k < K; k++) {
    const av = a[ao + (transA ? k * Mr + m : m * K + k)]!;
    const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
    s += av * bv;
    mag += Math.abs(av * bv);
  }
  if (opts.bias) {
    s += opts.bias[n]!;
    mag += Math.abs(opts.bias[n]!);
  }
  const act = opts.activation ?? 'none';
  if (act === 'relu') s = Math.max(s, 0);
  else if (act === 'gelu') s = geluRef(s);
  return { value: s, magnitude: mag };
}
