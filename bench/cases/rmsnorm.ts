// T5LayerNorm (RMSNorm) forward rows: t5-small 4096x512 and t5-base 16384x768.
// bytes = x read + weight read + y written + rstd written.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { rmsNormForward, rmsNormReference } from '../../kernels/rmsnorm.ts';
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

export function cases(sizes?: string[]): BenchCase[] {
  const shapes = sizes ?? ['4096x512', '16384x768'];
  return shapes.map((s) => {
    const [rows, D] = s.split('x').map(Number) as [number, number];
    return make(rows, D);
  });
}
