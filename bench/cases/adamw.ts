// AdamW step over a model's worth of parameters: t5-small's 60,506,624 as a few big tensors (the 32128x512 embedding
// and the rest in pieces of that size), and 1M. Memory-bound: per element 4 floats read (p, g, m, v) and 3 written.
import { adamwReference, adamwStep, type AdamWHyper } from '../../kernels/adamw.ts';
import { rt } from '../../engine/runtime.ts';
import { tensor, type Tensor } from '../../engine/tensor.ts';
import type { BenchCase } from '../types.ts';

const T5_SMALL_PARAMS = 60_506_624;
const EMBEDDING = 32128 * 512;
const HYPER: AdamWHyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, variant: 'torch' };

function parseElements(shape: string): number {
  return shape.split('x').map(Number).reduce((a, b) => a * b, 1);
}

/** Tensors of at most the embedding's size, as a model's parameter list would be. */
export function splitSizes(n: number): number[] {
  const out: number[] = [];
  for (let left = n; left > 0; left -= EMBEDDING) out.push(Math.min(EMBEDDING, left));
  return out;
}

function fill(n: number, seed: number, f: (u: number) => number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = f(s / 4294967296);
  }
  return out;
}

export function cases(sizes: string[] = [`${T5_SMALL_PARAMS}`, '1048576']): BenchCase[] {
  return sizes.map((shape) => {
    const n = parseElements(shape);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`adamw bench: cannot read an element count from '${shape}'`);
    const parts = splitSizes(n);
    return {
      op: 'adamw',
      shape: `${shape} (${parts.length} tensor${parts.length > 1 ? 's' : ''}${n === T5_SMALL_PARAMS ? ', t5-small' : ''})`,
      dtype: 'f32',
      bytes: 7 * 4 * n,
      setup() {
        const sets = parts.map((k, j) => ({
          p: tensor(fill(k, 4 * j + 1, (u) => u - 0.5), [k]),
          g: tensor(fill(k, 4 * j + 2, (u) => (u - 0.5) * 1e-2), [k]),
          m: tensor(fill(k, 4 * j + 3, (u) => (u - 0.5) * 1e-3), [k]),
          v: tensor(fill(k, 4 * j + 4, (u) => u * 1e-5), [k]),
        }));
        let step = 0;
        const all = (): Tensor[] => sets.flatMap((s) => [s.p, s.g, s.m, s.v]);
        return {
          run() {
            step++;
            for (const s of sets) adamwStep(s.p, s.g, s.m, s.v, step, HYPER);
          },
          // one more step of the last tensor against the float64 reference; error per array as
          // max|Δ| / max|reference| (m can cancel to ~0, where an elementwise ratio means nothing)
          async check() {
            const s = sets[sets.length - 1]!;
            const [p, g, m, v] = await Promise.all([s.p, s.g, s.m, s.v].map((t) => t.toFloat32()));
            const ref = { p: Float64Array.from(p!), m: Float64Array.from(m!), v: Float64Array.from(v!) };
            step++;
            adamwStep(s.p, s.g, s.m, s.v, step, HYPER);
            adamwReference(ref.p, g!, ref.m, ref.v, step, HYPER);
            let err = 0;
            for (const [t, want] of [[s.p, ref.p], [s.m, ref.m], [s.v, ref.v]] as const) {
              const got = await t.toFloat32();
              let d = 0;
              let scale = 0;
              for (let i = 0; i < want.length; i++) {
                d = Math.max(d, Math.abs(got[i]! - want[i]!));
                scale = Math.max(scale, Math.abs(want[i]!));
              }
              err = Math.max(err, d / scale);
            }
            await rt().sync();
            return err;
          },
          dispose() {
            for (const t of all()) t.dispose();
          },
        };
      },
    };
  });
}
