// RMSNorm exactly as Hugging Face's `T5LayerNorm`: variance = mean(x²) over the last axis (no mean subtraction,
// no bias), y = weight * (x * rsqrt(variance + eps)). The forward saves rstd = rsqrt(variance + eps) per row
// (as llm.c does) so the backward does not recompute the reduction:
//   g = weight ⊙ dy,  dx = rstd ⋅ (g − x ⋅ rstd² ⋅ mean(g ⊙ x)),  dweight = Σ_rows dy ⊙ x ⋅ rstd.
// The weight gradient is a column reduction over rows, done without atomics in a fixed order (partial sums over
// chunks of rows, then over chunks), so it is deterministic.
import { recordOp } from './record-op.ts';
import { rt } from '../engine/runtime.ts';
import { empty, zeros, type Tensor } from '../engine/tensor.ts';
import { columnSums } from './column-sums.ts';
import { normGradRows, normRows, type NormOptions } from './norm-rows.ts';
import {
  rowChunks, rowKernelCode, rowLeader, rowRange, rowSum, rowWorkgroups, vecType, type RowImpl, type StorageDecl,
} from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';

function forwardCode(impl: RowImpl, w: number): string {
  const T = vecType(w);
  const sq = w === 4 ? 'dot(v, v)' : 'v * v';
  const storage: StorageDecl[] = [
    ['read', 'x', `array<${T}>`], ['read', 'weight', `array<${T}>`], ['read_write', 'y', `array<${T}>`], ['read_write', 'rstdOut', 'array<f32>'],
  ];
  return rowKernelCode(impl, storage, 'rows: u32, n: u32, d: f32, eps: f32, row0: u32', (h) => /* wgsl */ `var ss = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = x[base + j];
    ss += ${sq};
  }
  ${rowSum(impl, 'ss')}
  let rstd = inverseSqrt(ss / p.d + p.eps);
  if (${rowLeader(impl)}) { rstdOut[p.row0 + r] = rstd; }
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    y[base + j] = weight[j] * (x[base + j] * rstd);
  }`);
}

function backwardCode(impl: RowImpl, w: number): string {
  const T = vecType(w);
  const dotf = (a: string, b: string) => (w === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  const storage: StorageDecl[] = [
    ['read', 'x', `array<${T}>`], ['read', 'weight', `array<${T}>`], ['read', 'rstdIn', 'array<f32>'], ['read', 'dy', `array<${T}>`],
    ['read_write', 'dx', `array<${T}>`],
  ];
  return rowKernelCode(impl, storage, 'rows: u32, n: u32, d: f32, row0: u32', (h) => /* wgsl */ `var gx = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    gx += ${dotf('weight[j] * dy[base + j]', 'x[base + j]')};
  }
  ${rowSum(impl, 'gx')}
  let rstd = rstdIn[p.row0 + r];
  let c = rstd * rstd * gx / p.d;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    dx[base + j] = rstd * (weight[j] * dy[base + j] - x[base + j] * c);
  }`);
}

export interface RmsNormResult {
  y: Tensor;
  /** rsqrt(mean(x²) + eps) per row, shape x.shape without the last axis */
  rstd: Tensor;
}

/** T5LayerNorm forward returning the saved statistics too (no autograd recorded). */
export function rmsNormForward(x: Tensor, weight: Tensor, eps: number, opts: NormOptions = {}): RmsNormResult {
  const { D, rows, impl, w } = normRows('rmsNorm', x, [[weight, 'weight']], eps, opts);
  const y = empty(x.shape);
  const rstd = empty(x.shape.slice(0, -1));
  for (const [r0, n] of rowChunks('rmsNorm', rows, D * 4)) {
    rt().dispatch({
      name: 'rmsnorm',
      code: forwardCodeMemo(impl, w),
      bindings: [
        rowRange(x, r0, n, D * 4, false, 'rmsNorm x'), weight.read('rmsNorm weight'),
        rowRange(y, r0, n, D * 4, true, 'rmsNorm y'), rstd.write('rmsNorm rstd'),
      ],
      params: [['u32', n], ['u32', D / w], ['f32', D], ['f32', eps], ['u32', r0]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  return { y, rstd };
}

/** dx and dweight of T5LayerNorm from the forward's rstd. */
export function rmsNormBackward(dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, opts: NormOptions = {}): { dx: Tensor; dweight: Tensor } {
  const { D, rows, impl, w } = normGradRows('rmsNormBackward', dy, x, weight, opts);
  const dx = empty(x.shape);
  if (rows === 0) return { dx, dweight: zeros([D]) }; // a sum over no rows
  for (const [r0, n] of rowChunks('rmsNormBackward', rows, D * 4)) {
    rt().dispatch({
      name: 'rmsnorm_backward',
      code: backwardCodeMemo(impl, w),
      bindings: [
        rowRange(x, r0, n, D * 4, false, 'rmsNorm x'), weight.read('rmsNorm weight'), rstd.read('rmsNorm rstd'),
        rowRange(dy, r0, n, D * 4, false, 'rmsNorm dy'), rowRange(dx, r0, n, D * 4, true, 'rmsNorm dx'),
      ],
      params: [['u32', n], ['u32', D / w], ['f32', D], ['u32', r0]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  const [dweight] = columnSums(
    'rmsnorm_dweight',
    [{ t: dy, kind: 'elem' }, { t: x, kind: 'elem' }, { t: rstd, kind: 'row' }],
    ['e0 * e1 * r2'],
    rows,
    D,
  );
  return { dx, dweight: dweight! };
}

/** Hugging Face `T5LayerNorm`: weight * x * rsqrt(mean(x², last axis) + eps). Differentiable in x and weight. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number, opts: NormOptions = {}): Tensor {
  const { y, rstd } = rmsNormForward(x, weight, eps, opts);
  const out = recordOp('rmsNorm', [x, weight], y, [x, weight, rstd], (g, [xs, ws, rs]) => {
    const { dx, dweight } = rmsNormBackward(g, xs!, ws!, rs!, opts);
    return [dx, dweight];
  });
  rstd.dispose();
  return out;
}

/** Float64 reference of the forward: y and rstd per row. */
export function rmsNormReference(x: ArrayLike<number>, weight: ArrayLike<number>, eps: number): { y: Float64Array; rstd: Float64Array } {
  const D = weight.length;
  const rows = D === 0 ? 0 : x.length / D;
  const y = new Float64Array(x.length);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const s = 1 / Math.sqrt(ss / D + eps);
    rstd[r] = s;
    for (let j = 0; j < D; j++) y[r * D + j] = weight[j]! * (x[r * D + j]! * s);
  }
  return { y, rstd };
}

// each source built once per argument set (wgsl-memo.ts)
const forwardCodeMemo = memoWgsl(forwardCode);
const backwardCodeMemo = memoWgsl(backwardCode);
