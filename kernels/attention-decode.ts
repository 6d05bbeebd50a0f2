// Attention of one new query position over a preallocated key/value cache with a per-row index table: the
// decoder step of beam search without copying the cache when beams are reordered.
//
//   out[r, h] = Σ_j p_j · V[j, src[j, r], h],  p = softmax_j(q[r, h] · K[j, src[j, r], h] + bias[h, j]),  j < length
//
// The cache is position-major, [capacity, slots, H, dk]: step t's keys/values for every row are one contiguous
// block at position t (written by a plain buffer copy, no kernel), and growing the capacity copies one
// contiguous prefix. A slot is a physical row: logical row r's key at position j lives in slot src[j, r]; beam
// search's reorder (Hugging Face's `_reorder_cache`: new row r continues old row beamIdx[r]) rewrites only the
// small table. Every (slot, position) is written once, so reading through the table is exact.
//
// T5 semantics as kernels/attention.ts: no 1/sqrt(dk) scaling; every cached position is in the past of the new
// query, so causality holds without a limit, and decoder self-attention has no padding mask. One invocation per
// (row, head) with an online softmax, in attention.ts's plain forward's order of operations. No backward:
// generation runs under noGrad.
import { isGradEnabled } from '../engine/autograd.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import { NEG_MAX, onlineSoftmaxStep } from './attention.wgsl.ts';
import { memoWgsl } from './wgsl-memo.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

/** (row, head) pairs per workgroup */
const WORKGROUP = 64;

/** vec4 loads when dk allows them, scalars otherwise. */
function decodeKernel(dk: number): string {
  const w = dk % 4 === 0 ? 4 : 1;
  const T = w === 4 ? 'vec4<f32>' : 'f32';
  const dv = dk / w;
  const hsum = w === 4 ? 'acc.x + acc.y + acc.z + acc.w' : 'acc';
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> q: array<${T}>;
@group(0) @binding(1) var<storage, read> k: array<${T}>;
@group(0) @binding(2) var<storage, read> v: array<${T}>;
@group(0) @binding(3) var<storage, read> src: array<i32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<${T}>;
struct Params { rows: u32, heads: u32, length: u32, slots: u32 }
@group(0) @binding(6) var<uniform> p: Params;
const NEG_MAX = ${NEG_MAX};

${flatGridEntry(WORKGROUP, 'i', 'p.rows * p.heads')}
  let r = i / p.heads;
  let h = i % p.heads;
  let qo = i * ${dv}u;
  var qr: array<${T}, ${dv}>;
  var o: array<${T}, ${dv}>;
  for (var d = 0u; d < ${dv}u; d++) { qr[d] = q[qo + d]; o[d] = ${T}(0.0); }
  var m = NEG_MAX;
  var l = 0.0;
  for (var j = 0u; j < p.length; j++) {
    let kj = ((j * p.slots + u32(src[j * p.rows + r])) * p.heads + h) * ${dv}u;
    var acc = ${T}(0.0);
    for (var d = 0u; d < ${dv}u; d++) { acc += qr[d] * k[kj + d]; }
    let s = ${hsum} + bias[h * p.length + j];
    ${onlineSoftmaxStep(dv)}
    for (var d = 0u; d < ${dv}u; d++) { o[d] += e * v[kj + d]; }
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var d = 0u; d < ${dv}u; d++) { out[qo + d] = o[d] * inv; }
}`;
}

function shapeStr(t: Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

export interface DecodeAttentionInputs {
  /** the new position's queries [rows, H, dk], or [n, rows, H, dk] of which the first block is read (a step's
   * stacked q, k, v projections) */
  q: Tensor;
  /** the caches [capacity, slots, H, dk]; positions 0 .. length-1 are read */
  k: Tensor;
  v: Tensor;
  /** i32 [length, rows]: logical row r's key/value at position j is in slot src[j, r] */
  src: Tensor;
  /** additive position bias [H, length] */
  bias: Tensor;
}

function checkArgs(x: DecodeAttentionInputs): { rows: number; heads: number; dk: number; length: number; slots: number } {
  const named: Array<[string, Tensor]> = [['q', x.q], ['k', x.k], ['v', x.v], ['src', x.src], ['bias', x.bias]];
  for (const [name, t] of named) {
    if (t.disposed) throw new Error(`decodeAttention: ${name} is a disposed tensor`);
    const want = name === 'src' ? 'i32' : 'f32';
    if (t.dtype !== want) throw new TypeError(`decodeAttention: ${name} must be ${want}, got ${t.dtype} ${shapeStr(t)}`);
    if (t.requiresGrad && isGradEnabled()) {
      throw new Error(`decodeAttention: ${name} requires grad, but this op has no backward (run generation under noGrad)`);
    }
  }
  if (x.q.rank !== 3 && x.q.rank !== 4) throw new RangeError(`decodeAttention: q must be [rows, H, dk] or [n, rows, H, dk], got ${shapeStr(x.q)}`);
  const [rows, heads, dk] = x.q.shape.slice(-3) as [number, number, number];
  const [capacity, slots, kh, kd] = x.k.shape as [number, number, number, number];
  const shapes = `q ${shapeStr(x.q)}, k ${shapeStr(x.k)}, v ${shapeStr(x.v)}, src ${shapeStr(x.src)}, bias ${shapeStr(x.bias)}`;
  if (x.k.rank !== 4 || kh !== heads || kd !== dk || x.v.shape.join() !== x.k.shape.join()) {
    throw new RangeError(`decodeAttention: k and v must be [capacity, slots, ${heads}, ${dk}] alike (${shapes})`);
  }
  const [length, srcRows] = x.src.shape as [number, number];
  if (x.src.rank !== 2 || srcRows !== rows || length < 1 || length > capacity) {
    throw new RangeError(`decodeAttention: src must be [length, ${rows}] with 1 <= length <= capacity ${capacity} (${shapes})`);
  }
  if (x.bias.rank !== 2 || x.bias.shape[0] !== heads || x.bias.shape[1] !== length) {
    throw new RangeError(`decodeAttention: bias must be [${heads}, ${length}] (${shapes})`);
  }
  if (rows === 0 || heads === 0 || dk === 0) throw new RangeError(`decodeAttention: empty queries (${shapes})`);
  return { rows, heads, dk, length, slots };
}

/** Attention of q [rows, H, dk] over the positions src indexes in the caches; out [rows, H, dk]. The table's
 * entries must be slots below k.shape[1] (the cache's owner builds it; the kernel does not check). */
export function decodeAttention(x: DecodeAttentionInputs): Tensor {
  const d = checkArgs(x);
  const out = empty([d.rows, d.heads, d.dk]);
  rt().dispatch({
    name: 'attention-decode',
    code: decodeKernelMemo(d.dk),
    bindings: [x.q.read('q'), x.k.read('k'), x.v.read('v'), x.src.read('src'), x.bias.read('bias'), out.write('out')],
    params: [['u32', d.rows], ['u32', d.heads], ['u32', d.length], ['u32', d.slots]],
    workgroups: grid1D(Math.ceil((d.rows * d.heads) / WORKGROUP)),
  });
  return out;
}

export interface DecodeAttentionRefInput {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  src: ArrayLike<number>;
  bias: ArrayLike<number>;
  dims: { rows: number; heads: number; dk: number; length: number; slots: number };
}

/** float64 reference of decodeAttention, for tests. */
export function decodeAttentionRef(x: DecodeAttentionRefInput): Float64Array {
  const { rows, heads, dk, length, slots } = x.dims;
  const out = new Float64Array(rows * heads * dk);
  const s = new Float64Array(length);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < heads; h++) {
      const qo = (r * heads + h) * dk;
      const at = (j: number): number => ((j * slots + x.src[j * rows + r]!) * heads + h) * dk;
      let m = -Infinity;
      for (let j = 0; j < length; j++) {
        let acc = x.bias[h * length + j]!;
        for (let d = 0; d < dk; d++) acc += x.q[qo + d]! * x.k[at(j) + d]!;
        s[j] = acc;
        m = Math.max(m, acc);
      }
      let l = 0;
      for (let j = 0; j < length; j++) l += Math.exp(s[j]! - m);
      for (let j = 0; j < length; j++) {
        const p = Math.exp(s[j]! - m) / l;
        for (let d = 0; d < dk; d++) out[qo + d] += p * x.v[at(j) + d]!;
      }
    }
  return out;
}

// each source built once per argument set (wgsl-memo.ts)
const decodeKernelMemo = memoWgsl(decodeKernel);
