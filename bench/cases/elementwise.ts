// Elementwise and reduction rows: memory-bound, so they report GB/s (bytes read + written) against the copy
// kernel's ceiling.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { add, ewRef, gelu } from '../../kernels/elementwise.ts';
import { reduceRef, sum } from '../../kernels/reduce.ts';
import { permute, permuteRef } from '../../kernels/layout.ts';
import { dropout, dropoutRef } from '../../kernels/random.ts';
import type { BenchCase, BenchInstance } from '../types.ts';

function randomData(n: number, seed: number): Float32Array {
  // a small LCG: benchmark data needs no quality, only speed and repeatability
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** relative to max(1, |ref|): sums of random signs come arbitrarily close to 0, where a pure relative error
 * measures only the summation order */
function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!));
    if (!(e <= err)) err = Number.isNaN(e) ? Infinity : e;
  }
  return err;
}

function instance(inputs: { data: Float32Array; shape: number[] }[], op: (ts: Tensor[]) => Tensor, ref: () => ArrayLike<number>): BenchInstance {
  const ts = inputs.map((i) => tensor(i.data, i.shape));
  let out: Tensor | null = null;
  return {
    run() {
      out?.dispose();
      out = op(ts);
    },
    async check() {
      if (!out) out = op(ts);
      return maxRelErr(await out.toArray(), ref());
    },
    dispose() {
      out?.dispose();
      for (const t of ts) t.dispose();
    },
  };
}

const shapeName = (s: number[]) => s.join('x');

export function cases(): BenchCase[] {
  const N = 16 * 1024 * 1024;
  const binary = (name: string, sa: number[], sb: number[]): BenchCase => {
    const na = sa.reduce((a, b) => a * b, 1);
    const nb = sb.reduce((a, b) => a * b, 1);
    return {
      op: 'elementwise',
      shape: sa.join() === sb.join() ? `${name} ${shapeName(sa)}` : `${name} ${shapeName(sa)}+${shapeName(sb)}`,
      dtype: 'f32',
      bytes: 4 * (na + nb + na),
      setup() {
        const a = { data: randomData(na, 1), shape: sa };
        const b = { data: randomData(nb, 2), shape: sb };
        return instance([a, b], ([x, y]) => add(x!, y!), () => ewRef(name, [a, b]));
      },
    };
  };
  const unary = (name: string, s: number[], f: (x: Tensor) => Tensor): BenchCase => {
    const n = s.reduce((a, b) => a * b, 1);
    return {
      op: 'elementwise',
      shape: `${name} ${shapeName(s)}`,
      dtype: 'f32',
      bytes: 8 * n,
      setup() {
        const x = { data: randomData(n, 3).map((v) => v * 4), shape: s };
        return instance([x], ([t]) => f(t!), () => ewRef(name, [x]));
      },
    };
  };
  const rowSum = (s: [number, number]): BenchCase => ({
    op: 'elementwise',
    shape: `sum(-1) ${shapeName(s)}`,
    dtype: 'f32',
    bytes: 4 * (s[0] * s[1] + s[0]),
    setup() {
      const x = { data: randomData(s[0] * s[1], 4), shape: s };
      return instance([x], ([t]) => sum(t!, -1), () => reduceRef('sum', x.data, s, [1]).data);
    },
  });
  const extra: BenchCase[] = [
    {
      op: 'elementwise',
      shape: `dropout(0.1) ${N}`,
      dtype: 'f32',
      bytes: 8 * N,
      setup() {
        const x = { data: randomData(N, 5), shape: [N] };
        return instance([x], ([t]) => dropout(t!, 0.1, { seed: 1, offset: 0 }), () => dropoutRef(x.data, 0.1, 1, 0));
      },
    },
    {
      // T5 attention's head split: [B, L, H, D] -> [B, H, L, D] (t5-small: H = 8, D = 64)
      op: 'elementwise',
      shape: 'permute(0,2,1,3) 32x512x8x64',
      dtype: 'f32',
      bytes: 8 * 32 * 512 * 8 * 64,
      setup() {
        const shape = [32, 512, 8, 64];
        const x = { data: randomData(shape.reduce((a, b) => a * b, 1), 6), shape };
        return instance([x], ([t]) => permute(t!, [0, 2, 1, 3]), () => permuteRef(x.data, shape, [0, 2, 1, 3]));
      },
    },
  ];
  return [
    binary('add', [N], [N]),
    unary('gelu', [N], gelu),
    binary('add', [4096, 2048], [2048]),
    rowSum([16384, 256]),
    rowSum([256, 32128]),
    ...extra,
  ];
}
