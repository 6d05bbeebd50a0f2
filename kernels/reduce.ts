// Reductions: sum, mean, max over axes; sumTo and broadcastTo, each the other's backward.
//
// The input is viewed as [outer, R, inner] after dropping size-1 axes and merging neighbouring axes that are
// all reduced or all kept; axes that fall into separate groups are reduced one group at a time, innermost
// first. Two kernels:
//  * row kernel (inner = 1, long rows, GPUs only): one workgroup per row (or per chunk of a row when there are
//    few rows), vec4 loads strided by the workgroup, then a reduction across the workgroup: subgroup operations
//    and one barrier when `gpu().hasSubgroups`, else a tree in workgroup memory.
//  * column kernel (everything else): one invocation per output (vec4 of outputs when inner % 4 == 0, or
//    vec4 along a short row), looping over R; when there are too few outputs to fill a GPU, R is split into
//    chunks whose partial results a second pass adds up.
// max records the first index of the maximum (PyTorch's tie rule) and sends the gradient there.
import { recordOp } from './record-op.ts';
import { gpu } from '../engine/gpu.ts';
import { grid1D, rt, type Param } from '../engine/runtime.ts';
import { empty, full, type Shape, type Tensor } from '../engine/tensor.ts';
import { broadcastShapes, ewDispatch } from './elementwise-dispatch.ts';
import { memoWgsl } from './wgsl-memo.ts';

const ROW_WORKGROUP = 256;
const COL_WORKGROUP = 64;
/** Mutable so benchmarks can compare settings. */
export const REDUCE_TUNING = {
  /** rows at least this long get a workgroup each; shorter ones an invocation each. null: by adapter, 2048 on
   * a GPU; never on a CPU driver, where a workgroup reduction costs far more than it saves (lavapipe, loaded
   * machine, best of 4: sum over [256, 32128] 50 ms with a workgroup per row against 2.6-15 ms with the
   * chunked column kernel; [16384, 256] 460 ms against 8 ms) */
  rowKernelMin: null as number | null,
};

function rowKernelMin(): number {
  return REDUCE_TUNING.rowKernelMin ?? (gpu().info.isSoftware ? Infinity : 2048);
}
/** a GPU wants tens of thousands of invocations in flight: split R when outputs give fewer */
const TARGET_INVOCATIONS = 16384;
const TARGET_WORKGROUPS = 128;
/** no chunk shorter than this (a second pass has to add the chunks up) */
const MIN_COL_CHUNK = 64;
const MIN_ROW_CHUNK = 4096;

export type ReduceKind = 'sum' | 'max';

let subgroupOverride: boolean | null = null;
/** Tests force the workgroup-memory tree (false) or subgroups (true) path; null: use subgroups when offered. */
export function setSubgroupReduction(on: boolean | null): void {
  subgroupOverride = on;
}

function normAxes(op: string, x: Tensor, axes: number | number[] | null | undefined): number[] {
  if (axes === null || axes === undefined) return x.shape.map((_, i) => i);
  const list = Array.isArray(axes) ? axes : [axes];
  const out = list.map((a) => {
    if (!Number.isInteger(a) || a < -x.rank || a >= Math.max(1, x.rank)) {
      throw new RangeError(`${op}: axis ${a} out of range for ${x.describe()}`);
    }
    return a < 0 ? a + x.rank : a;
  });
  if (new Set(out).size !== out.length) throw new RangeError(`${op}: repeated axis in [${list.join(', ')}]`);
  return out.filter((a) => a < x.rank);
}

/** Groups of merged axes: [size, reduced] from outermost to innermost, size-1 axes dropped. */
function groups(shape: Shape, axes: number[]): Array<[number, boolean]> {
  const out: Array<[number, boolean]> = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const red = axes.includes(i);
    const last = out[out.length - 1];
    if (last && last[1] === red) last[0] *= d;
    else out.push([d, red]);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// kernels

function rowCode(kind: ReduceKind, vec: boolean, subgroups: boolean): string {
  const WG = ROW_WORKGROUP;
  const isMax = kind === 'max';
  const load = vec ? `x4[p.R / 4u * row + j]` : `x[p.R * row + j]`;
  const first = isMax ? '-3.4028234663852886e38' : '0.0';
  const accT = vec && !isMax ? 'vec4<f32>' : 'f32';
  const step = isMax
    ? `let v = ${load}; if (v > acc) { acc = v; ai = i32(j); }`
    : `acc += ${load};`;
  const finish = vec && !isMax ? 'let total = acc.x + acc.y + acc.z + acc.w;' : 'let total = acc;';
  // combining two (value, index) pairs: larger value, or the earlier index on ties
  const combine = subgroups
    ? isMax
      ? `let m = subgroupMax(total);
  let mi = subgroupMin(select(0x7fffffff, ai, total == m));
  if (sid == 0u) { sh[lid / ssz] = m; shi[lid / ssz] = mi; }
  workgroupBarrier();
  if (lid == 0u) {
    var best = sh[0]; var bi = shi[0];
    for (var k = 1u; k < ${WG}u / ssz; k++) { if (sh[k] > best || (sh[k] == best && shi[k] < bi)) { best = sh[k]; bi = shi[k]; } }
    out[w] = best; idx[w] = bi;
  }`
      : `let sg = subgroupAdd(total);
  if (sid == 0u) { sh[lid / ssz] = sg; }
  workgroupBarrier();
  if (lid == 0u) {
    var t = 0.0;
    for (var k = 0u; k < ${WG}u / ssz; k++) { t += sh[k]; }
    out[w] = t * p.scale;
  }`
    : `sh[lid] = total;${isMax ? ' shi[lid] = ai;' : ''}
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h / 2u) {
    if (lid < h) {
      ${isMax ? `let o = sh[lid + h]; let oi = shi[lid + h];
      if (o > sh[lid] || (o == sh[lid] && oi < shi[lid])) { sh[lid] = o; shi[lid] = oi; }` : 'sh[lid] += sh[lid + h];'}
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[w] = ${isMax ? 'sh[0]; idx[w] = shi[0]' : 'sh[0] * p.scale'}; }`;
  // with subgroups, slot lid / subgroup_size holds one subgroup's result: this assumes subgroups are
  // consecutive runs of local_invocation_index, which holds for 1-D workgroups on the drivers we know of
  // (WGSL does not promise it); subgroups may be as small as 4 lanes, so WG / 4 slots would do
  const shSize = WG;
  return /* wgsl */ `
${subgroups ? 'enable subgroups;' : ''}
@group(0) @binding(0) var<storage, read> ${vec ? 'x4: array<vec4<f32>>' : 'x: array<f32>'};
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${isMax ? '@group(0) @binding(2) var<storage, read_write> idx: array<i32>;' : ''}
struct Params { units: u32, parts: u32, R: u32, chunk: u32, scale: f32 }
@group(0) @binding(${isMax ? 3 : 2}) var<uniform> p: Params;
var<workgroup> sh: array<f32, ${shSize}>;
${isMax ? `var<workgroup> shi: array<i32, ${shSize}>;` : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32${subgroups ? `,
        @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) ssz: u32` : ''}) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.units) { return; }
  let row = w / p.parts;
  let part = w % p.parts;
  let start = part * p.chunk;
  let end = min(start + p.chunk, p.R);
  var acc = ${accT}(${first});
  ${isMax ? 'var ai = 0x7fffffff;' : ''}
  ${vec ? `for (var j = start / 4u + lid; j < end / 4u; j += ${WG}u) { ${step} }` : `for (var j = start + lid; j < end; j += ${WG}u) { ${step} }`}
  ${finish}
  ${combine}
}`;
}

type ColVec = 'none' | 'alongR' | 'alongInner';

function colCode(kind: ReduceKind, vec: ColVec): string {
  const isMax = kind === 'max';
  const T = vec === 'alongInner' ? 'vec4<f32>' : 'f32';
  const I = vec === 'alongInner' ? 'vec4<i32>' : 'i32';
  const inT = vec === 'none' ? 'f32' : 'vec4<f32>';
  // o: output unit (vec4 of outputs for alongInner); element offset of (outer, r, inner) in input units
  const addr =
    vec === 'alongR' ? 'ob * (p.R / 4u) + r' : vec === 'alongInner' ? 'oo * p.R * (p.inner / 4u) + r * (p.inner / 4u) + oi' : 'oo * p.R * p.inner + r * p.inner + oi';
  const step = isMax
    ? `let v = x[${addr}]; let gt = v > acc; acc = select(acc, v, gt); ai = select(ai, ${I}(i32(r)), gt);`
    : `acc += x[${addr}];`;
  const rStart = vec === 'alongR' ? 'start / 4u' : 'start';
  const rEnd = vec === 'alongR' ? 'end / 4u' : 'end';
  const result = vec === 'alongR' ? '(acc.x + acc.y + acc.z + acc.w)' : 'acc';
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<${inT}>;
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
${isMax ? `@group(0) @binding(2) var<storage, read_write> idx: array<${I}>;` : ''}
struct Params { units: u32, m: u32, R: u32, chunk: u32, scale: f32, inner: u32 }
@group(0) @binding(${isMax ? 3 : 2}) var<uniform> p: Params;
@compute @workgroup_size(${COL_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * ${COL_WORKGROUP}u + lid;
  if (t >= p.units) { return; }
  let part = t / p.m;
  let ob = t % p.m;
  ${vec === 'alongInner' ? 'let inner4 = p.inner / 4u; let oo = ob / inner4; let oi = ob % inner4;' : 'let oo = ob / p.inner; let oi = ob % p.inner;'}
  let start = part * p.chunk;
  let end = min(start + p.chunk, p.R);
  var acc = ${vec === 'alongR' ? 'vec4<f32>' : T}(${isMax ? '-3.4028234663852886e38' : '0.0'});
  ${isMax ? `var ai = ${I}(0x7fffffff);` : ''}
  for (var r = ${rStart}; r < ${rEnd}; r++) { ${step} }
  out[t] = ${result}${isMax ? '' : ' * p.scale'};
  ${isMax ? 'idx[t] = ai;' : ''}
}`;
}

interface Pass {
  outer: number;
  R: number;
  inner: number;
}

/** One [outer, R, inner] -> [outer, inner] pass; max also returns the index along R. */
function reducePass(kind: ReduceKind, x: Tensor, ps: Pass, scale: number): { out: Tensor; idx: Tensor | null } {
  const { outer, R, inner } = ps;
  const M = outer * inner;
  const isMax = kind === 'max';
  if (inner === 1 && R >= rowKernelMin()) {
    const vec = !isMax && R % 4 === 0;
    let parts = 1;
    if (!isMax && outer < TARGET_WORKGROUPS && R >= 2 * MIN_ROW_CHUNK) {
      parts = Math.min(Math.ceil(R / MIN_ROW_CHUNK), Math.ceil(TARGET_WORKGROUPS / outer));
    }
    let chunk = Math.ceil(R / parts / 4) * 4;
    parts = Math.ceil(R / chunk);
    if (parts === 1) chunk = R;
    const out = empty(parts > 1 ? [outer, parts] : [outer]);
    const idx = isMax ? empty([outer], 'i32') : null;
    const sg = gpu().hasSubgroups && subgroupOverride !== false;
    rt().dispatch({
      name: `${kind} rows`,
      code: rowCodeMemo(kind, vec, sg),
      bindings: [x.read(`${kind} input ${x.describe()}`), out.write(), ...(idx ? [idx.write()] : [])],
      params: [['u32', outer * parts], ['u32', parts], ['u32', R], ['u32', chunk], ['f32', parts > 1 ? 1 : scale]],
      workgroups: grid1D(outer * parts),
    });
    if (parts === 1) return { out, idx };
    const second = reducePass('sum', out, { outer, R: parts, inner: 1 }, scale);
    out.dispose();
    return second;
  }
  const vec: ColVec = inner % 4 === 0 ? 'alongInner' : inner === 1 && R % 4 === 0 && !isMax ? 'alongR' : 'none';
  const units = vec === 'alongInner' ? M / 4 : M;
  let parts = 1;
  if (!isMax && units < TARGET_INVOCATIONS && R >= 2 * MIN_COL_CHUNK) {
    parts = Math.min(Math.ceil(R / MIN_COL_CHUNK), Math.ceil(TARGET_INVOCATIONS / units));
  }
  let chunk = Math.ceil(R / parts / 4) * 4;
  parts = Math.ceil(R / chunk);
  if (parts === 1) chunk = R;
  const out = empty(parts > 1 ? [parts, M] : [M]);
  const idx = isMax ? empty([M], 'i32') : null;
  const params: Param[] = [['u32', units * parts], ['u32', units], ['u32', R], ['u32', chunk], ['f32', parts > 1 ? 1 : scale], ['u32', inner]];
  rt().dispatch({
    name: `${kind} columns`,
    code: colCodeMemo(kind, vec),
    bindings: [x.read(`${kind} input ${x.describe()}`), out.write(), ...(idx ? [idx.write()] : [])],
    params,
    workgroups: grid1D(Math.ceil((units * parts) / COL_WORKGROUP)),
  });
  if (parts === 1) return { out, idx };
  const second = reducePass('sum', out, { outer: 1, R: parts, inner: M }, scale);
  out.dispose();
  return second;
}

function outShape(shape: Shape, axes: number[], keepDims: boolean): number[] {
  return keepDims ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Sum (or mean) over the axes without autograd. */
function sumRaw(x: Tensor, axes: number[], keepDims: boolean, mean: boolean): Tensor {
  const shapeOut = outShape(x.shape, axes, keepDims);
  const count = axes.reduce((a, i) => a * x.shape[i]!, 1);
  if (x.size === 0 || count === 0) {
    // sum over nothing is 0 (mean NaN, as PyTorch)
    return full(shapeOut, mean ? NaN : 0);
  }
  let gs = groups(x.shape, axes);
  let cur = x;
  let nReduce = gs.filter((g) => g[1]).length;
  if (nReduce === 0) {
    const out = empty(shapeOut);
    rt().copy(x.buffer, 0, out.buffer, 0, x.bytes);
    return out;
  }
  while (nReduce > 0) {
    let k = gs.length - 1;
    while (!gs[k]![1]) k--;
    const outer = gs.slice(0, k).reduce((a, g) => a * g[0], 1);
    const inner = gs.slice(k + 1).reduce((a, g) => a * g[0], 1);
    const R = gs[k]![0];
    nReduce--;
    // mean scales once, in the last pass: one rounding of 1/count and one of the product
    const { out } = reducePass('sum', cur, { outer, R, inner }, mean && nReduce === 0 ? 1 / count : 1);
    if (cur !== x) cur.dispose();
    cur = out;
    gs = [...gs.slice(0, k), ...gs.slice(k + 1)];
    // neighbours of the removed group may now merge
    const merged: Array<[number, boolean]> = [];
    for (const g of gs) {
      const last = merged[merged.length - 1];
      if (last && last[1] === g[1]) last[0] *= g[0];
      else merged.push([g[0], g[1]]);
    }
    gs = merged;
  }
  return cur.shape.join() === shapeOut.join() ? cur : reshapeOwned(cur, shapeOut);
}

/** A reshaped handle that takes over `t` (which is disposed). */
function reshapeOwned(t: Tensor, shape: Shape): Tensor {
  const r = t.reshape(shape);
  t.dispose();
  return r;
}

function checkF32(op: string, x: Tensor): void {
  if (x.disposed) throw new Error(`${op}: input is a disposed tensor [${x.shape.join(', ')}]`);
  if (x.dtype !== 'f32') throw new TypeError(`${op}: input is ${x.describe()}; expected f32`);
}

/** Sum over `axes` (all when omitted or null); negative axes count from the end. */
export function sum(x: Tensor, axes?: number | number[] | null, keepDims = false): Tensor {
  checkF32('sum', x);
  const ax = normAxes('sum', x, axes);
  const out = sumRaw(x, ax, keepDims, false);
  const inShape = x.shape;
  const kept = outShape(inShape, ax, true);
  return recordOp('sum', [x], out, [], (g) => [broadcastTo(g.reshape(kept), inShape)]);
}

/** Mean over `axes` (all when omitted or null). */
export function mean(x: Tensor, axes?: number | number[] | null, keepDims = false): Tensor {
  checkF32('mean', x);
  const ax = normAxes('mean', x, axes);
  const out = sumRaw(x, ax, keepDims, true);
  const inShape = x.shape;
  const kept = outShape(inShape, ax, true);
  const count = ax.reduce((a, i) => a * inShape[i]!, 1);
  return recordOp('mean', [x], out, [], (g) => {
    const gk = g.reshape(kept);
    const r = ewDispatch('mean backward', [{ t: gk, name: 'g' }], 'g * s', 1 / count, inShape);
    gk.dispose();
    return [r];
  });
}

/** Max over one axis (all axes when omitted); the gradient goes to the first maximal element, as PyTorch.
 * NaN inputs are not propagated (unlike PyTorch). */
export function max(x: Tensor, axis?: number | null, keepDims = false): Tensor {
  return maxWithIndex(x, axis, keepDims).values;
}

/** Max and the index of its first occurrence along the axis (flat index for a full reduction). */
export function maxWithIndex(x: Tensor, axis?: number | null, keepDims = false): { values: Tensor; indices: Tensor } {
  checkF32('max', x);
  if (x.size === 0) throw new RangeError(`max: empty input ${x.describe()}`);
  const ax = normAxes('max', x, axis ?? null);
  const shapeOut = outShape(x.shape, ax, keepDims);
  const gs = groups(x.shape, ax);
  let outer = 1, R = 1, inner = 1;
  let seen = false;
  for (const [d, red] of gs) {
    if (red) {
      if (seen && R > 1) throw new RangeError(`max: axes [${ax}] of ${x.describe()} are not adjacent; reduce one at a time`);
      R *= d;
      seen = true;
    } else if (seen) inner *= d;
    else outer *= d;
  }
  const { out, idx } = reducePass('max', x, { outer, R, inner }, 1);
  const values = reshapeOwned(out, shapeOut);
  const indices = reshapeOwned(idx!, shapeOut);
  const inShape = x.shape;
  recordOp('max', [x], values, [indices], (g, [ix]) => [maxBackward(g, ix!, inShape, { outer, R, inner })]);
  return { values, indices };
}

function maxBackward(g: Tensor, idx: Tensor, shape: Shape, ps: Pass): Tensor {
  const out = empty(shape);
  const n = out.size;
  rt().dispatch({
    name: 'max backward',
    code: /* wgsl */ `
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct Params { n: u32, R: u32, inner: u32 }
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (e >= p.n) { return; }
  let i = e % p.inner;
  let r = (e / p.inner) % p.R;
  let o = e / (p.inner * p.R) * p.inner + i;
  out[e] = select(0.0, g[o], idx[o] == i32(r));
}`,
    bindings: [g.read(), idx.read(), out.write()],
    params: [['u32', n], ['u32', ps.R], ['u32', ps.inner]],
    workgroups: grid1D(Math.ceil(n / 256)),
  });
  return out;
}

/** Sums `x` down to `shape`, which broadcasts to x's shape: the backward of broadcasting. */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  checkF32('sumTo', x);
  const b = broadcastShapes('sumTo', [shape, x.shape]);
  if (b.join() !== x.shape.join()) {
    throw new RangeError(`sumTo: [${shape.join(', ')}] does not broadcast to ${x.describe()}`);
  }
  const lead = x.rank - shape.length;
  const axes = x.shape.map((_, i) => i).filter((i) => i < lead || (shape[i - lead] === 1 && x.shape[i] !== 1));
  const s = sum(x, axes, true);
  if (s.shape.join() === [...shape].join()) return s;
  const r = s.reshape(shape);
  s.dispose();
  return r;
}

/** Copies `x` broadcast to `shape` (NumPy rules); its backward sums back. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  const s = broadcastShapes('broadcastTo', [x.shape, shape]);
  if (s.join() !== [...shape].join()) {
    throw new RangeError(`broadcastTo: [${x.shape.join(', ')}] does not broadcast to [${shape.join(', ')}]`);
  }
  const y = ewDispatch('broadcastTo', [{ t: x, name: 'x' }], 'x', 0, s);
  const inShape = x.shape;
  return recordOp('broadcastTo', [x], y, [], (g) => [sumTo(g, inShape)]);
}

// ---------------------------------------------------------------------------------------------------------
// CPU reference

/** float64 sum / mean / max over axes, keepDims shape; max also gives the first argmax along the axes. */
export function reduceRef(
  kind: 'sum' | 'mean' | 'max',
  data: ArrayLike<number>,
  shape: Shape,
  axes: number[] | null,
  keepDims = false,
): { data: Float64Array; shape: number[]; argmax?: Int32Array } {
  const ax = axes === null ? shape.map((_, i) => i) : axes.map((a) => (a < 0 ? a + shape.length : a));
  const oshape = shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const on = oshape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(on).fill(kind === 'max' ? -Infinity : 0);
  const arg = new Int32Array(on).fill(-1);
  const rcount = new Int32Array(on);
  const idx = new Array<number>(shape.length).fill(0);
  const n = shape.reduce((a, b) => a * b, 1);
  for (let e = 0; e < n; e++) {
    let o = 0;
    let r = 0;
    for (let d = 0; d < shape.length; d++) {
      o = o * oshape[d]! + (ax.includes(d) ? 0 : idx[d]!);
      if (ax.includes(d)) r = r * shape[d]! + idx[d]!;
    }
    const v = data[e]!;
    if (kind === 'max') {
      if (v > out[o]!) {
        out[o] = v;
        arg[o] = r;
      }
    } else out[o] += v;
    rcount[o]!++;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  if (kind === 'mean') for (let o = 0; o < on; o++) out[o] = out[o]! / rcount[o]!;
  const finalShape = keepDims ? oshape : shape.filter((_, i) => !ax.includes(i));
  return { data: out, shape: finalShape, ...(kind === 'max' ? { argmax: arg } : {}) };
}

// each source built once per argument set (wgsl-memo.ts)
const rowCodeMemo = memoWgsl(rowCode);
const colCodeMemo = memoWgsl(colCode);
