// Cross-entropy rows against the t5-small vocabulary: 4096x32128 (a 8x512 target batch) and 256x32128.
// forward: bytes = logits read once + labels read + row losses and logsumexp written;
// backward: logits read once + dlogits written (softmax recomputed from the saved logsumexp).
import { backward } from '../../engine/autograd.ts';
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { crossEntropy, crossEntropyReference } from '../../kernels/cross-entropy.ts';
import type { BenchCase } from '../types.ts';

function make(N: number, V: number, withBackward: boolean): BenchCase {
  return {
    op: 'cross-entropy',
    shape: `${N}x${V}${withBackward ? ' backward' : ''}`,
    dtype: 'f32',
    bytes: withBackward ? 2 * N * V * 4 : (N * V + 3 * N) * 4,
    setup() {
      const xh = new Float32Array(N * V);
      for (let i = 0; i < xh.length; i++) xh[i] = Math.random() * 16 - 8;
      const labels = Int32Array.from({ length: N }, (_, i) => (i % 7 === 6 ? -100 : Math.floor(Math.random() * V)));
      const x = tensor(xh, [N, V], { requiresGrad: withBackward });
      let loss: Tensor | null = null;
      return {
        run() {
          loss?.dispose();
          x.grad?.dispose();
          x.grad = null;
          loss = crossEntropy(x, labels);
          if (withBackward) backward(loss);
        },
        async check() {
          if (!loss) this.run();
          const ref = crossEntropyReference(xh, labels, V);
          if (!withBackward) return Math.abs((await loss!.item()) - ref.mean) / Math.abs(ref.mean);
          // dlogits of row 0 and the last row against the float64 softmax − onehot, / count
          const g = await x.grad!.toArray();
          let err = 0;
          for (const r of [0, N - 1]) {
            if (labels[r] === -100) continue;
            let m = -Infinity;
            for (let j = 0; j < V; j++) m = Math.max(m, xh[r * V + j]!);
            let s = 0;
            for (let j = 0; j < V; j++) s += Math.exp(xh[r * V + j]! - m);
            for (let j = 0; j < V; j++) {
              const want = (Math.exp(xh[r * V + j]! - m) / s - (j === labels[r] ? 1 : 0)) / ref.count;
              err = Math.max(err, Math.abs(g[r * V + j]! - want) / Math.max(Math.abs(want), 1e-3 / ref.count));
            }
          }
          return err;
        },
        dispose() {
          loss?.dispose();
          x.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  const shapes = sizes ?? ['4096x32128', '256x32128', '4096x32128 backward'];
  return shapes.map((s) => {
    const [N, V] = s.split(' ')[0]!.split('x').map(Number) as [number, number];
    return make(N, V, s.includes('backward'));
  });
}
