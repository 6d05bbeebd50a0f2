// Global L2 norm over many tensors, and gradient clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2):
//   total = ‖(‖g_1‖, …, ‖g_k‖)‖ = sqrt(Σ_i Σ_j g_ij²);  coef = maxNorm / (total + 1e-6);  g ← g·min(coef, 1)
// Everything stays on the GPU: the scale kernels read `total` from its buffer, so clipping needs no readback and
// the caller reads the norm only when it wants to log it.
//
// Accumulation, in float32: every thread sums the squares of PER_THREAD consecutive vec4s (lane-wise, then the
// four lanes) into its own partial, one partial slot range per tensor; levels of the same kernel then sum
// PER_THREAD_F32 consecutive partials each until at most FINAL_MAX remain, and one workgroup adds those (strided,
// then a tree) and takes the square root. PyTorch instead takes each tensor's norm and then the norm of the norms;
// summing squares directly skips a sqrt-and-square rounding. Every term is non-negative, so the relative error of
// the sum of squares is at most (longest chain of additions + 1)·2^-24 and half that on the norm: for t5-small's
// 60.5M gradients the chain is 16 + 2 (first level) + 64 (second) + 64 + 8 (final) ≈ 155 → ≤ 9e-6 on the sum,
// 4.6e-6 on the norm, worst case; rounding errors of random sign make the typical error ~1e-7. Float32 limits:
// the sum of squares overflows to Infinity when the norm exceeds ~1.8e19 (PyTorch's float32 norm has the same
// limit), and squares below ~1e-38 may be flushed to zero by the GPU.
//
// Lavapipe measurements (16.4M elements, noisy 2-core machine) chose the layout: threads summing consecutive vec4s
// without workgroup barriers ran 2-3x faster than a 256-thread workgroup tree per partial (barriers are coroutine
// switches on a CPU driver, shared/LAVAPIPE.md). On a real GPU, 256 contiguous bytes per thread do not coalesce
// across a warp, so hardware adapters get the workgroup-strided layout (same partial structure, same error bound;
// both layouts are tested here, only lavapipe's is timed).
import { rt, grid1D } from '../engine/runtime.ts';
import { gpu } from '../engine/gpu.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import { bindingChunks } from '../engine/binding-chunks.ts';
import { memoWgsl } from './wgsl-memo.ts';

const WORKGROUP = 64;
/** vec4s (first level) or floats (later levels) summed per thread */
const PER_THREAD = 16;
const PER_THREAD_F32 = 64;
/** partials the final one-workgroup kernel takes (FINAL_WORKGROUP threads, 64 each at most) */
const FINAL_WORKGROUP = 256;
const FINAL_MAX = FINAL_WORKGROUP * 64;
/** the clip-scale kernel: the AdamW kernel's layout (two consecutive vec4 per thread) */
const SCALE_WORKGROUP = 64;
const SCALE_PER_THREAD = 2;
/** PyTorch's clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6) */
const CLIP_EPS = 1e-6;

type ElemType = 'vec4<f32>' | 'f32';

/** 'contiguous': thread t sums elements [t·per, (t+1)·per), fastest on lavapipe; 'strided': the threads of a
 * workgroup read adjacent elements at each step (coalesced on a GPU), so a workgroup's WORKGROUP partials cover
 * [w·WORKGROUP·per, (w+1)·WORKGROUP·per). */
export type NormLayout = 'contiguous' | 'strided';

function partialsCode(type: ElemType, layout: NormLayout): string {
  const per = type === 'f32' ? PER_THREAD_F32 : PER_THREAD;
  const horizontal = type === 'f32' ? 'acc' : '(acc.x + acc.y) + (acc.z + acc.w)';
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<${type}>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
struct Params { start: u32, count: u32, outBase: u32, threads: u32, square: u32 }
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * ${WORKGROUP}u + lid;
  if (t >= u.threads) { return; }
  let base = ${layout === 'contiguous' ? `t * ${per}u` : `(t - lid) * ${per}u + lid`};
  var acc = ${type}(0.0);
  for (var k = 0u; k < ${per}u; k++) {
    let j = base + k${layout === 'contiguous' ? '' : ` * ${WORKGROUP}u`};
    if (j >= u.count) { break; }
    let e = x[u.start + j];
    acc = acc + select(e, e * e, u.square != 0u);
  }
  partials[u.outBase + t] = ${horizontal};
}`;
}

const FINAL_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct Params { count: u32 }
@group(0) @binding(2) var<uniform> u: Params;
var<workgroup> red: array<f32, ${FINAL_WORKGROUP}>;

@compute @workgroup_size(${FINAL_WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < u.count; i += ${FINAL_WORKGROUP}u) { s = s + partials[i]; }
  red[lid] = s;
  workgroupBarrier();
  for (var h = ${FINAL_WORKGROUP / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = red[lid] + red[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[0] = sqrt(red[0]); }
}`;

function scaleCode(type: ElemType): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> g: array<${type}>;
@group(0) @binding(1) var<storage, read> total: array<f32>;
struct Params { start: u32, count: u32, maxNorm: f32 }
@group(0) @binding(2) var<uniform> u: Params;

@compute @workgroup_size(${SCALE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let c = u.maxNorm / (total[0] + ${CLIP_EPS});
  // torch.clamp(coef, max=1) keeps a NaN coefficient (a NaN gradient poisons every gradient, as in PyTorch); WGSL
  // may assume NaN never occurs, so the test looks at the bits
  let isNan = (bitcast<u32>(c) & 0x7fffffffu) > 0x7f800000u;
  let coef = select(min(c, 1.0), c, isNan);
  if (coef == 1.0) { return; } // not clipping: g·1 = g, so skip the read and write
  let base = ((wid.x + wid.y * nwg.x) * ${SCALE_WORKGROUP}u + lid) * ${SCALE_PER_THREAD}u;
  for (var k = 0u; k < ${SCALE_PER_THREAD}u; k++) {
    let j = base + k;
    if (j >= u.count) { return; }
    g[u.start + j] = g[u.start + j] * coef;
  }
}`;
}

// each source built once per argument set (wgsl-memo.ts)
const partialsCodeMemo = memoWgsl(partialsCode);
const scaleCodeMemo = memoWgsl(scaleCode);

export interface GradNormOptions {
  /** cap on one binding's bytes; default the adapter's maxStorageBufferBindingSize (tests lower it) */
  maxBindingBytes?: number;
  /** default: 'contiguous' on a software adapter (lavapipe), 'strided' on a GPU */
  layout?: NormLayout;
}

/** Partial sums (threads) needed for `count` elements at `per` per thread. */
function threadsFor(count: number, per: number, layout: NormLayout): number {
  return layout === 'contiguous' ? Math.ceil(count / per) : Math.ceil(count / (WORKGROUP * per)) * WORKGROUP;
}

interface Piece {
  t: Tensor;
  type: ElemType;
  offset: number;
  size: number;
  start: number;
  count: number;
}

/** Every tensor cut into vec4 bulk + f32 tail, and into bindings within the binding-size limit. */
function pieces(ts: Tensor[], opts: GradNormOptions): Piece[] {
  const maxBinding = opts.maxBindingBytes ?? gpu().limits.maxStorageBufferBindingSize;
  const out: Piece[] = [];
  for (const t of ts) {
    const n4 = Math.floor(t.size / 4) * 4;
    for (const [first, end, width] of [[0, n4, 4], [n4, t.size, 1]] as const) {
      for (const c of bindingChunks(first, end, width, maxBinding)) {
        out.push({ t, type: width === 4 ? 'vec4<f32>' : 'f32', ...c });
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
  const ps = pieces(ts, opts);
  const layout = opts.layout ?? (gpu().info.isSoftware ? 'contiguous' : 'strided');
  const threads = ps.map((p) => threadsFor(p.count, p.type === 'f32' ? PER_THREAD_F32 : PER_THREAD, layout));
  let count = threads.reduce((a, b) => a + b, 0);
  let level = empty([Math.max(count, 1)]);
  let outBase = 0;
  ps.forEach((p, i) => {
    rt().dispatch({
      name: 'grad_norm_partials',
      code: partialsCodeMemo(p.type, layout),
      bindings: [
        { buffer: p.t.buffer, offset: p.offset, size: p.size, write: false, what: p.t.describe() },
        level.write('partial sums of squares'),
      ],
      params: [['u32', p.start], ['u32', p.count], ['u32', outBase], ['u32', threads[i]!], ['u32', 1]],
      workgroups: grid1D(Math.ceil(threads[i]! / WORKGROUP)),
    });
    outBase += threads[i]!;
  });
  while (count > FINAL_MAX) {
    const next = threadsFor(count, PER_THREAD_F32, layout);
    const sums = empty([next]);
    rt().dispatch({
      name: 'grad_norm_partials',
      code: partialsCodeMemo('f32', layout),
      bindings: [level.read('partial sums of squares'), sums.write('partial sums of squares')],
      params: [['u32', 0], ['u32', count], ['u32', 0], ['u32', next], ['u32', 0]],
      workgroups: grid1D(Math.ceil(next / WORKGROUP)),
    });
    level.dispose();
    level = sums;
    count = next;
  }
  const out = empty([]);
  rt().dispatch({
    name: 'grad_norm_final',
    code: FINAL_CODE,
    bindings: [level.read('partial sums of squares'), out.write('global norm')],
    params: [['u32', count]],
    workgroups: [1],
  });
  level.dispose();
  return out;
}

/** Multiplies every tensor in place by min(maxNorm / (norm + 1e-6), 1), reading `norm` (a scalar) on the GPU. */
function scaleByClipCoef(tensors: Iterable<Tensor>, norm: Tensor, maxNorm: number, opts: GradNormOptions = {}): void {
  const ts = [...tensors];
  checkTensors('clipGradNorm', ts);
  if (norm.size !== 1 || norm.dtype !== 'f32') throw new RangeError(`clipGradNorm: the norm must be one f32, got ${norm.describe()}`);
  if (!(maxNorm >= 0)) throw new RangeError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  // backward may hand two parameters handles on one gradient buffer (the rule of x + y returns g for both):
  // scale each buffer once, or it would be scaled twice
  const seen = new Set<GPUBuffer>();
  const distinct = ts.filter((t) => !seen.has(t.buffer) && seen.add(t.buffer));
  for (const p of pieces(distinct, opts)) {
    rt().dispatch({
      name: 'grad_clip_scale',
      code: scaleCodeMemo(p.type),
      bindings: [
        { buffer: p.t.buffer, offset: p.offset, size: p.size, write: true, what: p.t.describe() },
        norm.read('global norm'),
      ],
      params: [['u32', p.start], ['u32', p.count], ['f32', maxNorm]],
      workgroups: grid1D(Math.ceil(p.count / (SCALE_WORKGROUP * SCALE_PER_THREAD))),
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
