// The project's seeded generator: the data split and shuffles (train/) and sampled generation (generate/) draw
// from it, so a seed gives the same result on every machine, with no dependence on Math.random.

/**
 * mulberry32 (Tommy Ettinger, public domain): a 32-bit state advanced by a Weyl step and mixed by two
 * multiply-xorshift rounds. Small, fast and well distributed for shuffling and sampling; not for cryptography.
 * Returns a generator of uint32 values.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
