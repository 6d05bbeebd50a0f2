// LayerNorm forward rows (F.layer_norm over the last axis): 4096x512.
// bytes = x read + weight and bias read + y written + mean and rstd written.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { layerNormForward, layerNormReference } from '../../kernels/layernorm.ts';
import type { BenchCase } from '../types.ts';
import { maxRelErr } from './rmsnorm.ts';

function make(rows: number, D: number): BenchCase {
  return {
    op: 'layernorm',
    shape: `${rows}x${D}`,
    dtype: 'f32',
    bytes: (2 * rows * D + 2 * D + 2 * rows) * 4,
    setup() {
      const xh = Float32Array.from({ length: rows * D }, () => Math.random() * 4 - 2);
      const wh = Float32Array.from({ length: D }, () => Math.random() + 0.5);
      const bh = Float32Array.from({ length: D }, () => Math.random() - 0.5);
      const ts = [tensor(xh, [rows, D]), tensor(wh, [D]), tensor(bh, [D])] as const;
      let out: { y: Tensor; mean: Tensor; rstd: Tensor } | null = null;
      const drop = () => [out?.y, out?.mean, out?.rstd].forEach((t) => t?.dispose());
      return {
        run() {
          drop();
          out = layerNormForward(ts[0], ts[1], ts[2], 1e-5);
        },
        async check() {
          if (!out) this.run();
          return maxRelErr(await out!.y.toArray(), layerNormReference(xh, wh, bh, 1e-5).y);
        },
        dispose() {
          drop();
          ts.forEach((t) => t.dispose());
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  return (sizes ?? ['4096x512']).map((s) => {
    const [rows, D] = s.split('x').map(Number) as [number, number];
    return make(rows, D);
  });
}
