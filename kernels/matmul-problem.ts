// matmul's problem: shapes, transposes and broadcast batch dims reduced to what the kernels walk.
//
// Batch dims broadcast as in NumPy. A weight b without batch dims shared by a batched a folds the batch into M
// (one plain matmul). Otherwise the batch is walked by the kernel (two levels of batch index with per-operand
// strides, 0 along broadcast dims) and, past two collapsed levels, by the host.
import type { Shape } from '../engine/tensor.ts';
import { broadcastShapes } from './elementwise-dispatch.ts';

interface Operand {
  /** element offset added to every index of this operand (host batch loop) */
  base: number;
}

/** One matmul problem as the kernels see it. */
export interface Problem {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** batch handled by the kernel: z in [0, nb), z1 = z / inner, z2 = z % inner */
  nb: number;
  inner: number;
  aS1: number;
  aS2: number;
  bS1: number;
  bS2: number;
  /** batch handled by the host: one entry per kernel batch, with each operand's base offset */
  outer: Array<{ a: Operand; b: Operand; c: Operand }>;
  outShape: number[];
  /** for error messages */
  desc: string;
}

function shapeStr(s: Shape): string {
  return `[${s.join(', ')}]`;
}

/** Strides (elements) of each batch dim of an operand seen from the broadcast batch shape; 0 along broadcast dims. */
export function batchStrides(batch: Shape, outBatch: Shape, matrix: number): number[] {
  const st = new Array<number>(outBatch.length).fill(0);
  let s = matrix;
  for (let d = batch.length - 1; d >= 0; d--) {
    const od = outBatch.length - batch.length + d;
    st[od] = batch[d] === 1 ? 0 : s;
    s *= batch[d]!;
  }
  return st;
}

export function problemOf(a: Shape, b: Shape, transA: boolean, transB: boolean, op = 'matmul'): Problem {
  const desc = `${op}(${shapeStr(a)}${transA ? 'ᵀ' : ''}, ${shapeStr(b)}${transB ? 'ᵀ' : ''})`;
  if (a.length < 2 || b.length < 2) {
    throw new RangeError(`${desc}: both operands need at least 2 dims ([..., M, K] and [..., K, N])`);
  }
  const [ar, ac] = [a[a.length - 2]!, a[a.length - 1]!];
  const [br, bc] = [b[b.length - 2]!, b[b.length - 1]!];
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const Kb = transB ? bc : br;
  const N = transB ? br : bc;
  if (K !== Kb) {
    throw new RangeError(`${desc}: inner dimensions differ (K = ${K} for a, ${Kb} for b)`);
  }
  const aBatch = a.slice(0, -2);
  const bBatch = b.slice(0, -2);
  let outBatch: number[];
  try {
    outBatch = broadcastShapes(op, [aBatch, bBatch]);
  } catch {
    throw new RangeError(`${desc}: batch dims ${shapeStr(aBatch)} and ${shapeStr(bBatch)} do not broadcast`);
  }
  const outShape = [...outBatch, M, N];
  // collapse the batch: drop size-1 dims, merge neighbours that both operands walk contiguously
  const sa = batchStrides(aBatch, outBatch, M * K);
  const sb = batchStrides(bBatch, outBatch, K * N);
  const dims: Array<{ size: number; a: number; b: number }> = [];
  outBatch.forEach((size, d) => {
    if (size === 1) return;
    const last = dims[dims.length - 1];
    if (last && last.a === sa[d]! * size && last.b === sb[d]! * size) {
      last.size *= size;
      last.a = sa[d]!;
      last.b = sb[d]!;
    } else {
      dims.push({ size, a: sa[d]!, b: sb[d]! });
    }
  });
  let Mk = M;
  // a weight shared by the whole batch: fold the batch into M (rows of a and of out are contiguous)
  if (dims.length === 1 && dims[0]!.b === 0 && dims[0]!.a === M * K && !transA) {
    Mk = M * dims[0]!.size;
    dims.length = 0;
  }
  const empty = outBatch.some((d) => d === 0);
  const kern = dims.slice(-2);
  const host = dims.slice(0, -2);
  const nb = kern.reduce((p, d) => p * d.size, 1);
  const prob: Problem = {
    M: Mk, N, K, transA, transB, nb,
    inner: kern.length === 2 ? kern[1]!.size : 1,
    aS1: kern[0]?.a ?? 0,
    aS2: kern[1]?.a ?? 0,
    bS1: kern[0]?.b ?? 0,
    bS2: kern[1]?.b ?? 0,
    outer: [],
    outShape,
    desc,
  };
  // host loop over the leading collapsed dims
  const hostCount = empty ? 0 : host.reduce((p, d) => p * d.size, 1);
  for (let i = 0; i < hostCount; i++) {
    let rest = i;
    let aB = 0;
    let bB = 0;
    for (let d = host.length - 1; d >= 0; d--) {
      const idx = rest % host[d]!.size;
      rest = Math.floor(rest / host[d]!.size);
      aB += idx * host[d]!.a;
      bB += idx * host[d]!.b;
    }
    prob.outer.push({ a: { base: aB }, b: { base: bB }, c: { base: i * nb * Mk * N } });
  }
  return prob;
}
