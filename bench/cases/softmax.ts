// Softmax rows: a plain 16384x256 and attention-like scores 64x256x256 with a [1, 1, 256, 256] mask
// (as [B*H, Lq, Lk] against a causal-style additive mask). bytes = x (+ mask) read once + y written once.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { broadcastIndexer, softmax, softmaxBackward, softmaxReference } from '../../kernels/softmax.ts';
import type { BenchCase } from '../types.ts';

const FINFO_MIN = -3.4028234663852886e38;

function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let peak = 0;
  for (let i = 0; i < ref.length; i++) peak = Math.max(peak, Math.abs(ref[i]!));
  let e = 0;
  for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(got[i]! - ref[i]!) / Math.max(Math.abs(ref[i]!), peak * 1e-3));
  return e;
}

function make(shape: number[], masked: boolean): BenchCase {
  const n = shape.reduce((a, b) => a * b, 1);
  const L = shape[shape.length - 1]!;
  const maskShape = [1, shape[shape.length - 2] ?? 1, L];
  const maskN = masked ? maskShape.reduce((a, b) => a * b, 1) : 0;
  return {
    op: 'softmax',
    shape: shape.join('x') + (masked ? ' masked' : ''),
    dtype: 'f32',
    bytes: (2 * n + maskN) * 4,
    setup() {
      const xh = Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
      // causal: column j visible from row i when j <= i
      const mh = masked ? Float32Array.from({ length: maskN }, (_, i) => (i % L <= Math.floor(i / L) % maskShape[1]! ? 0 : FINFO_MIN)) : undefined;
      const x = tensor(xh, shape);
      const mask = mh ? tensor(mh, maskShape) : undefined;
      let y: Tensor | null = null;
      return {
        run() {
          y?.dispose();
          y = softmax(x, { mask });
        },
        async check() {
          if (!y) this.run();
          const ref = softmaxReference(xh, L, mh ? broadcastIndexer(shape, mh, maskShape) : undefined);
          return maxRelErr(await y!.toArray(), ref);
        },
        dispose() {
          for (const t of [x, mask, y]) t?.dispose();
        },
      };
    },
  };
}

/** dx = y ⊙ (dy − Σ dy ⊙ y): y and dy read twice (the row's dot product, then the write pass, from cache), dx written. */
function makeBackward(shape: number[]): BenchCase {
  const n = shape.reduce((a, b) => a * b, 1);
  const L = shape[shape.length - 1]!;
  return {
    op: 'softmax',
    shape: `${shape.join('x')} backward`,
    dtype: 'f32',
    bytes: 3 * n * 4,
    setup() {
      const xh = Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
      const gh = Float32Array.from({ length: n }, () => Math.random() - 0.5);
      const yh = softmaxReference(xh, L);
      const y = tensor(Float32Array.from(yh), shape);
      const dy = tensor(gh, shape);
      let dx: Tensor | null = null;
      return {
        run() {
          dx?.dispose();
          dx = softmaxBackward(dy, y);
        },
        async check() {
          if (!dx) this.run();
          const want = new Float64Array(n);
          for (let r = 0; r < n / L; r++) {
            let d = 0;
            for (let j = 0; j < L; j++) d += yh[r * L + j]! * gh[r * L + j]!;
            for (let j = 0; j < L; j++) want[r * L + j] = yh[r * L + j]! * (gh[r * L + j]! - d);
          }
          return maxRelErr(await dx!.toArray(), want);
        },
        dispose() {
          for (const t of [y, dy, dx]) t?.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  if (sizes) {
    return sizes.map((s) => {
      const shape = s.split(' ')[0]!.split('x').map(Number);
      return s.includes('backward') ? makeBackward(shape) : make(shape, s.includes('masked'));
    });
  }
  return [make([16384, 256], false), make([64, 256, 256], true), makeBackward([16384, 256])];
}
