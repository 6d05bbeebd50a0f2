// LayerNorm as `torch.nn.functional.layer_norm` over the last axis: mean, biased variance (divide by D),
// y = (x − mean) ⋅ rstd ⋅ weight + bias with rstd = rsqrt(var + eps). The variance is taken around the mean
// in a second pass over the row (the row is still in cache), not as E[x²] − mean², which cancels badly when
// |mean| ≫ std; that pass also sums x − mean, which corrects the first-pass mean for its own rounding
// (the corrected two-pass algorithm of Chan, Golub and LeVeque). The forward saves mean and rstd per row; the backward, with x̂ = (x − mean) ⋅ rstd and
// g = dy ⊙ weight:  dx = rstd ⋅ (g − mean(g) − x̂ ⋅ mean(g ⊙ x̂)),  dweight = Σ_rows dy ⊙ x̂,  dbias = Σ_rows dy.
import { recordOp } from './record-op.ts';
import { rt } from '../engine/runtime.ts';
import { empty, zeros, type Tensor } from '../engine/tensor.ts';
import { columnSums } from './column-sums.ts';
import { normGradRows, normRows, type NormOptions } from './norm-rows.ts';
import {
  hsum, rowChunks, rowKernelCode, rowLeader, rowRange, rowSum, rowWorkgroups, vecType, type RowImpl, type StorageDecl,
} from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';

function forwardCode(impl: RowImpl, w: number): string {
  const T = vecType(w);
  const storage: StorageDecl[] = [
    ['read', 'x', `array<${T}>`], ['read', 'weight', `array<${T}>`], ['read', 'bias', `array<${T}>`], ['read_write', 'y', `array<${T}>`],
    ['read_write', 'meanOut', 'array<f32>'], ['read_write', 'rstdOut', 'array<f32>'],
  ];
  return rowKernelCode(impl, storage, 'rows: u32, n: u32, d: f32, eps: f32, row0: u32', (h) => /* wgsl */ `var sx = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    sx += ${hsum(w, 'x[base + j]')};
  }
  ${rowSum(impl, 'sx')}
  let mean0 = sx / p.d;
  var sc = 0.0;
  var sv = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let c = x[base + j] - ${T}(mean0);
    sc += ${hsum(w, 'c')};
    sv += ${hsum(w, 'c * c')};
  }
  ${rowSum(impl, 'sc')}
  ${rowSum(impl, 'sv')}
  // corrected two-pass: sc/D is the rounding error of the first-pass mean (a long sequential f32 sum)
  let dm = sc / p.d;
  let mean = mean0 + dm;
  let rstd = inverseSqrt(max(sv / p.d - dm * dm, 0.0) + p.eps);
  if (${rowLeader(impl)}) {
    meanOut[p.row0 + r] = mean;
    rstdOut[p.row0 + r] = rstd;
  }
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    y[base + j] = (x[base + j] - ${T}(mean)) * rstd * weight[j] + bias[j];
  }`);
}

function backwardCode(impl: RowImpl, w: number): string {
  const T = vecType(w);
  const storage: StorageDecl[] = [
    ['read', 'x', `array<${T}>`], ['read', 'weight', `array<${T}>`], ['read', 'meanIn', 'array<f32>'], ['read', 'rstdIn', 'array<f32>'],
    ['read', 'dy', `array<${T}>`], ['read_write', 'dx', `array<${T}>`],
  ];
  return rowKernelCode(impl, storage, 'rows: u32, n: u32, d: f32, row0: u32', (h) => /* wgsl */ `let mean = meanIn[p.row0 + r];
  let rstd = rstdIn[p.row0 + r];
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let g = weight[j] * dy[base + j];
    let xh = (x[base + j] - ${T}(mean)) * rstd;
    sg += ${hsum(w, 'g')};
    sgx += ${hsum(w, 'g * xh')};
  }
  ${rowSum(impl, 'sg')}
  ${rowSum(impl, 'sgx')}
  let mg = sg / p.d;
  let mgx = sgx / p.d;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let g = weight[j] * dy[base + j];
    let xh = (x[base + j] - ${T}(mean)) * rstd;
    dx[base + j] = rstd * (g - ${T}(mg) - xh * mgx);
  }`);
}

export interface LayerNormResult {
  y: Tensor;
  /** per-row mean and rsqrt(var + eps), shape x.shape without the last axis */
  mean: Tensor;
  rstd: Tensor;
}

/** layer_norm forward returning the saved statistics too (no autograd recorded). */
export function layerNormForward(x: Tensor, weight: Tensor, bias: Tensor, eps: number, opts: NormOptions = {}): LayerNormResult {
  const { D, rows, impl, w } = normRows('layerNorm', x, [[weight, 'weight'], [bias, 'bias']], eps, opts);
  const y = empty(x.shape);
  const mean = empty(x.shape.slice(0, -1));
  const rstd = empty(x.shape.slice(0, -1));
  for (const [r0, n] of rowChunks('layerNorm', rows, D * 4)) {
    rt().dispatch({
      name: 'layernorm',
      code: forwardCodeMemo(impl, w),
      bindings: [
        rowRange(x, r0, n, D * 4, false, 'layerNorm x'), weight.read('layerNorm weight'), bias.read('layerNorm bias'),
        rowRange(y, r0, n, D * 4, true, 'layerNorm y'), mean.write('layerNorm mean'), rstd.write('layerNorm rstd'),
      ],
      params: [['u32', n], ['u32', D / w], ['f32', D], ['f32', eps], ['u32', r0]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  return { y, mean, rstd };
}

/** dx, dweight, dbias of layer_norm from the forward's mean and rstd. */
function layerNormBackward(
  dy: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, opts: NormOptions = {},
): { dx: Tensor; dweight: Tensor; dbias: Tensor } {
  const { D, rows, impl, w } = normGradRows('layerNormBackward', dy, x, weight, opts);
  const dx = empty(x.shape);
  if (rows === 0) return { dx, dweight: zeros([D]), dbias: zeros([D]) };
  for (const [r0, n] of rowChunks('layerNormBackward', rows, D * 4)) {
    rt().dispatch({
      name: 'layernorm_backward',
      code: backwardCodeMemo(impl, w),
      bindings: [
        rowRange(x, r0, n, D * 4, false, 'layerNorm x'), weight.read('layerNorm weight'), mean.read('layerNorm mean'),
        rstd.read('layerNorm rstd'), rowRange(dy, r0, n, D * 4, false, 'layerNorm dy'), rowRange(dx, r0, n, D * 4, true, 'layerNorm dx'),
      ],
      params: [['u32', n], ['u32', D / w], ['f32', D], ['u32', r0]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  const [dweight, dbias] = columnSums(
    'layernorm_dweight',
    [{ t: dy, kind: 'elem' }, { t: x, kind: 'elem' }, { t: mean, kind: 'row' }, { t: rstd, kind: 'row' }],
    ['e0 * (e1 - r2) * r3', 'e0'],
    rows,
    D,
  );
  return { dx, dweight: dweight!, dbias: dbias! };
}

/** `torch.nn.functional.layer_norm(x, [D], weight, bias, eps)`; differentiable in x, weight and bias. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5, opts: NormOptions = {}): Tensor {
  const { y, mean, rstd } = layerNormForward(x, weight, bias, eps, opts);
  const out = recordOp('layerNorm', [x, weight, bias], y, [x, weight, mean, rstd], (g, [xs, ws, ms, rs]) => {
    const { dx, dweight, dbias } = layerNormBackward(g, xs!, ws!, ms!, rs!, opts);
    return [dx, dweight, dbias];
  });
  mean.dispose();
  rstd.dispose();
  return out;
}

/** Float64 reference of the forward: y, mean and rstd per row. */
export function layerNormReference(
  x: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number>, eps: number,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const D = weight.length;
  const rows = D === 0 ? 0 : x.length / D;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += x[r * D + j]!;
    const m = s / D;
    let v = 0;
    for (let j = 0; j < D; j++) v += (x[r * D + j]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / D + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (let j = 0; j < D; j++) y[r * D + j] = (x[r * D + j]! - m) * rs * weight[j]! + bias[j]!;
  }
  return { y, mean, rstd };
}

// each source built once per argument set (wgsl-memo.ts)
const forwardCodeMemo = memoWgsl(forwardCode);
const backwardCodeMemo = memoWgsl(backwardCode);
