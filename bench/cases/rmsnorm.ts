// T5LayerNorm (RMSNorm) forward rows: t5-small 4096x512 and t5-base 16384x768, and the backward at 4096x512.
// forward bytes = x read + weight read + y written + rstd written; backward bytes = x and dy read twice (row
// kernel, then the weight-gradient column sums) + dx written (weight, rstd and partial sums neglected).
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { rmsNormBackward, rmsNormForward, rmsNormReference } from '../../kernels/rmsnorm.ts';
import type { BenchCase } from '../types.ts';

export function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(got[i]! - ref[i]!) / Math.max(Math.abs(ref[i]!), 1e-3));
  return e;
}

function make(rows: number, D: number): BenchCase {
  return {
    op: 'rmsnorm',
    shape: `${rows}x${D}`,
    dtype: 'f32',
    bytes: (2 * rows * D + D + rows) * 4,
    setup() {
      const xh = Float32Array.from({ length: rows * D }, () => Math.random() * 4 - 2);
      const wh = Float32Array.from({ length: D }, () => Math.random() + 0.5);
      const x = tensor(xh, [rows, D]);
      const w = tensor(wh, [D]);
      let out: { y: Tensor; rstd: Tensor } | null = null;
      return {
        run() {
          out?.y.dispose();
          out?.rstd.dispose();
          out = rmsNormForward(x, w, 1e-6);
        },
        async check() {
          if (!out) this.run();
          return maxRelErr(await out!.y.toArray(), rmsNormReference(xh, wh, 1e-6).y);
        },
        dispose() {
          for (const t of [x, w, out?.y, out?.rstd]) t?.dispose();
        },
      };
    },
  };
}

function makeBackward(rows: number, D: number): BenchCase {
  return {
    op: 'rmsnorm',
    shape: `${rows}x${D} backward`,
    dtype: 'f32',
    bytes: 5 * rows * D * 4,
    setup() {
      const xh = Float32Array.from({ length: rows * D }, () => Math.random() * 4 - 2);
      const wh = Float32Array.from({ length: D }, () => Math.random() + 0.5);
      const gh = Float32Array.from({ length: rows * D }, () => Math.random() - 0.5);
      const x = tensor(xh, [rows, D]);
      const w = tensor(wh, [D]);
      const dy = tensor(gh, [rows, D]);
      const { y, rstd } = rmsNormForward(x, w, 1e-6);
      y.dispose();
      let out: { dx: Tensor; dweight: Tensor } | null = null;
      return {
        run() {
          out?.dx.dispose();
          out?.dweight.dispose();
          out = rmsNormBackward(dy, x, w, rstd);
        },
        async check() {
          if (!out) this.run();
          // dweight against float64: Σ_rows dy ⊙ x ⋅ rstd
          const ref = rmsNormReference(xh, wh, 1e-6);
          const want = new Float64Array(D);
          for (let r = 0; r < rows; r++) for (let j = 0; j < D; j++) want[j] += gh[r * D + j]! * xh[r * D + j]! * ref.rstd[r]!;
          return maxRelErr(await out!.dweight.toArray(), want);
        },
        dispose() {
          for (const t of [x, w, dy, rstd, out?.dx, out?.dweight]) t?.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  const shapes = sizes ?? ['4096x512', '16384x768', '4096x512 backward'];
  return shapes.map((s) => {
    const [rows, D] = s.split(' ')[0]!.split('x').map(Number) as [number, number];
    return s.includes('backward') ? makeBackward(rows, D) : make(rows, D);
  });
}
