// Adafactor (Shazeer & Stern 2018) exactly as transformers' `Adafactor.step` (optimization.py), one parameter at a
// time. With t = the parameter's step, β2t = 1 − t^decay_rate and u2 = g² + eps1:
//   factored (rank 2, [R, C]):  vr ← β2t·vr + (1 − β2t)·mean_c(u2)     (exp_avg_sq_row, [R])
//                               vc ← β2t·vc + (1 − β2t)·mean_r(u2)     (exp_avg_sq_col, [C])
//                               u = (rsqrt(vr_r / mean(vr)) · rsqrt(vc_c)) · g          (_approx_sq_grad)
//   not factored (rank 1):      v ← β2t·v + (1 − β2t)·u2;  u = rsqrt(v) · g
//   u ← u / max(RMS(u) / clip_threshold, 1);  u ← u · lr           RMS(x) = ‖x‖₂ / sqrt(numel)
//   with β1:  m ← β1·m + (1 − β1)·u;  u = m
//   p ← p + (−weight_decay·lr)·p;  p ← p − u
// lr is the given one, or min(1e-2 | 1e-6·t with warmup_init, 1/sqrt(t)) with relative_step; with
// scale_parameter it is multiplied by max(eps2, RMS(p)), p taken before this step's update.
//
// The reductions (row and column means, ‖u‖², ‖p‖², mean(vr)) stay on the GPU in a fixed order (row kernels and
// kernels/column-sums.ts): no readback, the same result every run. Ten small dispatches per matrix, five per vector.
import { grid1D, rt, type Param } from '../engine/runtime.ts';
import { gpu } from '../engine/gpu.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import { columnSums } from './column-sums.ts';
import { defaultRowImpl, rowChunks, rowKernelCode, rowLeader, rowRange, rowSum, rowWorkgroups, vecType, vecWidth, type RowImpl, type StorageDecl } from './row-kernel.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';
import { memoWgsl } from './wgsl-memo.ts';

const WORKGROUP = 64;

export interface AdafactorHyper {
  /** the external learning rate; null with relativeStep */
  lr: number | null;
  /** [eps1 (added to g²), eps2 (floor of the parameter scale)]; HF's default [1e-30, 1e-3] */
  eps: [number, number];
  clipThreshold: number;
  decayRate: number;
  /** null: no first moment (HF's default) */
  beta1: number | null;
  weightDecay: number;
  scaleParameter: boolean;
  relativeStep: boolean;
  warmupInit: boolean;
}

/** HF's `Adafactor.__init__` defaults (note: HF's Trainer passes scale_parameter and relative_step false). */
export const ADAFACTOR_DEFAULTS: AdafactorHyper = {
  lr: null, eps: [1e-30, 1e-3], clipThreshold: 1.0, decayRate: -0.8, beta1: null, weightDecay: 0,
  scaleParameter: true, relativeStep: true, warmupInit: false,
};

/** HF's constructor checks, and ranges that keep the update finite. */
export function checkAdafactorHyper(h: AdafactorHyper): void {
  const bad = (what: string): never => {
    throw new RangeError(`adafactor: ${what}`);
  };
  if (h.lr !== null && h.relativeStep) bad('Cannot combine manual `lr` and `relative_step=True` options');
  if (h.warmupInit && !h.relativeStep) bad('`warmup_init=True` requires `relative_step=True`');
  if (h.lr === null && !h.relativeStep) bad('give a learning rate, or relative_step');
  if (h.lr !== null && !(Number.isFinite(h.lr) && h.lr >= 0)) bad(`invalid learning rate ${h.lr}`);
  if (!(h.eps[0] >= 0 && h.eps[1] >= 0)) bad(`invalid eps [${h.eps}]`);
  if (!(h.clipThreshold > 0)) bad(`invalid clip_threshold ${h.clipThreshold}`);
  if (!(h.decayRate < 0)) bad(`invalid decay_rate ${h.decayRate} (HF's is -0.8: beta2 grows towards 1)`);
  if (h.beta1 !== null && !(h.beta1 >= 0 && h.beta1 < 1)) bad(`invalid beta1 ${h.beta1}`);
  if (!(h.weightDecay >= 0)) bad(`invalid weight decay ${h.weightDecay}`);
}

/** The step size before the parameter scale (HF's `_get_lr` without scale_parameter), in float64 as Python. */
export function relativeStepSize(h: AdafactorHyper, step: number): number {
  if (!h.relativeStep) return h.lr!;
  const minStep = h.warmupInit ? 1e-6 * step : 1e-2;
  return Math.min(minStep, 1 / Math.sqrt(step));
}

/** Whether a parameter of this shape keeps factored second moments (HF: rank >= 2; we take rank 1 and 2). */
export function isFactored(shape: readonly number[]): boolean {
  if (shape.length < 1 || shape.length > 2) throw new RangeError(`adafactor: parameters of rank 1 or 2 only, got [${shape.join(', ')}]`);
  return shape.length === 2;
}

/** One parameter's Adafactor state on the GPU; `m` only with beta1. */
export interface AdafactorSlotTensors {
  /** factored: exp_avg_sq_row [R] and exp_avg_sq_col [C]; else exp_avg_sq (the parameter's shape) */
  vr?: Tensor;
  vc?: Tensor;
  v?: Tensor;
  m?: Tensor;
}

/** vr ← β2t·vr + (1 − β2t)·mean(g² + eps1) over each row (rows of C elements). */
function rowMomentCode(impl: RowImpl, w: number): string {
  const T = vecType(w);
  const sq = w === 4 ? 'dot(x, x) + 4.0 * p.eps1' : 'x * x + p.eps1';
  return rowKernelCode(impl, [['read', 'g', `array<${T}>`], ['read_write', 'vr', 'array<f32>']],
    'rows: u32, n: u32, cols: f32, eps1: f32, beta2t: f32, oneMinusBeta2t: f32', (h) => /* wgsl */ `var s = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let x = g[base + j];
    s += ${sq};
  }
  ${rowSum(impl, 's')}
  if (${rowLeader(impl)}) { vr[r] = vr[r] * p.beta2t + p.oneMinusBeta2t * (s / p.cols); }`);
}

/** Per row: ‖u_r‖² with u = (rsqrt(vr_r / mean(vr)) · rsqrt(vc)) · g, and with scale_parameter ‖p_r‖². */
function rowNormsCode(impl: RowImpl, w: number, paramNorm: boolean): string {
  const T = vecType(w);
  const sq = (v: string) => (w === 4 ? `dot(${v}, ${v})` : `${v} * ${v}`);
  const storage: StorageDecl[] = [
    ['read', 'g', `array<${T}>`], ['read', 'vr', 'array<f32>'], ['read', 'vc', `array<${T}>`], ['read', 'vrSum', 'array<f32>'],
    ['read_write', 'uu', 'array<f32>'],
  ];
  if (paramNorm) storage.push(['read', 'param', `array<${T}>`], ['read_write', 'pp', 'array<f32>']);
  return rowKernelCode(impl, storage, 'rows: u32, n: u32, R: f32', (h) => /* wgsl */ `let rf = inverseSqrt(vr[r] / (vrSum[0] / p.R));
  var su = 0.0;
  var sp = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let u = (rf * inverseSqrt(vc[j])) * g[base + j];
    su += ${sq('u')};
    ${paramNorm ? `let x = param[base + j];
    sp += ${sq('x')};` : ''}
  }
  ${rowSum(impl, 'su')}
  ${paramNorm ? rowSum(impl, 'sp') : ''}
  if (${rowLeader(impl)}) { uu[r] = su;${paramNorm ? ' pp[r] = sp;' : ''} }`);
}

/** v ← β2t·v + (1 − β2t)·x: x = colSum / R (factored vc) or g² + eps1 (the unfactored v). */
function emaCode(source: 'column-mean' | 'grad-square'): string {
  const x = source === 'column-mean' ? 'src[i] / p.R' : 'src[i] * src[i] + p.eps1';
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> v: array<f32>;
struct Params { n: u32, R: f32, eps1: f32, beta2t: f32, oneMinusBeta2t: f32 }
@group(0) @binding(2) var<uniform> p: Params;

${flatGridEntry(WORKGROUP, 'i', 'p.n')}
  v[i] = v[i] * p.beta2t + p.oneMinusBeta2t * (${x});
}`;
}

/** WGSL turning the raw update `raw` of the vector at `at` into p's new value: clip by RMS, the learning rate
 * (scaled by RMS(p) with scale_parameter), the first moment, decay, p ← p − u. Needs `denom` and `lr`. */
function updateTail(T: string, firstMoment: boolean, raw: string, at: string): string {
  return /* wgsl */ `var u: ${T} = (${raw}) / denom;
    u = u * lr;
    ${firstMoment ? `m[${at}] = m[${at}] * p.beta1 + p.oneMinusBeta1 * u;
    u = m[${at}];` : ''}
    var x = param[${at}];
    x = x + (-p.weightDecay * lr) * x;
    param[${at}] = x - u;`;
}

const APPLY_PARAMS = 'R: f32, rootN: f32, clip: f32, lr: f32, eps2: f32, beta1: f32, oneMinusBeta1: f32, weightDecay: f32';

/** WGSL of the clip denominator and the step's learning rate, from the reduced norms. */
function stepScalars(scaleParameter: boolean): string {
  const lr = scaleParameter ? 'max(p.eps2, sqrt(ppSum[0]) / p.rootN) * p.lr' : 'p.lr';
  return `let denom = max((sqrt(uuSum[0]) / p.rootN) / p.clip, 1.0);
  let lr = ${lr};`;
}

/** The update of a factored [R, C] parameter as a row kernel: each row's factor and the step's scalars are loaded
 * once per row and lane, not per element (lavapipe gathers every load lane by lane; t5-small, replayed: 125 -> 85 ms). */
function applyRowsCode(impl: RowImpl, w: number, firstMoment: boolean, scaleParameter: boolean): string {
  const T = vecType(w);
  const storage: StorageDecl[] = [
    ['read_write', 'param', `array<${T}>`], ['read', 'g', `array<${T}>`], ['read', 'vr', 'array<f32>'], ['read', 'vc', `array<${T}>`],
    ['read', 'vrSum', 'array<f32>'], ['read', 'uuSum', 'array<f32>'],
  ];
  // bound only when read: a pipeline's layout leaves out what its shader does not use
  if (scaleParameter) storage.push(['read', 'ppSum', 'array<f32>']);
  if (firstMoment) storage.push(['read_write', 'm', `array<${T}>`]);
  return rowKernelCode(impl, storage, `rows: u32, n: u32, ${APPLY_PARAMS}`, (h) => /* wgsl */ `let rf = inverseSqrt(vr[r] / (vrSum[0] / p.R));
  ${stepScalars(scaleParameter)}
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    ${updateTail(T, firstMoment, '(rf * inverseSqrt(vc[j])) * g[base + j]', 'base + j')}
  }`);
}

/** The update of an unfactored (vector) parameter, one vector of w per invocation. */
function applyVectorCode(w: number, firstMoment: boolean, scaleParameter: boolean): string {
  const T = vecType(w);
  const decl = (i: number, access: string, name: string, type = T) => `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${type}>;`;
  const bindings = [decl(0, 'read_write', 'param'), decl(1, 'read', 'g'), decl(2, 'read', 'v'), decl(3, 'read', 'uuSum', 'f32')];
  if (scaleParameter) bindings.push(decl(bindings.length, 'read', 'ppSum', 'f32'));
  if (firstMoment) bindings.push(decl(bindings.length, 'read_write', 'm'));
  return /* wgsl */ `
${bindings.join('\n')}
struct Params { n: u32, ${APPLY_PARAMS} }
@group(0) @binding(${bindings.length}) var<uniform> p: Params;

${flatGridEntry(WORKGROUP, 'i', 'p.n')}
  ${stepScalars(scaleParameter)}
  ${updateTail(T, firstMoment, 'inverseSqrt(v[i]) * g[i]', 'i')}
}`;
}

const rowMomentMemo = memoWgsl(rowMomentCode);
const rowNormsMemo = memoWgsl(rowNormsCode);
const emaMemo = memoWgsl(emaCode);
const applyRowsMemo = memoWgsl(applyRowsCode);
const applyVectorMemo = memoWgsl(applyVectorCode);

function checkOperand(what: string, t: Tensor | undefined, shape: readonly number[]): Tensor {
  if (!t) throw new Error(`adafactor: ${what} is missing`);
  if (t.disposed) throw new Error(`adafactor: ${what} is disposed`);
  if (t.dtype !== 'f32' || t.shape.join() !== shape.join()) {
    throw new RangeError(`adafactor: ${what} ${t.describe()} does not fit [${shape.join(', ')}]`);
  }
  return t;
}

/**
 * One Adafactor step of one parameter, in place (p and the state tensors); g is read. `step` is the parameter's
 * step after incrementing (1 on the first update). Records kernels only: no readback, no autograd.
 */
export function adafactorStep(p: Tensor, g: Tensor, s: AdafactorSlotTensors, step: number, h: AdafactorHyper): void {
  checkAdafactorHyper(h);
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`adafactor: step must be an integer >= 1, got ${step}`);
  const factored = isFactored(p.shape);
  checkOperand('grad', g, p.shape);
  // a matrix over one binding (mT5's 250,112 x 512 embedding, 489 MiB) is walked a range of rows at a time; a vector
  // that large does not occur in T5
  if (!factored && p.bytes > gpu().limits.maxStorageBufferBindingSize) {
    throw new RangeError(`adafactor: parameter ${p.describe()} is larger than one storage binding (${gpu().limits.maxStorageBufferBindingSize} bytes)`);
  }
  if (h.beta1 !== null) checkOperand('exp_avg', s.m, p.shape);
  const n = p.size;
  if (n === 0) return;
  const beta2t = 1 - step ** h.decayRate;
  const ema: Param[] = [['f32', beta2t], ['f32', 1 - beta2t]];
  const [eps1, eps2] = h.eps;
  const temps: Tensor[] = [];
  let uuSum: Tensor;
  let ppSum: Tensor | undefined;
  // the apply kernel's vectors: vec4 along rows (and the unfactored vector) when their lengths allow it
  const w = vecWidth(factored ? p.shape[1]! : n);
  let vectorState: ReturnType<Tensor['read']>[] = [];
  let matrixState: { vr: Tensor; vc: Tensor; vrSum: Tensor } | null = null;
  if (factored) {
    const [R, C] = p.shape as [number, number];
    const vr = checkOperand('exp_avg_sq_row', s.vr, [R]);
    const vc = checkOperand('exp_avg_sq_col', s.vc, [C]);
    const impl = defaultRowImpl(C);
    for (const [r0, nr] of matrixRows(R, C)) {
      rt().dispatch({
        name: 'adafactor_row_moments',
        code: rowMomentMemo(impl, w),
        bindings: [rowRange(g, r0, nr, 4 * C, false, 'adafactor grad'), rowRange(vr, r0, nr, 4, true, 'adafactor exp_avg_sq_row')],
        params: [['u32', nr], ['u32', C / w], ['f32', C], ['f32', eps1], ...ema],
        workgroups: rowWorkgroups(impl, nr),
      });
    }
    const [colSum] = columnSums('adafactor_col', [{ t: g, kind: 'elem' }], [`e0 * e0 + ${wgslFloat(eps1)}`], R, C);
    rt().dispatch({
      name: 'adafactor_col_moments',
      code: emaMemo('column-mean'),
      bindings: [colSum!.read('adafactor column sums'), vc.write('adafactor exp_avg_sq_col')],
      params: [['u32', C], ['f32', R], ['f32', eps1], ...ema],
      workgroups: grid1D(Math.ceil(C / WORKGROUP)),
    });
    const [vrSum] = columnSums('adafactor_row_mean', [{ t: vr, kind: 'elem' }], ['e0'], R, 1);
    const uu = empty([R]);
    const pp = h.scaleParameter ? empty([R]) : null;
    for (const [r0, nr] of matrixRows(R, C)) {
      rt().dispatch({
        name: 'adafactor_norms',
        code: rowNormsMemo(impl, w, pp !== null),
        bindings: [
          rowRange(g, r0, nr, 4 * C, false, 'adafactor grad'), rowRange(vr, r0, nr, 4, false, 'adafactor exp_avg_sq_row'),
          vc.read('adafactor exp_avg_sq_col'), vrSum!.read('adafactor row mean'), rowRange(uu, r0, nr, 4, true, 'adafactor |u|² per row'),
          ...(pp ? [rowRange(p, r0, nr, 4 * C, false, 'adafactor param'), rowRange(pp, r0, nr, 4, true, 'adafactor |p|² per row')] : []),
        ],
        // rows of this range; the mean of vr is over all R rows
        params: [['u32', nr], ['u32', C / w], ['f32', R]],
        workgroups: rowWorkgroups(impl, nr),
      });
    }
    const inputs = [{ t: uu, kind: 'elem' as const }, ...(pp ? [{ t: pp, kind: 'elem' as const }] : [])];
    [uuSum, ppSum] = columnSums('adafactor_norms', inputs, pp ? ['e0', 'e1'] : ['e0'], R, 1) as [Tensor, Tensor | undefined];
    temps.push(colSum!, vrSum!, uu, ...(pp ? [pp] : []));
    matrixState = { vr, vc, vrSum: vrSum! };
  } else {
    const v = checkOperand('exp_avg_sq', s.v, p.shape);
    rt().dispatch({
      name: 'adafactor_moments',
      code: emaMemo('grad-square'),
      bindings: [g.read('adafactor grad'), v.write('adafactor exp_avg_sq')],
      params: [['u32', n], ['f32', 1], ['f32', eps1], ...ema],
      workgroups: grid1D(Math.ceil(n / WORKGROUP)),
    });
    [uuSum, ppSum] = columnSums('adafactor_norms', [{ t: v, kind: 'elem' }, { t: g, kind: 'elem' }, { t: p, kind: 'elem' }],
      ['(inverseSqrt(e0) * e1) * (inverseSqrt(e0) * e1)', 'e2 * e2'], n, 1) as [Tensor, Tensor];
    vectorState = [v.read('adafactor exp_avg_sq')];
  }
  temps.push(uuSum, ...(ppSum ? [ppSum] : []));
  const beta1 = h.beta1 ?? 0;
  const scalars: Param[] = [
    ['f32', factored ? p.shape[0]! : 1], ['f32', Math.sqrt(n)], ['f32', h.clipThreshold], ['f32', relativeStepSize(h, step)],
    ['f32', eps2], ['f32', beta1], ['f32', 1 - beta1], ['f32', h.weightDecay],
  ];
  const norms = [uuSum.read('adafactor |u|²'), ...(h.scaleParameter ? [ppSum!.read('adafactor |p|²')] : [])];
  if (matrixState) {
    const [R, C] = p.shape as [number, number];
    const { vr, vc, vrSum } = matrixState;
    const impl = defaultRowImpl(C);
    // scalars[0] stays R: the mean of vr is over every row
    for (const [r0, nr] of matrixRows(R, C)) {
      rt().dispatch({
        name: 'adafactor_apply',
        code: applyRowsMemo(impl, w, h.beta1 !== null, h.scaleParameter),
        bindings: [
          rowRange(p, r0, nr, 4 * C, true, 'adafactor param'), rowRange(g, r0, nr, 4 * C, false, 'adafactor grad'),
          rowRange(vr, r0, nr, 4, false, 'adafactor exp_avg_sq_row'), vc.read('adafactor exp_avg_sq_col'), vrSum.read('adafactor row mean'),
          ...norms, ...(h.beta1 !== null ? [rowRange(s.m!, r0, nr, 4 * C, true, 'adafactor exp_avg')] : []),
        ],
        params: [['u32', nr], ['u32', C / w], ...scalars],
        workgroups: rowWorkgroups(impl, nr),
      });
    }
  } else {
    rt().dispatch({
      name: 'adafactor_apply',
      code: applyVectorMemo(w, h.beta1 !== null, h.scaleParameter),
      bindings: [p.write('adafactor param'), g.read('adafactor grad'), ...vectorState, ...norms, ...(h.beta1 !== null ? [s.m!.write('adafactor exp_avg')] : [])],
      params: [['u32', n / w], ...scalars],
      workgroups: grid1D(Math.ceil(n / w / WORKGROUP)),
    });
  }
  for (const t of temps) t.dispose();
}

/**
 * Ranges of a [R, C] matrix's rows, each under one storage binding and starting on a row whose offset in the [R]
 * vectors (exp_avg_sq_row, the per-row norms) is a multiple of 256 bytes, as a binding's offset must be: one range
 * when the matrix fits.
 */
function matrixRows(R: number, C: number): Array<[number, number]> {
  return rowChunks('adafactor', R, 4 * C, ROW_VECTOR_ALIGN_ROWS);
}
/** 256 bytes of f32: the rows between two aligned offsets of an [R] vector. */
const ROW_VECTOR_ALIGN_ROWS = 64;

/** A WGSL f32 literal for x (eps1 goes into column-sums' term as a constant). */
function wgslFloat(x: number): string {
  const s = Math.fround(x).toExponential();
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** Float64 state of one parameter for the reference. */
export interface AdafactorRefState {
  step: number;
  vr?: Float64Array;
  vc?: Float64Array;
  v?: Float64Array;
  m?: Float64Array;
}

/** Float64 reference of one step, in place (HF's formulas of the header, in exact arithmetic up to float64
 * rounding); `shape` is [n] or [R, C]. Creates the state on the first step, as HF does. */
export function adafactorReference(p: Float64Array, g: ArrayLike<number>, shape: readonly number[], s: AdafactorRefState, h: AdafactorHyper): void {
  const n = p.length;
  const factored = isFactored(shape);
  const [R, C] = factored ? (shape as [number, number]) : [1, n];
  s.step++;
  if (factored) {
    s.vr ??= new Float64Array(R);
    s.vc ??= new Float64Array(C);
  } else s.v ??= new Float64Array(n);
  if (h.beta1 !== null) s.m ??= new Float64Array(n);
  const rms = (x: ArrayLike<number>) => {
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += x[i]! ** 2;
    return Math.sqrt(sum) / Math.sqrt(n);
  };
  const lr = (h.scaleParameter ? Math.max(h.eps[1], rms(p)) : 1) * relativeStepSize(h, s.step);
  const beta2t = 1 - s.step ** h.decayRate;
  const u = new Float64Array(n);
  const eps1 = h.eps[0];
  if (factored) {
    for (let r = 0; r < R; r++) {
      let sum = 0;
      for (let c = 0; c < C; c++) sum += g[r * C + c]! ** 2 + eps1;
      s.vr![r] = beta2t * s.vr![r]! + (1 - beta2t) * (sum / C);
    }
    for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let r = 0; r < R; r++) sum += g[r * C + c]! ** 2 + eps1;
      s.vc![c] = beta2t * s.vc![c]! + (1 - beta2t) * (sum / R);
    }
    const meanVr = s.vr!.reduce((a, b) => a + b, 0) / R;
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) u[r * C + c] = (1 / Math.sqrt(s.vr![r]! / meanVr)) * (1 / Math.sqrt(s.vc![c]!)) * g[r * C + c]!;
    }
  } else {
    for (let i = 0; i < n; i++) {
      s.v![i] = beta2t * s.v![i]! + (1 - beta2t) * (g[i]! ** 2 + eps1);
      u[i] = g[i]! / Math.sqrt(s.v![i]!);
    }
  }
  const denom = Math.max(rms(u) / h.clipThreshold, 1);
  for (let i = 0; i < n; i++) {
    let ui = (u[i]! / denom) * lr;
    if (h.beta1 !== null) {
      s.m![i] = h.beta1 * s.m![i]! + (1 - h.beta1) * ui;
      ui = s.m![i]!;
    }
    p[i] = p[i]! - h.weightDecay * lr * p[i]! - ui;
  }
}
