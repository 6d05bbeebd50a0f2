// Softmax over the last axis with an optional additive mask, and its backward; log_softmax (forward only, for
// generation's scores: y = x - m - log(sum(exp(x - m))), the same two reads of the row, a different write).
//
// y = exp(x + mask - m) / sum(exp(x + mask - m)), m = the row's max (PyTorch's numerically stable form).
// Each row is read once to find m and the sum together (online softmax: the running sum is rescaled by
// exp(m_old - m_new) when the max grows) and once more to write y.
//
// -inf: a row that is entirely -inf gives NaN, as `torch.softmax` does. Hugging Face T5 never produces one:
// its masks add `torch.finfo(float32).min` (-3.4028e38), so a fully masked row is a row of very negative but
// finite numbers, and both PyTorch and this kernel give the uniform distribution over it. A row whose leading
// elements are -inf (left padding masked with -inf) must not poison the running sum: the sum only grows once
// the running max is finite.
//
// Row layouts and range binding come from row-kernel.ts; softmax adds a register-cached subgroup body for short rows.
import { recordOp } from './record-op.ts';
import { isGradEnabled } from '../engine/autograd.ts';
import { gpu } from '../engine/gpu.ts';
import { rt, type BufferBinding, type Param } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import {
  defaultRowImpl, hsum, MERGE_FN, NEG_INF, rowChunks, rowHeader, rowKernelCode, rowMergeMaxSum, rowMergeScratch, rowRange, rowSum,
  rowWorkgroups, shaderPrelude, vecType, vecWidth, type RowImpl, type StorageDecl,
} from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';

/** most vectors per lane the subgroup layout keeps in registers, so that the row is read once and each exp is
 * computed once: 16 on GPUs (rows up to 2048 at 32 lanes); 8 on CPU adapters (rows up to 256 on lavapipe),
 * where a lane's vec4 takes 4 of the 16 AVX registers and 16 slots spilled (measured, 4M elements under load:
 * rows of 64/128: 30/30 ms cached against 47-76/41 ms streamed; 256: even; 512: 34-62 ms against 21-33 ms) */
const MAX_CACHED_VECS = 16;
const MAX_CACHED_VECS_CPU = 8;
/** leading (row) dimensions the mask broadcast supports */
const MAX_LEAD_DIMS = 6;

export interface SoftmaxOptions {
  /** additive mask, broadcast against x (right-aligned; its last dim is x's or 1) */
  mask?: Tensor;
  /** kernel layout; default by adapter and row width (tests and benchmarks force one) */
  impl?: RowImpl;
}

function checkF32(op: string, t: Tensor, what: string): void {
  if (t.disposed) throw new Error(`${op}: ${what} is a disposed tensor [${t.shape.join(', ')}]`);
  if (t.dtype !== 'f32') throw new TypeError(`${op}: ${what} must be f32, got ${t.dtype}[${t.shape.join(', ')}]`);
}

interface MaskLayout {
  /** per leading dim of x (outermost first): x's size and the mask's element stride (0 = broadcast) */
  dims: Array<[number, number]>;
  /** 1 when the mask has a full last axis, 0 when it broadcasts one value per row */
  colStride: 0 | 1;
}

function maskLayout(x: Tensor, mask: Tensor): MaskLayout {
  const shapes = `x [${x.shape.join(', ')}] and mask [${mask.shape.join(', ')}]`;
  if (mask.rank > x.rank || x.rank === 0) throw new RangeError(`softmax: mask does not broadcast: ${shapes}`);
  const padded = [...Array(x.rank - mask.rank).fill(1), ...mask.shape] as number[];
  const strides = new Array<number>(x.rank);
  let s = 1;
  for (let d = x.rank - 1; d >= 0; d--) {
    if (padded[d] !== 1 && padded[d] !== x.shape[d]) throw new RangeError(`softmax: mask does not broadcast: ${shapes}`);
    strides[d] = padded[d] === 1 ? 0 : s;
    s *= padded[d]!;
  }
  const dims = x.shape.slice(0, -1).map((n, d) => [n, strides[d]!] as [number, number]);
  // merge leading dims so that masks like [B,1,1,L] against [B,H,Lq,L] need few terms
  const merged: Array<[number, number]> = [];
  for (const [n, st] of dims) {
    if (n === 1) continue;
    const last = merged[merged.length - 1];
    if (last && ((last[1] === 0 && st === 0) || (st !== 0 && last[1] === st * n))) {
      merged[merged.length - 1] = [last[0] * n, st];
    } else merged.push([n, st]);
  }
  if (merged.length > MAX_LEAD_DIMS) throw new RangeError(`softmax: mask broadcast over more than ${MAX_LEAD_DIMS} dims: ${shapes}`);
  return { dims: merged, colStride: strides[x.rank - 1] === 0 && x.shape[x.rank - 1] !== 1 ? 0 : 1 };
}

/** WGSL: `fn maskRow(r) -> u32`, the mask's element offset for row r of x. */
function maskRowFn(layout: MaskLayout): string {
  const terms = layout.dims
    .map((_, i) => layout.dims.length - 1 - i)
    .map((d) => `  off += (rem % p.d${d}) * p.s${d};\n  rem = rem / p.d${d};`)
    .join('\n');
  return `fn maskRow(r: u32) -> u32 {\n  var rem = r;\n  var off = 0u;\n${terms}\n  return off;\n}`;
}

interface Variant {
  impl: RowImpl;
  /** log_softmax: write x - (m + log(sum)) instead of exp(x - m) / sum */
  log: boolean;
  /** vector width: 4 when the row length allows vec4 loads */
  w: 1 | 4;
  /** subgroup layout only: vectors of the row each lane keeps in registers (0: stream the row twice) */
  cached: number;
}

function hmax(w: number, v: string): string {
  return w === 4 ? `max(max(${v}.x, ${v}.y), max(${v}.z, ${v}.w))` : v;
}


function forwardCode(v: Variant, mask: MaskLayout | null): string {
  const T = vecType(v.w);
  const h = rowHeader(v.impl);
  const lead = mask ? mask.dims.map((_, d) => `d${d}: u32, s${d}: u32,`).join(' ') : '';
  let maskDecl = '';
  let maskAt = (_j: string) => '';
  let maskInit = '';
  if (mask) {
    const MT = mask.colStride === 1 ? T : 'f32';
    maskDecl = `@group(0) @binding(1) var<storage, read> mask: array<${MT}>;\n${maskRowFn(mask)}`;
    if (mask.colStride === 1) {
      maskInit = `let mo = maskRow(p.row0 + r) / ${v.w}u;`;
      maskAt = (j) => ` + mask[mo + ${j}]`;
    } else {
      maskInit = `let mv = ${T}(mask[maskRow(p.row0 + r)]);`;
      maskAt = () => ' + mv';
    }
  }
  const outBinding = mask ? 2 : 1;
  const reduce = rowMergeMaxSum(v.impl);
  const pre = shaderPrelude(v.impl);
  return /* wgsl */ `${pre.enable}
@group(0) @binding(0) var<storage, read> x: array<${T}>;
${maskDecl}
@group(0) @binding(${outBinding}) var<storage, read_write> y: array<${T}>;
struct Params { rows: u32, n: u32, ninf: f32, row0: u32, ${lead} }
@group(0) @binding(${outBinding + 1}) var<uniform> p: Params;
${rowMergeScratch(v.impl)}
${MERGE_FN}

@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  ${maskInit}
  ${v.cached ? cachedForwardBody(v, T, maskAt) : streamedForwardBody(v, T, maskAt, reduce)}
  ${h.tail}
}`;
}

/** Two passes over the row in memory: an online (max, sum) pass, then the write pass. */
function streamedForwardBody(v: Variant, T: string, maskAt: (j: string) => string, reduce: string): string {
  const h = rowHeader(v.impl);
  return /* wgsl */ `
  var m = ${NEG_INF};
  var s = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = x[base + j]${maskAt('j')};
    let c = ${hmax(v.w, 'v')};
    if (c > m) {
      s *= rescale(m, c);
      m = c;
    }
    if (m != ${NEG_INF}) {
      s += ${hsum(v.w, `exp(v - ${T}(m))`)};
    }
  }
  ${reduce}
  ${v.log ? 'let ls = m + log(s);' : 'let inv = 1.0 / s;'}
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = x[base + j]${maskAt('j')};
    y[base + j] = ${v.log ? `v - ${T}(ls)` : `exp(v - ${T}(m)) * inv`};
  }`;
}

/** Subgroup layout, short rows: each lane keeps its vectors of the row in registers (slot k holds vector
 * sl + k * sgs; past the row's end, -inf, which adds exp(-inf) = 0), so x and the mask are read once and each
 * exp is computed once. */
function cachedForwardBody(v: Variant, T: string, maskAt: (j: string) => string): string {
  const slots = Array.from({ length: v.cached }, (_, k) => k);
  return /* wgsl */ `
  var m = ${NEG_INF};
  ${slots.map((k) => `let j${k} = sl + ${k}u * sgs;
  var v${k} = ${T}(${NEG_INF});
  if (j${k} < p.n) { v${k} = x[base + j${k}]${maskAt(`j${k}`)}; }
  m = max(m, ${hmax(v.w, `v${k}`)});`).join('\n  ')}
  m = subgroupMax(m);
  var s = 0.0;
  ${slots.map((k) => `let e${k} = exp(v${k} - ${T}(m));
  s += ${hsum(v.w, `e${k}`)};`).join('\n  ')}
  s = subgroupAdd(s);
  ${v.log ? 'let ls = m + log(s);' : 'let inv = 1.0 / s;'}
  ${slots.map((k) => `if (j${k} < p.n) { y[base + j${k}] = ${v.log ? `v${k} - ${T}(ls)` : `e${k} * inv`}; }`).join('\n  ')}`;
}

function backwardCode(v: Variant): string {
  const T = vecType(v.w);
  const storage: StorageDecl[] = [['read', 'y', `array<${T}>`], ['read', 'dy', `array<${T}>`], ['read_write', 'dx', `array<${T}>`]];
  return rowKernelCode(v.impl, storage, 'rows: u32, n: u32', (h) => (v.cached ? cachedBackwardBody(v, T) : /* wgsl */ `var d = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    d += ${hsum(v.w, 'y[base + j] * dy[base + j]')};
  }
  ${rowSum(v.impl, 'd')}
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let yj = y[base + j];
    dx[base + j] = yj * (dy[base + j] - ${T}(d));
  }`));
}

let registerCache: 'auto' | 'on' | 'off' = 'auto';
/** Tests and benchmarks: force the register-cached subgroup kernels on (rows up to MAX_CACHED_VECS vectors per
 * lane) or off; 'auto' caches up to MAX_CACHED_VECS on GPUs and MAX_CACHED_VECS_CPU on CPU adapters. */
export function setSoftmaxRegisterCache(mode: 'auto' | 'on' | 'off'): void {
  registerCache = mode;
}

/** Subgroup layout, short rows: y and dy held in registers between the dot product and the write. */
function cachedBackwardBody(v: Variant, T: string): string {
  const slots = Array.from({ length: v.cached }, (_, k) => k);
  return /* wgsl */ `var d = 0.0;
  ${slots.map((k) => `let j${k} = sl + ${k}u * sgs;
  var y${k} = ${T}(0.0);
  var g${k} = ${T}(0.0);
  if (j${k} < p.n) {
    y${k} = y[base + j${k}];
    g${k} = dy[base + j${k}];
  }
  d += ${hsum(v.w, `y${k} * g${k}`)};`).join('\n  ')}
  d = subgroupAdd(d);
  ${slots.map((k) => `if (j${k} < p.n) { dx[base + j${k}] = y${k} * (g${k} - ${T}(d)); }`).join('\n  ')}`;
}

function variantFor(rowLength: number, impl: RowImpl | undefined, log = false): Variant {
  // a mask with a full last axis stays vec4-aligned: its row strides are multiples of the row length
  const w = vecWidth(rowLength);
  const chosen = impl ?? defaultRowImpl(rowLength);
  let cached = 0;
  if (chosen === 'subgroup' && registerCache !== 'off') {
    const slots = Math.ceil(rowLength / w / (gpu().limits.subgroupMinSize ?? 4));
    const limit = registerCache === 'on' || !gpu().info.isSoftware ? MAX_CACHED_VECS : MAX_CACHED_VECS_CPU;
    if (slots <= limit) cached = slots;
  }
  return { impl: chosen, w, cached, log };
}



/** The forward kernel over every row of x (op: 'softmax' or 'log_softmax'), rows bound in ranges that fit. */
function forwardRows(op: string, x: Tensor, mask: Tensor | undefined, v: Variant): Tensor {
  const L = x.shape[x.rank - 1]!;
  const rows = L === 0 ? 0 : x.size / L;
  const layout = mask ? maskLayout(x, mask) : null;
  const y = empty(x.shape);
  for (const [r0, n] of rowChunks(op, rows, L * 4)) {
    const bindings: BufferBinding[] = [rowRange(x, r0, n, L * 4, false, `${op} x`)];
    if (mask) bindings.push(mask.read(`${op} mask`));
    bindings.push(rowRange(y, r0, n, L * 4, true, `${op} y`));
    const params: Param[] = [['u32', n], ['u32', L / v.w], ['f32', -Infinity], ['u32', r0]];
    for (const [d, st] of layout?.dims ?? []) params.push(['u32', d], ['u32', st]);
    rt().dispatch({ name: op, code: forwardCodeMemo(v, layout), bindings, params, workgroups: rowWorkgroups(v.impl, n) });
  }
  return y;
}

/** Softmax over the last axis of `x`, with an optional additive `mask` broadcast to x. */
export function softmax(x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  checkF32('softmax', x, 'x');
  if (x.rank === 0) throw new RangeError('softmax: x must have at least one axis, got a scalar');
  const { mask } = opts;
  if (mask) checkF32('softmax', mask, 'mask');
  const y = forwardRows('softmax', x, mask, variantFor(x.shape[x.rank - 1]!, opts.impl));
  return recordOp('softmax', [x], y, [y], (g, [ys]) => [softmaxBackward(g, ys!, opts.impl)]);
}

/**
 * `torch.log_softmax(x, -1)` for generation's scores (beam search reads the log-probabilities of every token),
 * so that the exp of each logit runs here instead of on the host. Forward only: it refuses a tensor that would
 * need a gradient. -inf stays -inf; a row of only -inf gives NaN, as in torch.
 */
export function logSoftmax(x: Tensor, opts: { impl?: RowImpl } = {}): Tensor {
  checkF32('logSoftmax', x, 'x');
  if (x.rank === 0) throw new RangeError('logSoftmax: x must have at least one axis, got a scalar');
  if (isGradEnabled() && x.requiresGrad) {
    throw new Error(`logSoftmax: ${x.describe()} requires a gradient, and logSoftmax has none (it serves generation): run it under noGrad`);
  }
  return forwardRows('log_softmax', x, undefined, variantFor(x.shape[x.rank - 1]!, opts.impl, true));
}

/** dx = y ⊙ (dy − Σ dy ⊙ y) per row, from the forward's output y. */
export function softmaxBackward(dy: Tensor, y: Tensor, impl?: RowImpl): Tensor {
  checkF32('softmaxBackward', dy, 'dy');
  checkF32('softmaxBackward', y, 'y');
  if (dy.shape.join() !== y.shape.join()) {
    throw new RangeError(`softmaxBackward: dy [${dy.shape.join(', ')}] and y [${y.shape.join(', ')}] differ`);
  }
  const L = y.shape[y.rank - 1]!;
  const rows = L === 0 ? 0 : y.size / L;
  const dx = empty(y.shape);
  const v = variantFor(L, impl);
  for (const [r0, n] of rowChunks('softmaxBackward', rows, L * 4)) {
    rt().dispatch({
      name: 'softmax_backward',
      code: backwardCodeMemo(v),
      bindings: [
        rowRange(y, r0, n, L * 4, false, 'softmax y'), rowRange(dy, r0, n, L * 4, false, 'softmax dy'),
        rowRange(dx, r0, n, L * 4, true, 'softmax dx'),
      ],
      params: [['u32', n], ['u32', L / v.w]],
      workgroups: rowWorkgroups(v.impl, n),
    });
  }
  return dx;
}

/** Float64 reference: softmax of x (+ mask broadcast, given as its full expansion or undefined). */
export function softmaxReference(x: ArrayLike<number>, rowLength: number, mask?: (i: number) => number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r * rowLength < x.length; r++) {
    const o = r * rowLength;
    let m = -Infinity;
    for (let j = 0; j < rowLength; j++) m = Math.max(m, x[o + j]! + (mask ? mask(o + j) : 0));
    let s = 0;
    for (let j = 0; j < rowLength; j++) s += (out[o + j] = Math.exp(x[o + j]! + (mask ? mask(o + j) : 0) - m));
    for (let j = 0; j < rowLength; j++) out[o + j]! /= s;
  }
  return out;
}

/** Float64 reference of logSoftmax: x - m - log(sum(exp(x - m))) per row. */
export function logSoftmaxReference(x: ArrayLike<number>, rowLength: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += rowLength) {
    let m = -Infinity;
    for (let j = 0; j < rowLength; j++) m = Math.max(m, x[o + j]!);
    let s = 0;
    for (let j = 0; j < rowLength; j++) s += Math.exp(x[o + j]! - m);
    for (let j = 0; j < rowLength; j++) out[o + j] = x[o + j]! - m - Math.log(s);
  }
  return out;
}

/** For references: the mask value at each flat index of x, by right-aligned broadcasting. */
export function broadcastIndexer(xShape: readonly number[], mask: ArrayLike<number>, maskShape: readonly number[]): (i: number) => number {
  const padded = [...Array(xShape.length - maskShape.length).fill(1), ...maskShape] as number[];
  return (i) => {
    let off = 0;
    let stride = 1;
    let rem = i;
    for (let d = xShape.length - 1; d >= 0; d--) {
      const c = rem % xShape[d]!;
      rem = Math.floor(rem / xShape[d]!);
      if (padded[d] !== 1) off += c * stride;
      stride *= padded[d]!;
    }
    return mask[off]!;
  };
}

// each source built once per argument set (wgsl-memo.ts)
const forwardCodeMemo = memoWgsl(forwardCode);
const backwardCodeMemo = memoWgsl(backwardCode);
