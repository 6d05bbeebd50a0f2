// Elementwise ops generated from the table in `elementwise-table.ts`: one kernel generator, one dispatch,
// one autograd rule for all of them.
//
// Two kernel shapes:
//  * same-shape operands: a flat loop, vec4 loads when the size is a multiple of 4, a few vec4 per invocation
//    at a stride of the workgroup (coalesced on a GPU; on lavapipe several vec4 per invocation move about
//    twice the bytes of one, shared/LAVAPIPE.md).
//  * NumPy broadcasting: the output index is decomposed over the (collapsed) output shape and each input
//    reads at its own strides (0 along broadcast axes). When the innermost axis is a multiple of 4 and every
//    input either runs along it (stride 1) or is constant along it, the loop is still vec4.
// The backward of a broadcast input sums its gradient back to its shape (`sumTo` in reduce.ts).
import { recordOp } from '../engine/autograd.ts';
import { grid1D, rt, type BufferBinding, type Param } from '../engine/runtime.ts';
import { empty, type Shape, type Tensor } from '../engine/tensor.ts';
import { ewOp, helpersFor, usesIdent, type EwOp } from './elementwise-table.ts';
import { sumTo } from './reduce.ts';

const WORKGROUP = 256;
/** Per-invocation work, mutable so benchmarks can compare settings (pipelines are cached by source). */
export const EW_TUNING = {
  /** vec4 (or scalars) per invocation on the flat path. lavapipe under load, add of 16M elements, best of 4
   * interleaved runs: 2 -> 168 ms, 4 -> 154 ms, 8 -> 275 ms, 16 -> 341 ms */
  vecPerThread: 4,
  /** vec4 (or scalars) per invocation on the broadcasting path (each pays an index decomposition); [4096, 2048]
   * + [2048] on lavapipe: 1 -> 84 ms, 4 -> 83 ms, 8 -> 108 ms, 16 -> 143 ms */
  bcastPerThread: 4,
};
/** broadcast shapes are collapsed first; T5 needs at most 4 axes after collapsing */
const MAX_RANK = 8;

// ---------------------------------------------------------------------------------------------------------
// shapes

export function broadcastShapes(op: string, shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < rank; d++) {
    let size = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + d] ?? 1;
      if (v === 1) continue;
      if (size !== 1 && v !== size) {
        throw new RangeError(`${op}: shapes ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')} do not broadcast`);
      }
      size = v;
    }
    // a 0-length axis wins over 1 (NumPy)
    out.push(shapes.some((s) => s[s.length - rank + d] === 0) ? 0 : size);
  }
  return out;
}

/** Strides of `shape` (contiguous) seen from an output of rank `outShape.length`, 0 along broadcast axes. */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = rank - shape.length + d;
    strides[od] = shape[d] === 1 ? 0 : s;
    s *= shape[d]!;
  }
  return strides;
}

/** Drops size-1 axes and merges neighbours that every operand walks contiguously. */
export function collapse(shape: Shape, strides: number[][]): { dims: number[]; strides: number[][] } {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k]![last] === s[d]! * shape[d]!)) {
      dims[last] *= shape[d]!;
      strides.forEach((s, k) => (st[k]![last] = s[d]!));
    } else {
      dims.push(shape[d]!);
      strides.forEach((s, k) => st[k]!.push(s[d]!));
    }
  }
  return { dims, strides: st };
}

// ---------------------------------------------------------------------------------------------------------
// kernel generation

export interface EwInput {
  t: Tensor;
  /** the identifier the expression uses */
  name: string;
}

type Plan =
  | { kind: 'flat'; vec: boolean; n: number }
  | { kind: 'bcast'; vec: boolean; dims: number[]; strides: number[][]; splat: boolean[] };

function plan(inputs: EwInput[], outShape: number[]): Plan {
  const n = outShape.reduce((a, b) => a * b, 1);
  const same = inputs.every((i) => i.t.size === n);
  if (same) return { kind: 'flat', vec: n % 4 === 0, n };
  const c = collapse(outShape, inputs.map((i) => broadcastStrides(i.t.shape, outShape)));
  if (c.dims.length > MAX_RANK) throw new RangeError(`elementwise: more than ${MAX_RANK} axes after collapsing`);
  const r = c.dims.length;
  const inner = c.dims[r - 1] ?? 1;
  const vec = r > 0 && inner % 4 === 0 && c.strides.every((s) => s[r - 1] === 0 || s[r - 1] === 1);
  return { kind: 'bcast', vec, dims: c.dims, strides: c.strides, splat: c.strides.map((s) => vec && s[r - 1] === 0) };
}

function scalarType(t: Tensor): string {
  return t.dtype === 'i32' ? 'i32' : 'f32';
}

function kernelCode(inputs: EwInput[], expr: string, p: Plan): string {
  const T = p.vec ? 'vec4<f32>' : 'f32';
  const decls = inputs.map((inp, k) => {
    const st = scalarType(inp.t);
    const elem = p.vec && !(p.kind === 'bcast' && p.splat[k]) ? `vec4<${st}>` : st;
    return `@group(0) @binding(${k}) var<storage, read> v_${inp.name}: array<${elem}>;`;
  });
  const outBinding = inputs.length;
  const fields = ['n: u32', 's: f32'];
  if (p.kind === 'bcast') {
    p.dims.forEach((_, d) => fields.push(`d${d}: u32`));
    p.strides.forEach((s, k) => s.forEach((_, d) => fields.push(`s${k}_${d}: u32`)));
  }
  const helpers = helpersFor([expr]).join('\n');
  let body: string;
  if (p.kind === 'flat') {
    const loads = inputs.map((inp) => `let ${inp.name} = T(v_${inp.name}[i]);`).join(' ');
    body = `
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * EW_TUNING.vecPerThread}u + lid;
  for (var k = 0u; k < ${EW_TUNING.vecPerThread}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) { ${loads} out[i] = ${expr}; }
  }`;
  } else {
    const r = p.dims.length;
    const W = p.vec ? 4 : 1;
    const offs = inputs.map((_, k) => `var o${k} = 0u;`).join(' ');
    const decompose: string[] = [];
    for (let d = r - 1; d >= 0; d--) {
      const idx = d === 0 ? 'rem' : `rem % p.d${d}`;
      decompose.push(`{ let q = ${idx}; ${inputs.map((_, k) => `o${k} += q * p.s${k}_${d};`).join(' ')}${d > 0 ? ` rem = rem / p.d${d};` : ''} }`);
    }
    const loads = inputs
      .map((inp, k) => {
        if (!p.vec) return `let ${inp.name} = T(v_${inp.name}[o${k}]);`;
        return p.splat[k] ? `let ${inp.name} = T(f32(v_${inp.name}[o${k}]));` : `let ${inp.name} = T(v_${inp.name}[o${k} / 4u]);`;
      })
      .join(' ');
    body = `
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * EW_TUNING.bcastPerThread}u + lid;
  for (var k = 0u; k < ${EW_TUNING.bcastPerThread}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) {
      var rem = i * ${W}u; ${offs}
      ${decompose.join('\n      ')}
      ${loads}
      out[i] = ${expr};
    }
  }`;
  }
  return /* wgsl */ `
alias T = ${T};
${decls.join('\n')}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<T>;
struct Params { ${fields.join(', ')} }
@group(0) @binding(${outBinding + 1}) var<uniform> p: Params;
${helpers}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = p.s;${body}
}`;
}

/** Runs `expr` over broadcast inputs into a new f32 tensor of the broadcast shape (no autograd). */
export function ewDispatch(name: string, inputs: EwInput[], expr: string, scalar = 0, outShape?: number[]): Tensor {
  const shape = outShape ?? broadcastShapes(name, inputs.map((i) => i.t.shape));
  const out = empty(shape);
  if (out.size === 0) return out;
  const p = plan(inputs, shape);
  const units = p.vec ? out.size / 4 : out.size;
  const params: Param[] = [['u32', units], ['f32', scalar]];
  if (p.kind === 'bcast') {
    for (const d of p.dims) params.push(['u32', d]);
    for (const s of p.strides) for (const v of s) params.push(['u32', v]);
  }
  const per = p.kind === 'flat' ? EW_TUNING.vecPerThread : EW_TUNING.bcastPerThread;
  const bindings: BufferBinding[] = inputs.map((i) => i.t.read(`${name} input ${i.name} ${i.t.describe()}`));
  rt().dispatch({
    name,
    code: kernelCode(inputs, expr, p),
    bindings: [...bindings, out.write(`${name} output`)],
    params,
    workgroups: grid1D(Math.ceil(units / (WORKGROUP * per))),
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// ops from the table

function checkInputs(op: EwOp, ts: Tensor[]): void {
  if (ts.length !== op.args.length) throw new RangeError(`${op.name}: expected ${op.args.length} tensors, got ${ts.length}`);
  ts.forEach((t, k) => {
    if (t.disposed) throw new Error(`${op.name}: input ${op.args[k]} is a disposed tensor [${t.shape.join(', ')}]`);
    const condition = op.name === 'where' && k === 0;
    if (t.dtype !== 'f32' && !condition) {
      throw new TypeError(`${op.name}: input ${op.args[k]} is ${t.describe()}; elementwise ops take f32`);
    }
  });
}

/** Applies a table op with autograd. */
export function applyOp(name: string, ts: Tensor[], scalar = 0): Tensor {
  const op = ewOp(name);
  checkInputs(op, ts);
  if (op.scalar && !Number.isFinite(scalar)) throw new RangeError(`${name}: scalar ${scalar} is not finite`);
  const outShape = broadcastShapes(name, ts.map((t) => t.shape));
  const y = ewDispatch(name, ts.map((t, k) => ({ t, name: op.args[k]! })), op.fwd, scalar, outShape);
  const needY = op.bwd.some((e) => e !== null && usesIdent(e, 'y'));
  const savedArgs = op.args.map((a) => op.bwd.some((e) => e !== null && usesIdent(e, a)));
  const saved = [...ts.filter((_, k) => savedArgs[k]), ...(needY ? [y] : [])];
  const differentiable = ts.map((t, k) => (op.bwd[k] !== null ? t : null));
  return recordOp(name, ts, y, saved, (g, sv) => {
    const named: EwInput[] = [];
    let at = 0;
    op.args.forEach((a, k) => {
      if (savedArgs[k]) named.push({ t: sv[at++]!, name: a });
    });
    if (needY) named.push({ t: sv[at++]!, name: 'y' });
    named.push({ t: g, name: 'g' });
    return op.bwd.map((expr, k) => {
      const input = differentiable[k];
      if (expr === null || !input || !input.requiresGrad) return null;
      const used = named.filter((n) => usesIdent(expr, n.name));
      const full = expr === 'g' ? g : ewDispatch(`${name} backward`, used, expr, scalar, outShape);
      if (full.shape.join() === input.shape.join()) return full;
      // same size, other shape ([1, 3] against [3]): a view; else sum over the broadcast axes
      const r = full.size === input.size ? full.reshape(input.shape) : sumTo(full, input.shape);
      if (full !== g) full.dispose();
      return r;
    });
  });
}

export const add = (a: Tensor, b: Tensor): Tensor => applyOp('add', [a, b]);
export const sub = (a: Tensor, b: Tensor): Tensor => applyOp('sub', [a, b]);
export const mul = (a: Tensor, b: Tensor): Tensor => applyOp('mul', [a, b]);
export const div = (a: Tensor, b: Tensor): Tensor => applyOp('div', [a, b]);
export const maximum = (a: Tensor, b: Tensor): Tensor => applyOp('maximum', [a, b]);
export const minimum = (a: Tensor, b: Tensor): Tensor => applyOp('minimum', [a, b]);
export const neg = (x: Tensor): Tensor => applyOp('neg', [x]);
/** x * s */
export const scale = (x: Tensor, s: number): Tensor => applyOp('scale', [x], s);
/** x + s */
export const addScalar = (x: Tensor, s: number): Tensor => applyOp('addScalar', [x], s);
export const relu = (x: Tensor): Tensor => applyOp('relu', [x]);
/** Hugging Face `gelu_new` (NewGELUActivation): 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) */
export const gelu = (x: Tensor): Tensor => applyOp('gelu', [x]);
export const exp = (x: Tensor): Tensor => applyOp('exp', [x]);
export const log = (x: Tensor): Tensor => applyOp('log', [x]);
export const sqrt = (x: Tensor): Tensor => applyOp('sqrt', [x]);
export const rsqrt = (x: Tensor): Tensor => applyOp('rsqrt', [x]);
export const square = (x: Tensor): Tensor => applyOp('square', [x]);
export const tanh = (x: Tensor): Tensor => applyOp('tanh', [x]);
export const sigmoid = (x: Tensor): Tensor => applyOp('sigmoid', [x]);
/** torch.where: `cond` (f32 or i32, nonzero = true) picks `a`, else `b`; all three broadcast. */
export const where = (cond: Tensor, a: Tensor, b: Tensor): Tensor => applyOp('where', [cond, a, b]);
/** masked_fill: `value` where `mask` is nonzero, `x` elsewhere. */
export function maskFill(x: Tensor, mask: Tensor, value: number): Tensor {
  if (mask.disposed || x.disposed) throw new Error('maskFill: disposed tensor');
  if (x.dtype !== 'f32') throw new TypeError(`maskFill: x is ${x.describe()}; expected f32`);
  const shape = broadcastShapes('maskFill', [x.shape, mask.shape]);
  if (shape.join() !== x.shape.join()) {
    throw new RangeError(`maskFill: mask [${mask.shape.join(', ')}] must broadcast to x [${x.shape.join(', ')}]`);
  }
  const y = ewDispatch('maskFill', [{ t: mask, name: 'c' }, { t: x, name: 'x' }], 'select(x, T(s), c != T(0.0))', value, shape);
  return recordOp('maskFill', [x], y, [mask], (g, [m]) => [
    ewDispatch('maskFill backward', [{ t: m!, name: 'c' }, { t: g, name: 'g' }], 'select(g, T(0.0), c != T(0.0))', 0, shape),
  ]);
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

/** float64 reference of a table op with broadcasting, for tests and benchmarks. */
export function ewRef(name: string, inputs: { data: ArrayLike<number>; shape: Shape }[], scalar = 0): Float64Array {
  const op = ewOp(name);
  return ewMapRef(name, inputs, (v) => op.ref(v, scalar));
}

/** Applies `f` to the broadcast inputs of every output element (NumPy rules), in float64. */
export function ewMapRef(name: string, inputs: { data: ArrayLike<number>; shape: Shape }[], f: (v: number[]) => number): Float64Array {
  const shape = broadcastShapes(name, inputs.map((i) => i.shape));
  const n = shape.reduce((a, b) => a * b, 1);
  const strides = inputs.map((i) => broadcastStrides(i.shape, shape));
  const out = new Float64Array(n);
  const idx = new Array<number>(shape.length).fill(0);
  const v = new Array<number>(inputs.length);
  for (let i = 0; i < n; i++) {
    inputs.forEach((inp, k) => {
      let o = 0;
      for (let d = 0; d < shape.length; d++) o += idx[d]! * strides[k]![d]!;
      v[k] = inp.data[o]!;
    });
    out[i] = f(v);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}
