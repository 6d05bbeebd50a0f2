// matmul's float64 CPU reference, for tests and benchmarks.
import type { Shape } from '../engine/tensor.ts';
import type { Activation } from './matmul.wgsl.ts';
import { batchStrides, problemOf } from './matmul-problem.ts';

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: ArrayLike<number>;
  activation?: Activation;
}

export function geluRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/** out = act(op(a) · op(b) + bias) in float64, with batch broadcasting. */
export function matmulRef(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  opts: MatmulRefOptions = {},
): { data: Float64Array; shape: number[] } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = problemOf(aShape, bShape, transA, transB, 'matmulRef');
  const { N, K } = p;
  const outBatch = p.outShape.slice(0, -2);
  const nb = outBatch.reduce((x, y) => x * y, 1);
  const offsetsOf = operandOffsets(aShape, bShape, outBatch);
  const Mr = p.outShape[p.outShape.length - 2]!;
  const out = new Float64Array(nb * Mr * N);
  const act = opts.activation ?? 'none';
  for (let z = 0; z < nb; z++) {
    const { ao, bo } = offsetsOf(z);
    for (let m = 0; m < Mr; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * Mr + m : m * K + k)]!;
          const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
          s += av * bv;
        }
        if (opts.bias) s += opts.bias[n]!;
        if (act === 'relu') s = Math.max(s, 0);
        else if (act === 'gelu') s = geluRef(s);
        out[(z * Mr + m) * N + n] = s;
      }
    }
  }
  return { data: out, shape: p.outShape };
}

/** One output element of matmulRef, for spot checks of large products: out[...batch, m, n]. */
export function matmulRefAt(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  z: number,
  m: number,
  n: number,
  opts: MatmulRefOptions = {},
): { value: number; magnitude: number } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = problemOf(aShape, bShape, transA, transB, 'matmulRefAt');
  const outBatch = p.outShape.slice(0, -2);
  const Mr = p.outShape[p.outShape.length - 2]!;
  const { N, K } = p;
  const { ao, bo } = operandOffsets(aShape, bShape, outBatch)(z);
  let s = 0;
  let mag = 0;
  for (let k = 0; k < K; k++) {
    const av = a[ao + (transA ? k * Mr + m : m * K + k)]!;
    const bv = b[bo + (transB ? n * K + k : k * N + n)]!;
    s += av * bv;
    mag += Math.abs(av * bv);
  }
  if (opts.bias) {
    s += opts.bias[n]!;
    mag += Math.abs(opts.bias[n]!);
  }
  const act = opts.activation ?? 'none';
  if (act === 'relu') s = Math.max(s, 0);
  else if (act === 'gelu') s = geluRef(s);
  return { value: s, magnitude: mag };
}

/** Output batch index -> where its matrices of a and b start (broadcast batch axes have stride 0). */
function operandOffsets(aShape: Shape, bShape: Shape, outBatch: Shape): (z: number) => { ao: number; bo: number } {
  const sa = batchStrides(aShape.slice(0, -2), outBatch, aShape[aShape.length - 1]! * aShape[aShape.length - 2]!);
  const sb = batchStrides(bShape.slice(0, -2), outBatch, bShape[bShape.length - 1]! * bShape[bShape.length - 2]!);
  return (z) => {
    let rest = z;
    let ao = 0;
    let bo = 0;
    for (let d = outBatch.length - 1; d >= 0; d--) {
      const i = rest % outBatch[d]!;
      rest = Math.floor(rest / outBatch[d]!);
      ao += i * sa[d]!;
      bo += i * sb[d]!;
    }
    return { ao, bo };
  };
}
