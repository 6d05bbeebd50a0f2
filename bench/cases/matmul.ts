// matmul rows: square 512³..2048³, the t5-small shapes (feed-forward in and out over 4096 tokens, the LM head
// with its 526 MB output, bound in ranges), and batched attention-like 64 x (256x64 @ 64x256).
// Shape strings are MxKxN, or BxMxKxN for a batch (both operands batched); a trailing ' tA' / ' tB' runs the
// transposed layouts (t5's linear layers are x @ Wᵀ: '4096x512x2048 tB'). flops = 2·M·N·K·batch.
// check(): the largest error, relative to Σ|a·b| of the element, over sampled outputs against float64.
import { tensor, type Tensor } from '../../engine/tensor.ts';
import { matmul, matmulVariantFor } from '../../kernels/matmul.ts';
import { matmulRefAt } from '../../kernels/matmul-reference.ts';
import type { BenchCase } from '../types.ts';

export const DEFAULT_SIZES = [
  '512x512x512',
  '1024x1024x1024',
  '2048x2048x2048',
  '4096x512x2048',
  '4096x2048x512',
  '4096x512x32128',
  '64x256x64x256',
];

/** output elements checked per case (all of them when fewer) */
const CHECK_SAMPLES = 3000;

interface Parsed {
  batch: number;
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
  aShape: number[];
  bShape: number[];
}

export function parseMatmulShape(shape: string): Parsed {
  const m = /^\s*(\d+(?:x\d+){2,3})((?:\s+t[AB])*)\s*$/.exec(shape);
  if (!m) throw new Error(`bench matmul: cannot read shape '${shape}' (MxKxN or BxMxKxN, optionally ' tA' / ' tB')`);
  const dims = m[1]!.split('x').map(Number);
  const [batch, M, K, N] = (dims.length === 4 ? dims : [1, ...dims]) as [number, number, number, number];
  const transA = /tA/.test(m[2]!);
  const transB = /tB/.test(m[2]!);
  const lead = dims.length === 4 ? [batch] : [];
  return {
    batch, M, K, N, transA, transB,
    aShape: [...lead, ...(transA ? [K, M] : [M, K])],
    bShape: [...lead, ...(transB ? [N, K] : [K, N])],
  };
}

/** The variant matmul runs for a case now, and why: 'packed (autotuned)', 'subgroup (autotune off)', ... */
export function variantFor(c: BenchCase): string {
  const p = parseMatmulShape(c.shape);
  return matmulVariantFor(p.aShape, p.bShape, { transA: p.transA, transB: p.transB });
}

function uniform(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

function make(shape: string): BenchCase {
  const p = parseMatmulShape(shape);
  return {
    op: 'matmul',
    shape,
    dtype: 'f32',
    flops: 2 * p.M * p.N * p.K * p.batch,
    setup() {
      const ah = uniform(p.aShape.reduce((x, y) => x * y, 1), 1);
      const bh = uniform(p.bShape.reduce((x, y) => x * y, 1), 2);
      const a = tensor(ah, p.aShape);
      const b = tensor(bh, p.bShape);
      let out: Tensor | null = null;
      const opts = { transA: p.transA, transB: p.transB };
      return {
        run() {
          out?.dispose();
          out = matmul(a, b, opts);
        },
        async check() {
          if (!out) this.run();
          const got = await out!.toFloat32();
          const total = p.batch * p.M * p.N;
          const n = Math.min(total, CHECK_SAMPLES);
          let err = 0;
          for (let i = 0; i < n; i++) {
            // every element when few; else a spread that includes the last rows and columns (partial tiles)
            const e = total <= CHECK_SAMPLES ? i : i < 64 ? (((total - 1 - i * 997) % total) + total) % total : Math.floor((((i * 2654435761) % 2 ** 32) / 2 ** 32) * total);
            const z = Math.floor(e / (p.M * p.N));
            const m = Math.floor(e / p.N) % p.M;
            const col = e % p.N;
            const r = matmulRefAt(ah, p.aShape, bh, p.bShape, z, m, col, opts);
            err = Math.max(err, Math.abs(got[e]! - r.value) / Math.max(r.magnitude, 1e-30));
          }
          return err;
        },
        dispose() {
          for (const t of [a, b, out]) t?.dispose();
        },
      };
    },
  };
}

export function cases(sizes: string[] = DEFAULT_SIZES): BenchCase[] {
  return sizes.map(make);
}
