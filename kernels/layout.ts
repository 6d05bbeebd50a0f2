// Data movement: permute/transpose, slice, concat, contiguous copy. Tensors here are always contiguous, so
// each op is one strided copy: for every index of a (collapsed) shape, dst[dstOff + Σ i·dstStride] =
// src[srcOff + Σ i·srcStride]. Axes that both sides walk contiguously are merged first, so a permute that
// keeps the last axis (T5's [B, L, H, D] -> [B, H, L, D]) copies whole vec4 runs of D.
import { recordOp } from './record-op.ts';
import { grid1D, rt, type Param } from '../engine/runtime.ts';
import { empty, zeros, type Shape, type Tensor } from '../engine/tensor.ts';
import { collapse } from './elementwise-dispatch.ts';
import { memoWgsl } from './wgsl-memo.ts';

const WORKGROUP = 256;
const PER_THREAD = 4;
const MAX_RANK = 8;

function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}

function copyCode(rank: number, vec: boolean, dtype: string): string {
  const E = vec ? `vec4<${dtype}>` : dtype;
  const fields = ['n: u32', 'srcOff: u32', 'dstOff: u32'];
  for (let d = 0; d < rank; d++) fields.push(`d${d}: u32`, `s${d}: u32`, `t${d}: u32`);
  const dec: string[] = [];
  for (let d = rank - 1; d >= 0; d--) {
    dec.push(`{ let q = ${d === 0 ? 'rem' : `rem % p.d${d}`}; so += q * p.s${d}; dO += q * p.t${d};${d > 0 ? ` rem = rem / p.d${d};` : ''} }`);
  }
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<${E}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${E}>;
struct Params { ${fields.join(', ')} }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * PER_THREAD}u + lid;
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) {
      var rem = i; var so = p.srcOff; var dO = p.dstOff;
      ${dec.join('\n      ')}
      dst[dO] = src[so];
    }
  }
}`;
}

/** dst[dstOff + Σ i·dstStrides] = src[srcOff + Σ i·srcStrides] for every index of `shape` (element units). */
function stridedCopy(
  op: string, src: Tensor, srcOff: number, srcStrides: number[], dst: Tensor, dstOff: number, dstStrides: number[], shape: Shape,
): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n === 0) return;
  const c = collapse(shape, [srcStrides, dstStrides]);
  const r = c.dims.length;
  const [ss, ds] = c.strides as [number[], number[]];
  // one contiguous run on both sides: the copy engine does it (13-23 GB/s on lavapipe vs 3-7 for a kernel)
  if (r <= 1 && (r === 0 || (ss[0] === 1 && ds[0] === 1))) {
    rt().copy(src.buffer, srcOff * 4, dst.buffer, dstOff * 4, n * 4);
    return;
  }
  if (r > MAX_RANK) throw new RangeError(`${op}: more than ${MAX_RANK} axes after collapsing`);
  const vec =
    c.dims[r - 1]! % 4 === 0 && ss[r - 1] === 1 && ds[r - 1] === 1 && srcOff % 4 === 0 && dstOff % 4 === 0 &&
    ss.slice(0, r - 1).every((v) => v % 4 === 0) && ds.slice(0, r - 1).every((v) => v % 4 === 0);
  const W = vec ? 4 : 1;
  const dims = c.dims.map((d, i) => (i === r - 1 ? d / W : d));
  const params: Param[] = [['u32', n / W], ['u32', srcOff / W], ['u32', dstOff / W]];
  // vec4 implies unit inner strides, so only the outer strides are divided
  dims.forEach((d, i) => params.push(['u32', d], ['u32', i === r - 1 ? ss[i]! : ss[i]! / W], ['u32', i === r - 1 ? ds[i]! : ds[i]! / W]));
  rt().dispatch({
    name: op,
    code: copyCodeMemo(r, vec, src.dtype === 'i32' ? 'i32' : 'f32'),
    bindings: [src.read(`${op} input ${src.describe()}`), dst.write(`${op} output ${dst.describe()}`)],
    params,
    workgroups: grid1D(Math.ceil(n / W / (WORKGROUP * PER_THREAD))),
  });
}

function live(op: string, x: Tensor): void {
  if (x.disposed) throw new Error(`${op}: input is a disposed tensor [${x.shape.join(', ')}]`);
}

function normAxis(op: string, axis: number, rank: number, what: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) throw new RangeError(`${op}: axis ${axis} out of range for ${what}`);
  return axis < 0 ? axis + rank : axis;
}

// ---------------------------------------------------------------------------------------------------------

/** out.shape[k] = x.shape[dims[k]] (torch.permute). */
export function permute(x: Tensor, dims: number[]): Tensor {
  live('permute', x);
  const d = dims.map((a) => normAxis('permute', a, x.rank, x.describe()));
  if (d.length !== x.rank || new Set(d).size !== d.length) {
    throw new RangeError(`permute: [${dims.join(', ')}] is not a permutation of the ${x.rank} axes of ${x.describe()}`);
  }
  const shape = d.map((a) => x.shape[a]!);
  const inStrides = stridesOf(x.shape);
  const out = empty(shape, x.dtype);
  stridedCopy('permute', x, 0, d.map((a) => inStrides[a]!), out, 0, stridesOf(shape), shape);
  const inverse = new Array<number>(d.length);
  d.forEach((a, k) => (inverse[a] = k));
  return recordOp('permute', [x], out, [], (g) => [permute(g, inverse)]);
}

/** Swaps two axes. */
export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  live('transpose', x);
  const a = normAxis('transpose', d0, x.rank, x.describe());
  const b = normAxis('transpose', d1, x.rank, x.describe());
  const dims = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, dims);
}

/** x[..., start:end, ...] along `axis` (a copy). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  live('slice', x);
  const ax = normAxis('slice', axis, x.rank, x.describe());
  const len = x.shape[ax]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > len || start > end) {
    throw new RangeError(`slice: [${start}, ${end}) is out of range for axis ${ax} of ${x.describe()}`);
  }
  const shape = x.shape.map((v, i) => (i === ax ? end - start : v));
  const st = stridesOf(x.shape);
  const out = empty(shape, x.dtype);
  stridedCopy('slice', x, start * st[ax]!, st, out, 0, stridesOf(shape), shape);
  const inShape = x.shape;
  return recordOp('slice', [x], out, [], (g) => {
    // the gradient of the slice lands in its window of a zero tensor
    const gx = zeros(inShape);
    stridedCopy('slice backward', g, 0, stridesOf(g.shape), gx, start * st[ax]!, st, g.shape);
    return [gx];
  });
}

/** Joins tensors along `axis`; all other axes must match (torch.cat). */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new RangeError('concat: no tensors');
  xs.forEach((x) => live('concat', x));
  const first = xs[0]!;
  const ax = normAxis('concat', axis, first.rank, first.describe());
  for (const x of xs) {
    if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((v, i) => i !== ax && v !== first.shape[i])) {
      throw new RangeError(`concat: ${xs.map((t) => t.describe()).join(', ')} do not match outside axis ${ax}`);
    }
  }
  const shape = first.shape.map((v, i) => (i === ax ? xs.reduce((a, t) => a + t.shape[ax]!, 0) : v));
  const out = empty(shape, first.dtype);
  const ost = stridesOf(shape);
  const starts: number[] = [];
  let at = 0;
  for (const x of xs) {
    starts.push(at);
    stridedCopy('concat', x, 0, stridesOf(x.shape), out, at * ost[ax]!, ost, x.shape);
    at += x.shape[ax]!;
  }
  return recordOp('concat', xs, out, [], (g) =>
    xs.map((x, k) => (x.requiresGrad ? sliceRaw(g, ax, starts[k]!, starts[k]! + x.shape[ax]!) : null)),
  );
}

function sliceRaw(x: Tensor, ax: number, start: number, end: number): Tensor {
  const shape = x.shape.map((v, i) => (i === ax ? end - start : v));
  const st = stridesOf(x.shape);
  const out = empty(shape, x.dtype);
  stridedCopy('concat backward', x, start * st[ax]!, st, out, 0, stridesOf(shape), shape);
  return out;
}

/** A copy with its own storage (tensors are always contiguous here; this breaks sharing with views). */
export function contiguous(x: Tensor): Tensor {
  live('contiguous', x);
  const out = empty(x.shape, x.dtype);
  if (x.size > 0) rt().copy(x.buffer, 0, out.buffer, 0, x.bytes);
  return recordOp('contiguous', [x], out, [], (g) => [g]);
}

// ---------------------------------------------------------------------------------------------------------
// CPU reference

export function permuteRef(data: ArrayLike<number>, shape: Shape, dims: number[]): Float64Array {
  const outShape = dims.map((a) => shape[a]!);
  const inStrides = stridesOf(shape);
  const n = data.length;
  const out = new Float64Array(n);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let o = 0;
    for (let k = 0; k < dims.length; k++) o += idx[k]! * inStrides[dims[k]!]!;
    out[i] = data[o]!;
    for (let k = outShape.length - 1; k >= 0; k--) {
      if (++idx[k]! < outShape[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function sliceRef(data: ArrayLike<number>, shape: Shape, axis: number, start: number, end: number): Float64Array {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len = shape[axis]!;
  const out = new Float64Array(outer * (end - start) * inner);
  let w = 0;
  for (let o = 0; o < outer; o++) for (let a = start; a < end; a++) for (let i = 0; i < inner; i++) out[w++] = data[(o * len + a) * inner + i]!;
  return out;
}

export function concatRef(parts: { data: ArrayLike<number>; shape: Shape }[], axis: number): Float64Array {
  const shape = parts[0]!.shape;
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const total = parts.reduce((a, p) => a + p.data.length, 0);
  const out = new Float64Array(total);
  let w = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const run = p.shape[axis]! * inner;
      for (let j = 0; j < run; j++) out[w++] = p.data[o * run + j]!;
    }
  }
  return out;
}

// each source built once per argument set (wgsl-memo.ts)
const copyCodeMemo = memoWgsl(copyCode);
