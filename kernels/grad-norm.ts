// Global L2 norm over many tensors, and gradient clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2):
//   total = ‖(‖g_1‖, …, ‖g_k‖)‖ = sqrt(Σ_i Σ_j g_ij²);  coef = maxNorm / (total + 1e-6);  g ← g·min(coef, 1)
// Everything stays on the GPU: the scale kernels read `total` from its buffer, so clipping needs no readback and
// the caller reads the norm only when it wants to log it.
//
// Accumulation: each tensor gets its own partial sums of squares (one per workgroup: every thread sums PER_THREAD
// vec4s, lane-wise, then a 256-way tree in workgroup memory); a final one-workgroup kernel adds all tensors'
// partials (strided, then a tree) and takes the square root. PyTorch instead takes each tensor's norm and then the
// norm of the norms; summing squares directly skips a sqrt-and-square rounding. All terms are non-negative, so the
// float32 result's relative error is at most (longest chain of additions + 2)·2^-24 on the sum of squares and half
// that on the norm: ≈ (PER_THREAD + 2 + 8 + ⌈partials/256⌉ + 8)·6e-8 — under 3e-6 on the sum for t5-small's 60.5M
// gradients (≈3700 partials), typically far less. Float32 limits: the sum of squares overflows to Infinity when the
// norm exceeds ~1.8e19 (PyTorch's float32 norm has the same limit) and squares below ~1e-19 underflow.
import { rt, grid1D } from '../engine/runtime.ts';
import { gpu } from '../engine/gpu.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import { bindingChunks } from './adamw.ts';

const WORKGROUP = 256;
/** vec4s summed per thread before the tree: enough work per invocation to amortise lavapipe's per-invocation cost
 * (shared/LAVAPIPE.md), few enough that the sequential float32 chain stays short. */
const PER_THREAD = 16;
const SCALE_PER_THREAD = 8;
/** PyTorch's clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6) */
export const CLIP_EPS = 1e-6;

type ElemType = 'vec4<f32>' | 'f32';

function treeReduce(): string {
  return `
  red[lid] = s;
  workgroupBarrier();
  for (var h = ${WORKGROUP / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = red[lid] + red[lid + h]; }
    workgroupBarrier();
  }`;
}

function partialsCode(type: ElemType): string {
  const horizontal = type === 'f32' ? 'acc' : '(acc.x + acc.y) + (acc.z + acc.w)';
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<${type}>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
struct Params { start: u32, count: u32, outBase: u32, groups: u32 }
@group(0) @binding(2) var<uniform> u: Params;
var<workgroup> red: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= u.groups) { return; }
  let base = w * ${WORKGROUP * PER_THREAD}u + lid;
  var acc = ${type}(0.0);
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let j = base + k * ${WORKGROUP}u;
    if (j < u.count) {
      let e = x[u.start + j];
      acc = acc + e * e;
    }
  }
  let s = ${horizontal};${treeReduce()}
  if (lid == 0u) { partials[u.outBase + w] = red[0]; }
}`;
}

const FINAL_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct Params { count: u32 }
@group(0) @binding(2) var<uniform> u: Params;
var<workgroup> red: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < u.count; i += ${WORKGROUP}u) { s = s + partials[i]; }${treeReduce()}
  if (lid == 0u) { out[0] = sqrt(red[0]); }
}`;

function scaleCode(type: ElemType): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> g: array<${type}>;
@group(0) @binding(1) var<storage, read> total: array<f32>;
struct Params { start: u32, count: u32, maxNorm: f32 }
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let c = u.maxNorm / (total[0] + ${CLIP_EPS});
  // torch.clamp(coef, max=1) keeps a NaN coefficient (a NaN gradient poisons every gradient, as in PyTorch); WGSL
  // may assume NaN never occurs, so the test looks at the bits
  let isNan = (bitcast<u32>(c) & 0x7fffffffu) > 0x7f800000u;
  let coef = select(min(c, 1.0), c, isNan);
  if (coef == 1.0) { return; } // not clipping: g·1 = g, so skip the read and write
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * SCALE_PER_THREAD}u + lid;
  for (var k = 0u; k < ${SCALE_PER_THREAD}u; k++) {
    let j = base + k * ${WORKGROUP}u;
    if (j >= u.count) { return; }
    g[u.start + j] = g[u.start + j] * coef;
  }
}`;
}

const codes = new Map<string, string>();
function code(kind: 'partials' | 'scale', type: ElemType): string {
  const key = `${kind}|${type}`;
  let c = codes.get(key);
  if (!c) codes.set(key, (c = kind === 'partials' ? partialsCode(type) : scaleCode(type)));
  return c;
}

export interface GradNormOptions {
  /** cap on one binding's bytes; default the adapter's maxStorageBufferBindingSize (tests lower it) */
  maxBindingBytes?: number;
}

interface Piece {
  t: Tensor;
  type: ElemType;
  offset: number;
  size: number;
  start: number;
  count: number;
  perWorkgroup: number;
}

/** Every tensor cut into vec4 bulk + f32 tail, and into bindings within the binding-size limit. */
function pieces(ts: Tensor[], perThread: number, opts: GradNormOptions): Piece[] {
  const maxBinding = opts.maxBindingBytes ?? gpu().limits.maxStorageBufferBindingSize;
  const out: Piece[] = [];
  for (const t of ts) {
    const n4 = Math.floor(t.size / 4) * 4;
    for (const [first, end, width] of [[0, n4, 4], [n4, t.size, 1]] as const) {
      for (const c of bindingChunks(first, end, width, maxBinding)) {
        out.push({ t, type: width === 4 ? 'vec4<f32>' : 'f32', ...c, perWorkgroup: WORKGROUP * perThread });
      }
    }
  }
  return out;
}

function checkTensors(op: string, ts: Tensor[]): void {
  ts.forEach((t, i) => {
    if (t.disposed) throw new Error(`${op}: tensor ${i} [${t.shape.join(', ')}] is disposed`);
    if (t.dtype !== 'f32') throw new TypeError(`${op}: tensor ${i} must be f32, got ${t.describe()}`);
  });
}

/**
 * The L2 norm of all elements of all tensors, as a scalar f32 tensor (shape []), computed on the GPU without a
 * readback. An empty list (or all-empty tensors) gives 0, as PyTorch.
 */
export function globalNorm(tensors: Iterable<Tensor>, opts: GradNormOptions = {}): Tensor {
  const ts = [...tensors];
  checkTensors('globalNorm', ts);
  const ps = pieces(ts, PER_THREAD, opts);
  const groups = ps.map((p) => Math.ceil(p.count / p.perWorkgroup));
  const total = groups.reduce((a, b) => a + b, 0);
  const partials = empty([Math.max(total, 1)]);
  let outBase = 0;
  ps.forEach((p, i) => {
    rt().dispatch({
      name: 'grad_norm_partials',
      code: code('partials', p.type),
      bindings: [
        { buffer: p.t.buffer, offset: p.offset, size: p.size, write: false, what: p.t.describe() },
        partials.write('partial sums of squares'),
      ],
      params: [['u32', p.start], ['u32', p.count], ['u32', outBase], ['u32', groups[i]!]],
      workgroups: grid1D(groups[i]!),
    });
    outBase += groups[i]!;
  });
  const out = empty([]);
  rt().dispatch({
    name: 'grad_norm_final',
    code: FINAL_CODE,
    bindings: [partials.read('partial sums of squares'), out.write('global norm')],
    params: [['u32', total]],
    workgroups: [1],
  });
  partials.dispose();
  return out;
}

/** Multiplies every tensor in place by min(maxNorm / (norm + 1e-6), 1), reading `norm` (a scalar) on the GPU. */
export function scaleByClipCoef(tensors: Iterable<Tensor>, norm: Tensor, maxNorm: number, opts: GradNormOptions = {}): void {
  const ts = [...tensors];
  checkTensors('clipGradNorm', ts);
  if (norm.size !== 1 || norm.dtype !== 'f32') throw new RangeError(`clipGradNorm: the norm must be one f32, got ${norm.describe()}`);
  if (!(maxNorm >= 0)) throw new RangeError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  for (const p of pieces(ts, SCALE_PER_THREAD, opts)) {
    rt().dispatch({
      name: 'grad_clip_scale',
      code: code('scale', p.type),
      bindings: [
        { buffer: p.t.buffer, offset: p.offset, size: p.size, write: true, what: p.t.describe() },
        norm.read('global norm'),
      ],
      params: [['u32', p.start], ['u32', p.count], ['f32', maxNorm]],
      workgroups: grid1D(Math.ceil(p.count / p.perWorkgroup)),
    });
  }
}

/**
 * torch.nn.utils.clip_grad_norm_(params, maxNorm): the gradients (`.grad`, parameters without one are skipped) are
 * scaled in place so their global L2 norm is at most maxNorm; returns the norm before clipping as a scalar tensor
 * (read it with `await norm.item()` only when logging). No readback happens here.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, opts: GradNormOptions = {}): Tensor {
  if (!(maxNorm >= 0)) throw new RangeError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  const grads: Tensor[] = [];
  for (const p of params) if (p.grad) grads.push(p.grad);
  const norm = globalNorm(grads, opts);
  scaleByClipCoef(grads, norm, maxNorm, opts);
  return norm;
}

/** Float64 reference: the norm of the per-tensor norms (PyTorch's order of operations, in exact-ish arithmetic). */
export function globalNormReference(arrays: Iterable<ArrayLike<number>>): number {
  let s = 0;
  for (const a of arrays) {
    let t = 0;
    for (let i = 0; i < a.length; i++) t += a[i]! * a[i]!;
    s += t;
  }
  return Math.sqrt(s);
}

/** Float64 reference of clipping: the coefficient applied to every gradient (1 when not clipping). */
export function clipCoefReference(norm: number, maxNorm: number): number {
  const c = maxNorm / (norm + CLIP_EPS);
  return Number.isNaN(c) ? c : Math.min(c, 1);
}
