// The packed matmul variant's dispatches (kernels in matmul-packed.wgsl.ts): op(B) repacked into uniform blocks in a
// scratch buffer, one main dispatch per column group and K chunk over all rows, later K chunks summed into slabs
// (scratch copies of the output) that the combine pass adds up with bias and activation.
import { bindingChunks } from '../engine/binding-chunks.ts';
import { gpu } from '../engine/gpu.ts';
import { grid1D, rt, type BufferBinding } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import type { MatmulKernelSpec } from './matmul.wgsl.ts';
import { combineCode, PACK_BLOCK_FLOATS, PACK_WORKGROUP, packCode, packRows, packRowsPerInvocation } from './matmul-packed.wgsl.ts';
import { matmulBindingLimits, windowOf, type Launch, type Window } from './matmul-dispatch.ts';
import type { Problem } from './matmul-problem.ts';
import { kernelFor, MATMUL_TUNING } from './matmul-spec.ts';
import { memoWgsl } from './wgsl-memo.ts';

let packScratch: GPUBuffer | null = null;

/** The scratch buffer the packed blocks go to (uniform and storage usage), grown on demand. */
function scratchFor(bytes: number): GPUBuffer {
  if (!packScratch || packScratch.size < bytes) {
    // recorded dispatches may still bind the old buffer: submit them first (submitted work keeps it alive)
    rt().flush();
    if (packScratch) rt().destroyOther(packScratch);
    const size = Math.ceil(bytes / (1 << 20)) * (1 << 20);
    packScratch = rt().createOther({
      size,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE,
      label: 'matmul packed blocks',
    });
  }
  return packScratch;
}

/** Scratch partial sums of the packed variant's later K chunks: at most this many bytes at once. */
const SLAB_BUDGET = 256 * 1024 * 1024;
/** Storage buffers of the combine pass besides the slabs: out, bias, pre-activation. */
const COMBINE_OTHER_BUFFERS = 3;

/** What every pass of one packed matmul shares: the problem, the launch, and the block layout of packed op(B). */
interface PackedPlan {
  name: string;
  p: Problem;
  /** the epilogue the second pass applies: the call's, less a relu the main pass applies (mainActivation) */
  spec: MatmulKernelSpec;
  mainActivation: 'relu' | 'none';
  t: Launch;
  /** Subgroup size: lanes per column group row, 4 columns a lane. */
  S: number;
  /** Column groups per main workgroup. */
  cv: number;
  /** Rows per main workgroup. */
  tm: number;
  /** K rows per packed block (one chunk). */
  R: number;
  colsPerGroup: number;
  groups: number;
  chunks: number;
  blockBytes: number;
  maxBind: number;
  scratch: GPUBuffer;
  /** A binding window over [lo, hi) floats, aligned for a storage binding offset. */
  win: (lo: number, hi: number) => Window;
}

export function dispatchPacked(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): void {
  const plan = planPacked(name, p, spec, t);
  const kernel = kernelFor({ ...spec, bias: false, activation: plan.mainActivation, writePre: false, residual: false });
  // vec4 loads of B need every instance's base on a vec4 too
  const aligned = p.bS1 % 4 === 0 && p.bS2 % 4 === 0 && p.outer.every((o) => o.b.base % 4 === 0);
  const packVec = aligned && (p.transB ? p.K : p.N) % 4 === 0 && p.N > 0 && p.K > 0;
  const pack = packCodeMemo(plan.S, p.transB, packVec);
  const packQuads = packRowsPerInvocation(p.transB, packVec);
  const bVaries = p.bS1 !== 0 || p.bS2 !== 0 || p.outer.some((o) => o.b.base !== p.outer[0]!.b.base);
  let packedFor: string | null = null;
  const { chunks } = plan;
  // K chunks after the first write partial sums to slabs (scratch copies of the output), added into it every
  // `perGroup` chunks by the combine pass, which binds out, the slabs, bias and pre as storage buffers: at most
  // maxStorageBuffersPerShaderStage of them (16 on lavapipe; the LM head's dX product, K = 32128, has 63 chunks)
  const slabCap = Math.max(1, gpu().limits.maxStorageBuffersPerShaderStage - COMBINE_OTHER_BUFFERS);
  const fit = Math.floor((MATMUL_TUNING.slabBytes ?? SLAB_BUDGET) / Math.max(1, t.out.bytes));
  const perGroup = chunks > 1 ? Math.max(1, Math.min(chunks - 1, slabCap, fit)) : 0;
  const slabs: Tensor[] = [];
  for (let j = 0; j < perGroup; j++) slabs.push(empty(t.out.shape));

  for (const o of p.outer) {
    for (let z = 0; z < p.nb; z++) {
      const z1 = Math.floor(z / p.inner);
      const z2 = z - z1 * p.inner;
      const aOff = o.a.base + z1 * p.aS1 + z2 * p.aS2;
      const bOff = o.b.base + z1 * p.bS1 + z2 * p.bS2;
      const cOff = o.c.base + z * p.M * p.N;
      const key = bVaries ? `${bOff}` : 'shared';
      if (packedFor !== key) {
        dispatchPack(plan, pack, packQuads, bOff);
        packedFor = key;
      }
      const mStep = rowStep(plan, aOff, cOff);
      const cEnd = cOff + p.M * p.N;
      dispatchMain(plan, kernel.code, 0, t.out, aOff, cOff, mStep);
      for (let c = 1; c < chunks; c += perGroup) {
        const n = Math.min(perGroup, chunks - c);
        for (let j = 0; j < n; j++) dispatchMain(plan, kernel.code, c + j, slabs[j]!, aOff, cOff, mStep);
        dispatchCombine(plan, slabs, cOff, cEnd, n, c + n >= chunks);
      }
      if (chunks === 1) dispatchCombine(plan, slabs, cOff, cEnd, 0, true);
    }
  }
  for (const sl of slabs) sl.dispose();
}

function planPacked(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): PackedPlan {
  const S = spec.subgroupSize!;
  const R = packRows(S);
  const colsPerGroup = 4 * S;
  const groups = Math.ceil(p.N / colsPerGroup);
  const chunks = Math.max(1, Math.ceil(p.K / R));
  const blockBytes = PACK_BLOCK_FLOATS * 4;
  const { maxBind, align } = matmulBindingLimits();
  const scratch = scratchFor(groups * chunks * blockBytes);
  const win = (lo: number, hi: number) => windowOf([lo, hi], align);
  // the main kernel only sums; bias, activation and residual come with the second pass, except a relu alone
  // over one K chunk: then the main pass is the last, and the relu rides in its store (t5-small's wi at batch
  // 8 x 256 tokens: the second pass read and wrote 16 MiB, 5.7 ms on lavapipe)
  const reluInMain = chunks === 1 && spec.activation === 'relu' && !spec.bias && !spec.writePre && !spec.residual;
  return {
    name, p, spec: reluInMain ? { ...spec, activation: 'none' } : spec, mainActivation: reluInMain ? 'relu' : 'none', t, S,
    cv: spec.cv!, tm: spec.tm!, R, colsPerGroup, groups, chunks, blockBytes, maxBind, scratch, win,
  };
}

/** B's range (floats) for column groups [gA, gB) x chunks [cA, cB) of the instance at bBase. */
function bRange({ p, colsPerGroup, R }: PackedPlan, bBase: number, gA: number, gB: number, cA: number, cB: number): [number, number] {
  if (p.K === 0) return [0, 0];
  const n0 = gA * colsPerGroup;
  const n1 = Math.min(p.N, gB * colsPerGroup);
  const k0 = cA * R;
  const k1 = Math.min(p.K, cB * R);
  return p.transB ? [bBase + n0 * p.K, bBase + (n1 - 1) * p.K + p.K] : [bBase + k0 * p.N, bBase + (k1 - 1) * p.N + p.N];
}

/** Packs op(B) of the instance at bBase into the scratch blocks, split by groups (Bᵀ rows) or chunks (B rows) to
 * fit; an invocation packs `perInvocation` rows (packRowsPerInvocation). */
function dispatchPack(plan: PackedPlan, code: string, perInvocation: number, bBase: number): void {
  const { name, p, t, S, R, groups, chunks, blockBytes, maxBind, scratch, win } = plan;
  // the scratch range a pack dispatch writes is one binding too (groups x all chunks, real limit)
  const scratchGroups = Math.max(1, Math.floor(gpu().limits.maxStorageBufferBindingSize / (chunks * blockBytes)));
  let gStep = Math.min(groups, scratchGroups);
  let cStep = chunks;
  while (win(...bRange(plan, bBase, 0, gStep, 0, cStep)).size > maxBind) {
    if (p.transB && gStep > 1) gStep = Math.ceil(gStep / 2);
    else if (!p.transB && cStep > 1) cStep = Math.ceil(cStep / 2);
    else throw new RangeError(`${p.desc}: b cannot be split into ranges under maxStorageBufferBindingSize (${maxBind} bytes)`);
  }
  for (let gA = 0; gA < groups; gA += gStep) {
    for (let cA = 0; cA < chunks; cA += cStep) {
      const gN = Math.min(gStep, groups - gA);
      const cN = Math.min(cStep, chunks - cA);
      const w = win(...bRange(plan, bBase, gA, gA + gN, cA, cA + cN));
      const rows = (chunks === 1 ? Math.max(1, Math.min(R, p.K)) : R) / perInvocation;
      const total = gN * cN * rows * S;
      const [x, y] = grid1D(Math.ceil(total / PACK_WORKGROUP));
      const sOff = gA * chunks * blockBytes;
      rt().dispatch({
        name: `${name} pack`,
        code,
        bindings: [
          { buffer: t.b.buffer, offset: w.offset, size: w.size, write: false, what: `b ${t.b.describe()}` },
          { buffer: scratch, offset: sOff, size: gN * chunks * blockBytes, write: true, what: 'packed blocks of b' },
        ],
        params: u32s(p.N, p.K, gA, gN, cA, cN, chunks, (bBase + w.shift) >>> 0, -(sOff / 16) >>> 0, total, rows),
        workgroups: [x, y],
        site: p.desc,
        flops: 0,
      });
    }
  }
}

/** The windows of a's rows [m0, m1) and of the output's rows [m0, m1) x columns [n0, n1). */
function aAndOutWindows({ p, win }: PackedPlan, aOff: number, cOff: number, m0: number, m1: number, n0: number, n1: number) {
  const a: [number, number] = p.K === 0 ? [0, 0] : p.transA ? [aOff + m0, aOff + (p.K - 1) * p.M + m1] : [aOff + m0 * p.K, aOff + m1 * p.K];
  const c: [number, number] = [cOff + m0 * p.N + n0, cOff + (m1 - 1) * p.N + n1];
  return { a: win(...a), c: win(...c) };
}

/** Rows per main dispatch: all, unless a's or out's range needs splitting (or the grid is too long). */
function rowStep(plan: PackedPlan, aOff: number, cOff: number): number {
  const { p, tm, cv, colsPerGroup, maxBind } = plan;
  const maxWg = gpu().limits.maxComputeWorkgroupsPerDimension;
  let mStep = Math.ceil(p.M / tm) * tm;
  const fits = (m: number) => {
    const r = aAndOutWindows(plan, aOff, cOff, 0, Math.min(p.M, m), 0, Math.min(p.N, cv * colsPerGroup));
    return r.a.size <= maxBind && r.c.size <= maxBind && Math.ceil(m / tm) <= maxWg;
  };
  while (!fits(mStep)) {
    if (mStep <= tm) throw new RangeError(`${p.desc}: a or the output cannot be split into ranges under maxStorageBufferBindingSize (${maxBind} bytes)`);
    mStep = Math.ceil(mStep / 2 / tm) * tm;
  }
  return mStep;
}

/** The main pass over K chunk c: target = op(a) · (chunk c of op(B)), cv column groups and mStep rows a dispatch. */
function dispatchMain(plan: PackedPlan, code: string, c: number, target: Tensor, aOff: number, cOff: number, mStep: number): void {
  const { name, p, t, cv, tm, R, colsPerGroup, groups, chunks, blockBytes, scratch } = plan;
  for (let gd = 0; gd < groups; gd += cv) {
    const n0 = gd * colsPerGroup;
    const n1 = Math.min(p.N, (gd + cv) * colsPerGroup);
    for (let m0 = 0; m0 < p.M; m0 += mStep) {
      const m1 = Math.min(p.M, m0 + mStep);
      const r = aAndOutWindows(plan, aOff, cOff, m0, m1, n0, n1);
      const bindings: BufferBinding[] = [{ buffer: t.a.buffer, offset: r.a.offset, size: r.a.size, write: false, what: `a ${t.a.describe()}` }];
      for (let v = 0; v < cv; v++) {
        // a group past N still needs a binding: the last one (its columns are never stored)
        const gv = Math.min(gd + v, groups - 1);
        const offset = (gv * chunks + c) * blockBytes;
        bindings.push({ buffer: scratch, offset, size: blockBytes, write: false, uniform: true, what: 'a packed block of b' });
      }
      bindings.push({ buffer: target.buffer, offset: r.c.offset, size: r.c.size, write: true, what: `out ${target.describe()}` });
      const kLen = Math.max(0, Math.min(R, p.K - c * R));
      rt().dispatch({
        name,
        code,
        bindings,
        params: u32s(p.M, p.N, p.K, kLen, c * R, gd, m0, (aOff + r.a.shift) >>> 0, (cOff + r.c.shift) >>> 0),
        workgroups: [Math.ceil((m1 - m0) / tm), 1],
        site: p.desc,
        flops: 2 * (m1 - m0) * (n1 - n0) * kLen,
      });
    }
  }
}

/** out[lo, hi) += slabs[0..n) (+ bias, activation, pre when `last`), in binding-sized windows. */
function dispatchCombine({ name, p, spec, t, maxBind }: PackedPlan, slabs: Tensor[], lo: number, hi: number, n: number, last: boolean): void {
  const withEpi = last && (spec.bias || spec.writePre || !!spec.residual || spec.activation !== 'none');
  if (n === 0 && !withEpi) return;
  const vecOut = p.N % 4 === 0;
  const code = combineCodeMemo(n, withEpi ? spec.activation : 'none', withEpi && spec.bias, withEpi && spec.writePre, vecOut, withEpi && !!spec.residual);
  const w = vecOut ? 4 : 1;
  for (const c of bindingChunks(lo, hi, w, maxBind)) {
    const range = { offset: c.offset, size: c.size };
    const bindings: BufferBinding[] = [{ buffer: t.out.buffer, ...range, write: true, what: `out ${t.out.describe()}` }];
    for (let j = 0; j < n; j++) bindings.push({ buffer: slabs[j]!.buffer, ...range, write: false, what: `partial sums ${j}` });
    if (withEpi && spec.bias) {
      bindings.push({ buffer: t.bias!.buffer, offset: 0, size: Math.max(16, t.bias!.bytes), write: false, what: `bias ${t.bias!.describe()}` });
    }
    if (withEpi && spec.writePre) bindings.push({ buffer: t.pre!.buffer, ...range, write: true, what: `pre-activation ${t.pre!.describe()}` });
    if (withEpi && spec.residual) bindings.push({ buffer: t.residual!.buffer, ...range, write: false, what: `residual ${t.residual!.describe()}` });
    const e0 = c.offset / 4 + c.start * w;
    rt().dispatch({
      name: `${name} combine`,
      code,
      bindings,
      params: u32s(c.count, p.N, e0 % p.N, c.start),
      workgroups: grid1D(Math.ceil(c.count / PACK_WORKGROUP)),
      site: p.desc,
      flops: 0,
    });
  }
}

function u32s(...values: number[]): Array<['u32', number]> {
  return values.map((v) => ['u32', v]);
}

// each source built once per argument set (wgsl-memo.ts)
const packCodeMemo = memoWgsl(packCode);
const combineCodeMemo = memoWgsl(combineCode);
