// RMSNorm exactly as Hugging Face's `T5LayerNorm`: variance = mean(x²) over the last axis (no mean subtraction,
// no bias), y = weight * (x * rsqrt(variance + eps)). The forward saves rstd = rsqrt(variance + eps) per row
// (as llm.c does) so the backward does not recompute the reduction:
//   g = weight ⊙ dy,  dx = rstd ⋅ (g − x ⋅ rstd² ⋅ mean(g ⊙ x)),  dweight = Σ_rows dy ⊙ x ⋅ rstd.
// The weight gradient is a column reduction over rows, done without atomics in a fixed order (partial sums over
// chunks of rows, then over chunks), so it is deterministic.
import { recordOp } from './record-op.ts';
import { grid1D, rt, type BufferBinding } from '../engine/runtime.ts';
import { empty, zeros, type Tensor } from '../engine/tensor.ts';
import {
  defaultRowImpl, rowChunks, rowHeader, rowLeader, rowRange, rowScratch, rowSum, rowWorkgroups, shaderPrelude, type RowImpl,
} from './row-kernel.ts';

/** rows summed by one invocation in the first stage of a column reduction */
const CHUNK_ROWS = 32;
const COLUMN_WORKGROUP = 64;

export interface NormOptions {
  /** row-kernel layout; default by adapter and row width (tests and benchmarks force one) */
  impl?: RowImpl;
}

export function checkNormArgs(op: string, x: Tensor, params: Array<[Tensor, string]>, eps: number): number {
  for (const [t, what] of [[x, 'x'] as [Tensor, string], ...params]) {
    if (t.disposed) throw new Error(`${op}: ${what} is a disposed tensor [${t.shape.join(', ')}]`);
    if (t.dtype !== 'f32') throw new TypeError(`${op}: ${what} must be f32, got ${t.dtype}[${t.shape.join(', ')}]`);
  }
  if (x.rank === 0) throw new RangeError(`${op}: x must have at least one axis, got a scalar`);
  const D = x.shape[x.rank - 1]!;
  for (const [t, what] of params) {
    if (t.rank !== 1 || t.shape[0] !== D) {
      throw new RangeError(`${op}: ${what} [${t.shape.join(', ')}] must be [${D}] to match x [${x.shape.join(', ')}]`);
    }
  }
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
  return D;
}

export function vecWidth(D: number): 1 | 4 {
  return D % 4 === 0 ? 4 : 1;
}

function forwardCode(impl: RowImpl, w: number): string {
  const T = w === 4 ? 'vec4<f32>' : 'f32';
  const h = rowHeader(impl);
  const pre = shaderPrelude(impl);
  const sq = w === 4 ? 'dot(v, v)' : 'v * v';
  return /* wgsl */ `${pre.enable}
@group(0) @binding(0) var<storage, read> x: array<${T}>;
@group(0) @binding(1) var<storage, read> weight: array<${T}>;
@group(0) @binding(2) var<storage, read_write> y: array<${T}>;
@group(0) @binding(3) var<storage, read_write> rstdOut: array<f32>;
struct Params { rows: u32, n: u32, d: f32, eps: f32, row0: u32 }
@group(0) @binding(4) var<uniform> p: Params;
${rowScratch(impl)}

@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  var ss = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = x[base + j];
    ss += ${sq};
  }
  ${rowSum(impl, 'ss')}
  let rstd = inverseSqrt(ss / p.d + p.eps);
  if (${rowLeader(impl)}) { rstdOut[p.row0 + r] = rstd; }
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    y[base + j] = weight[j] * (x[base + j] * rstd);
  }
  ${h.tail}
}`;
}

function backwardCode(impl: RowImpl, w: number): string {
  const T = w === 4 ? 'vec4<f32>' : 'f32';
  const h = rowHeader(impl);
  const pre = shaderPrelude(impl);
  const dotf = (a: string, b: string) => (w === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  return /* wgsl */ `${pre.enable}
@group(0) @binding(0) var<storage, read> x: array<${T}>;
@group(0) @binding(1) var<storage, read> weight: array<${T}>;
@group(0) @binding(2) var<storage, read> rstdIn: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<${T}>;
@group(0) @binding(4) var<storage, read_write> dx: array<${T}>;
struct Params { rows: u32, n: u32, d: f32, row0: u32 }
@group(0) @binding(5) var<uniform> p: Params;
${rowScratch(impl)}

@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  var gx = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    gx += ${dotf('weight[j] * dy[base + j]', 'x[base + j]')};
  }
  ${rowSum(impl, 'gx')}
  let rstd = rstdIn[p.row0 + r];
  let c = rstd * rstd * gx / p.d;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    dx[base + j] = rstd * (weight[j] * dy[base + j] - x[base + j] * c);
  }
  ${h.tail}
}`;
}

export interface ColumnInput {
  t: Tensor;
  /** 'elem': [rows, D] like x; 'row': one value per row, [rows] */
  kind: 'elem' | 'row';
}

/** Deterministic Σ over rows of WGSL terms (one output [D] per term). In a term, `e<i>` is input i's element
 * (a vector of the kernel's width) and `r<i>` its per-row value. */
export function columnSums(name: string, inputs: ColumnInput[], terms: string[], rows: number, D: number): Tensor[] {
  const w = vecWidth(D);
  const T = w === 4 ? 'vec4<f32>' : 'f32';
  const n = D / w;
  const chunks = Math.ceil(rows / CHUNK_ROWS);
  const partials = terms.map(() => empty([chunks, D]));
  const outs = terms.map(() => empty([D]));
  const decls = inputs
    .map((inp, i) => `@group(0) @binding(${i}) var<storage, read> in${i}: array<${inp.kind === 'elem' ? T : 'f32'}>;`)
    .join('\n');
  const loads = inputs
    .map((inp, i) => (inp.kind === 'elem' ? `let e${i} = in${i}[r * p.n + c];` : `let r${i} = ${T}(in${i}[p.row0 + r]);`))
    .join('\n      ');
  const stage1 = /* wgsl */ `
${decls}
${terms.map((_, k) => `@group(0) @binding(${inputs.length + k}) var<storage, read_write> part${k}: array<${T}>;`).join('\n')}
struct Params { rows: u32, n: u32, chunks: u32, row0: u32 }
@group(0) @binding(${inputs.length + terms.length}) var<uniform> p: Params;

@compute @workgroup_size(${COLUMN_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${COLUMN_WORKGROUP}u;
  if (i >= p.chunks * p.n) { return; }
  let chunk = i / p.n;
  let c = i % p.n;
  ${terms.map((_, k) => `var acc${k} = ${T}(0.0);`).join('\n  ')}
  let end = min(p.rows, (chunk + 1u) * ${CHUNK_ROWS}u);
  for (var r = chunk * ${CHUNK_ROWS}u; r < end; r++) {
      ${loads}
      ${terms.map((t, k) => `acc${k} += ${t};`).join('\n      ')}
  }
  let o = (p.row0 / ${CHUNK_ROWS}u) * p.n + i;
  ${terms.map((_, k) => `part${k}[o] = acc${k};`).join('\n  ')}
}`;
  const stage2 = /* wgsl */ `
@group(0) @binding(0) var<storage, read> part: array<${T}>;
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
struct Params { n: u32, chunks: u32 }
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(${COLUMN_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = gid.x + gid.y * nwg.x * ${COLUMN_WORKGROUP}u;
  if (c >= p.n) { return; }
  var acc = ${T}(0.0);
  for (var k = 0u; k < p.chunks; k++) { acc += part[k * p.n + c]; }
  out[c] = acc;
}`;
  // inputs over the binding limit are bound a range of rows at a time (ranges start on a chunk boundary)
  for (const [r0, nr] of rowChunks(name, rows, D * 4, CHUNK_ROWS)) {
    const bindings: BufferBinding[] = [
      ...inputs.map((inp, i) =>
        inp.kind === 'elem' ? rowRange(inp.t, r0, nr, D * 4, false, `${name} input ${i}`) : inp.t.read(`${name} input ${i}`)),
      ...partials.map((t) => t.write(`${name} partial sums`)),
    ];
    const localChunks = Math.ceil(nr / CHUNK_ROWS);
    rt().dispatch({
      name: `${name}_columns`,
      code: stage1,
      bindings,
      params: [['u32', nr], ['u32', n], ['u32', localChunks], ['u32', r0]],
      workgroups: grid1D(Math.ceil((localChunks * n) / COLUMN_WORKGROUP)),
    });
  }
  partials.forEach((part, k) => {
    rt().dispatch({
      name: `${name}_columns_total`,
      code: stage2,
      bindings: [part.read(`${name} partial sums`), outs[k]!.write(`${name} column sums`)],
      params: [['u32', n], ['u32', chunks]],
      workgroups: grid1D(Math.ceil(n / COLUMN_WORKGROUP)),
    });
    part.dispose();
  });
  return outs;
}

export interface RmsNormResult {
  y: Tensor;
  /** rsqrt(mean(x²) + eps) per row, shape x.shape without the last axis */
  rstd: Tensor;
}

/** T5LayerNorm forward returning the saved statistics too (no autograd recorded). */
export function rmsNormForward(x: Tensor, weight: Tensor, eps: number, opts: NormOptions = {}): RmsNormResult {
  const D = checkNormArgs('rmsNorm', x, [[weight, 'weight']], eps);
  const rows = D === 0 ? 0 : x.size / D;
  const y = empty(x.shape);
  const rstd = empty(x.shape.slice(0, -1));
  const impl = opts.impl ?? defaultRowImpl(D);
  const w = vecWidth(D);
  for (const [r0, n] of rowChunks('rmsNorm', rows, D * 4)) {
    rt().dispatch({
      name: 'rmsnorm',
      code: forwardCode(impl, w),
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
  const D = checkNormArgs('rmsNormBackward', x, [[weight, 'weight']], 0);
  if (dy.shape.join() !== x.shape.join()) {
    throw new RangeError(`rmsNormBackward: dy [${dy.shape.join(', ')}] and x [${x.shape.join(', ')}] differ`);
  }
  const rows = D === 0 ? 0 : x.size / D;
  const dx = empty(x.shape);
  if (rows === 0) return { dx, dweight: zeros([D]) }; // a sum over no rows
  const impl = opts.impl ?? defaultRowImpl(D);
  const w = vecWidth(D);
  for (const [r0, n] of rowChunks('rmsNormBackward', rows, D * 4)) {
    rt().dispatch({
      name: 'rmsnorm_backward',
      code: backwardCode(impl, w),
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
