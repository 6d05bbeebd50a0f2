// Seeded random data for tests: every run, and every failure, sees the same values. Two generators, because
// the tests' data was drawn from both and must stay what it is:
// - mulberry32 (util/mulberry32.ts's generator, as floats);
// - the C library's LCG x' = x * 1103515245 + 12345 mod 2^32, with the product taken in float64 as the tests
//   always took it (it exceeds 2^53, so low bits are lost: not the exact 32-bit LCG, but a fixed sequence).
import { mulberry32 as mulberry32Bits } from '../../util/mulberry32.ts';

/** mulberry32 as uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  const next = mulberry32Bits(seed);
  return () => next() / 4294967296;
}

/** The float64 LCG above as uniform floats in [0, 1). */
export function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

/** n values uniform in [offset - scale, offset + scale), each rounded once to float32. */
export function uniformFloats(rand: () => number, n: number, scale = 1, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale + offset);
}

/** n normal samples times `scale` (Box-Muller, two draws a sample: the radius first, then the angle). */
export function normalFloats(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return out;
}

/** n integers uniform in [0, bound). */
export function uniformInts(rand: () => number, n: number, bound: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rand() * bound));
}
