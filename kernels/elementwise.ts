// Elementwise ops generated from the table in `elementwise-table.ts`: one kernel generator (the dispatcher in
// `elementwise-dispatch.ts`), one autograd rule for all of them.
// The backward of a broadcast input sums its gradient back to its shape (`sumTo` in reduce.ts).
import { recordOp } from './record-op.ts';
import type { Shape, Tensor } from '../engine/tensor.ts';
import { ewOp, usesIdent, type EwOp } from './elementwise-table.ts';
import { broadcastShapes, broadcastStrides, ewDispatch, type EwInput } from './elementwise-dispatch.ts';
import { sumTo } from './reduce.ts';

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
export const silu = (x: Tensor): Tensor => applyOp('silu', [x]);
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
