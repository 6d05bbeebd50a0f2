// Fused AdamW: one kernel reads p, g, m, v once and writes p, m, v once (4 reads + 3 writes per element), instead
// of the 5-6 elementwise passes of an unfused update. Two exact formula variants:
//
// 'torch' = torch.optim.AdamW (_single_tensor_adamw, the path PyTorch takes on CPU and the golden fixture's):
//   p ← p·(1 − lr·wd)                       (decay first, from the old p)
//   m ← m·β1 + (1 − β1)·g;  v ← v·β2 + ((1 − β2)·g)·g
//   p ← p + (−lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps)        bc1 = 1 − β1^t, bc2 = 1 − β2^t
// 'hf' = transformers.AdamW with correct_bias=True (optimization.py):
//   m, v as above
//   p ← p + (−step)·m / (sqrt(v) + eps),  step = lr·sqrt(bc2)/bc1   (eps added to sqrt(v), not sqrt(v̂))
//   p ← p + (−lr·wd)·p                    (decay after the Adam update, from the new p)
// The operand order follows PyTorch's CPU kernels (addcmul: self + value·t1·t2, addcdiv: self + value·t1/t2) so
// float32 rounding matches as closely as the GPU allows. Every per-step scalar (lr, bias corrections, decay factor)
// is a uniform: the pipeline is compiled once per variant and reused for every tensor and step.
import { rt, grid1D, type Param } from '../engine/runtime.ts';
import { gpu } from '../engine/gpu.ts';
import { bindingChunks } from '../engine/binding-chunks.ts';
import type { Tensor } from '../engine/tensor.ts';
import { memoWgsl } from './wgsl-memo.ts';

/** Threads per workgroup and vec4s per thread, each thread taking consecutive vec4s. Measured on lavapipe (16.4M
 * elements, noisy 2-core machine): 2 consecutive vec4 per thread in workgroups of 64 ran 2-4x faster than 8
 * workgroup-strided vec4 in workgroups of 256 (the copy kernel's best), presumably because seven streams per
 * element already give each invocation enough work; on a GPU, two adjacent vec4s per thread stay within the same
 * cache lines of the warp's access. */
const WORKGROUP = 64;
const PER_THREAD = 2;

export type AdamWVariant = 'torch' | 'hf';

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  variant: AdamWVariant;
}

/** The per-step scalars, computed in float64 on the host exactly as PyTorch / transformers compute them in Python. */
function adamwScalars(step: number, h: AdamWHyper) {
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  if (h.variant === 'torch') {
    return { decay: 1 - h.lr * h.weightDecay, negStep: -(h.lr / bc1), bc2Sqrt: Math.sqrt(bc2) };
  }
  return { decay: -h.lr * h.weightDecay, negStep: -((h.lr * Math.sqrt(bc2)) / bc1), bc2Sqrt: 1 };
}

/** WGSL for one element type: 'vec4<f32>' for the bulk, 'f32' for a tensor's last size % 4 elements. */
function adamwCode(variant: AdamWVariant, type: 'vec4<f32>' | 'f32'): string {
  const update =
    variant === 'torch'
      ? `let pd = p[i] * u.decay;
    p[i] = pd + u.negStep * mi / (sqrt(vi) / u.bc2Sqrt + u.eps);`
      : `let pa = p[i] + u.negStep * mi / (sqrt(vi) + u.eps);
    p[i] = pa + u.decay * pa;`;
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> p: array<${type}>;
@group(0) @binding(1) var<storage, read> g: array<${type}>;
@group(0) @binding(2) var<storage, read_write> m: array<${type}>;
@group(0) @binding(3) var<storage, read_write> v: array<${type}>;
struct Params {
  start: u32, count: u32,
  beta1: f32, oneMinusBeta1: f32, beta2: f32, oneMinusBeta2: f32,
  eps: f32, decay: f32, negStep: f32, bc2Sqrt: f32,
}
@group(0) @binding(4) var<uniform> u: Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = ((wid.x + wid.y * nwg.x) * ${WORKGROUP}u + lid) * ${PER_THREAD}u;
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let j = base + k;
    if (j >= u.count) { return; }
    let i = u.start + j;
    let gi = g[i];
    let mi = m[i] * u.beta1 + u.oneMinusBeta1 * gi;
    let vi = v[i] * u.beta2 + u.oneMinusBeta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    ${update}
  }
}`;
}

// each source built once per argument set (wgsl-memo.ts)
const cachedCode = memoWgsl(adamwCode);

export interface AdamWKernelOptions {
  /** cap on one binding's bytes; default the adapter's maxStorageBufferBindingSize (tests lower it to force ranges) */
  maxBindingBytes?: number;
}

function checkOperands(op: string, p: Tensor, others: Array<[string, Tensor]>): void {
  for (const [what, t] of [['param', p] as [string, Tensor], ...others]) {
    if (t.disposed) throw new Error(`${op}: ${what} [${t.shape.join(', ')}] is disposed`);
    if (t.dtype !== 'f32') throw new TypeError(`${op}: ${what} must be f32, got ${t.describe()}`);
    if (t.size !== p.size || t.shape.join() !== p.shape.join()) {
      throw new RangeError(`${op}: ${what} [${t.shape.join(', ')}] does not match param [${p.shape.join(', ')}]`);
    }
  }
  const buffers = new Set([p, ...others.map(([, t]) => t)].map((t) => t.buffer));
  if (buffers.size !== others.length + 1) {
    throw new Error(`${op}: param, grad, exp_avg and exp_avg_sq of [${p.shape.join(', ')}] must be distinct buffers`);
  }
}

/**
 * One AdamW step of one parameter tensor, in place: p, m (exp_avg) and v (exp_avg_sq) are overwritten; g is read.
 * `step` is this parameter's step number after incrementing (1 on the first update). Records the kernel only;
 * no readback, no autograd (the caller runs it under noGrad).
 */
export function adamwStep(
  p: Tensor, g: Tensor, m: Tensor, v: Tensor, step: number, h: AdamWHyper, opts: AdamWKernelOptions = {},
): void {
  checkOperands('adamw', p, [['grad', g], ['exp_avg', m], ['exp_avg_sq', v]]);
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`adamw: step must be an integer >= 1, got ${step}`);
  checkHyper(h);
  if (p.size === 0) return;
  const s = adamwScalars(step, h);
  const tail: Param[] = [
    ['f32', h.beta1], ['f32', 1 - h.beta1], ['f32', h.beta2], ['f32', 1 - h.beta2],
    ['f32', h.eps], ['f32', s.decay], ['f32', s.negStep], ['f32', s.bc2Sqrt],
  ];
  const maxBinding = opts.maxBindingBytes ?? gpu().limits.maxStorageBufferBindingSize;
  const n4 = Math.floor(p.size / 4) * 4;
  const parts: Array<[number, number, 1 | 4]> = [[0, n4, 4], [n4, p.size, 1]];
  for (const [first, end, width] of parts) {
    const code = cachedCode(h.variant, width === 4 ? 'vec4<f32>' : 'f32');
    for (const c of bindingChunks(first, end, width, maxBinding)) {
      const bind = (t: Tensor, write: boolean, what: string) => ({ buffer: t.buffer, offset: c.offset, size: c.size, write, what: `${what} ${t.describe()}` });
      rt().dispatch({
        name: `adamw_${h.variant}`,
        code,
        bindings: [bind(p, true, 'param'), bind(g, false, 'grad'), bind(m, true, 'exp_avg'), bind(v, true, 'exp_avg_sq')],
        params: [['u32', c.start], ['u32', c.count], ...tail],
        workgroups: grid1D(Math.ceil(c.count / (WORKGROUP * PER_THREAD))),
      });
    }
  }
}

export function checkHyper(h: AdamWHyper): void {
  const bad = (what: string) => {
    throw new RangeError(`adamw: invalid ${what} (lr ${h.lr}, betas [${h.beta1}, ${h.beta2}], eps ${h.eps}, weight decay ${h.weightDecay})`);
  };
  if (!(h.lr >= 0) || !Number.isFinite(h.lr)) bad('learning rate');
  if (!(h.beta1 >= 0 && h.beta1 < 1) || !(h.beta2 >= 0 && h.beta2 < 1)) bad('betas');
  if (!(h.eps >= 0)) bad('eps');
  if (!(h.weightDecay >= 0)) bad('weight decay');
  if (h.variant !== 'torch' && h.variant !== 'hf') throw new RangeError(`adamw: unknown variant '${String(h.variant)}'`);
}

/**
 * Float64 reference of one step, in place on host arrays (the formulas of the header, in exact arithmetic up to
 * float64 rounding). Tests and benchmarks compare the float32 GPU result against it.
 */
export function adamwReference(
  p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, step: number, h: AdamWHyper,
): void {
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    const mi = h.beta1 * m[i]! + (1 - h.beta1) * gi;
    const vi = h.beta2 * v[i]! + (1 - h.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    if (h.variant === 'torch') {
      const pd = p[i]! * (1 - h.lr * h.weightDecay);
      p[i] = pd - (h.lr / bc1) * mi / (Math.sqrt(vi) / Math.sqrt(bc2) + h.eps);
    } else {
      const pa = p[i]! - ((h.lr * Math.sqrt(bc2)) / bc1) * mi / (Math.sqrt(vi) + h.eps);
      p[i] = pa - h.lr * h.weightDecay * pa;
    }
  }
}
