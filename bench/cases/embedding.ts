// Embedding gather: 4096 ids from the t5-small table 32128x512, and the deterministic scatter-add backward.
// gather bytes = rows read + rows written + ids; backward bytes = dout read + the dense [V, D] gradient written.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { embedding, embeddingBackward, embeddingBackwardReference, embeddingReference } from '../../kernels/embedding.ts';
import type { BenchCase } from '../types.ts';

function make(N: number, V: number, D: number, kind: 'gather' | 'backward'): BenchCase {
  return {
    op: 'embedding',
    shape: `${N}x${V}x${D}${kind === 'backward' ? ' backward' : ''}`,
    dtype: 'f32',
    bytes: kind === 'gather' ? (2 * N * D + N) * 4 : (N * D + V * D + N) * 4,
    setup() {
      const ids = Int32Array.from({ length: N }, () => Math.floor(Math.random() * V));
      const wh = Float32Array.from({ length: kind === 'gather' ? V * D : 0 }, () => Math.random() - 0.5);
      const dh = Float32Array.from({ length: kind === 'backward' ? N * D : 0 }, () => Math.random() - 0.5);
      const w = kind === 'gather' ? tensor(wh, [V, D]) : null;
      const dout = kind === 'backward' ? tensor(dh, [N, D]) : null;
      // a plain GPU ids tensor: the backward plans its sort on the GPU, as for model inputs
      const idsT = tensor(ids, [N]);
      let out: Tensor | null = null;
      return {
        run() {
          out?.dispose();
          out = kind === 'gather' ? embedding(w!, idsT) : embeddingBackward(dout!, idsT, V);
        },
        async check() {
          if (!out) this.run();
          const got = await out!.toArray();
          const ref = kind === 'gather' ? embeddingReference(wh, D, ids) : embeddingBackwardReference(dh, D, ids, V);
          let e = 0;
          for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(got[i]! - ref[i]!) / Math.max(Math.abs(ref[i]!), 1e-3));
          return e;
        },
        dispose() {
          for (const t of [w, dout, idsT, out]) t?.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  const shapes = sizes ?? ['4096x32128x512', '4096x32128x512 backward'];
  return shapes.map((s) => {
    const [N, V, D] = s.split(' ')[0]!.split('x').map(Number) as [number, number, number];
    return make(N, V, D, s.includes('backward') ? 'backward' : 'gather');
  });
}
