// Deterministic train/validation split: the same rows and seed always give the same two parts,
// on every machine, with no dependence on Math.random.
import { DataError } from '../util/data-error.ts';
import { mulberry32 } from '../util/mulberry32.ts';

export interface SplitOptions {
  /** Share of rows held out for validation, in [0, 1). Default 0.2. */
  validFraction?: number;
  /** Integer in [0, 2^32). Default 101. */
  seed?: number;
  /**
   * 'mulberry32' (default): Fisher-Yates driven by mulberry32.
   * 'sklearn': the exact split of scikit-learn's `train_test_split(rows, test_size=validFraction,
   * random_state=seed)` (numpy's legacy MT19937 permutation), for comparing with a Python run row for row.
   */
  method?: 'mulberry32' | 'sklearn';
}

export interface Split<T> {
  train: T[];
  valid: T[];
}

/** MT19937 seeded as numpy's legacy `RandomState(seed)` (init_genrand). */
export class Mt19937 {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1]! ^ (this.mt[i - 1]! >>> 30);
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  nextUint32(): number {
    if (this.index >= 624) this.twist();
    let y = this.mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.mt;
    for (let k = 0; k < 624; k++) {
      const y = (mt[k]! & 0x80000000) | (mt[(k + 1) % 624]! & 0x7fffffff);
      mt[k] = mt[(k + 397) % 624]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}

/** numpy `RandomState(seed).permutation(n)`: Fisher-Yates from the end, each index drawn by masked rejection. */
export function numpyPermutation(n: number, seed: number): number[] {
  const rng = new Mt19937(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i >= 1; i--) {
    // numpy's random_interval: the smallest all-ones mask covering i, redrawing values above i.
    let mask = i;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    let j: number;
    do j = (rng.nextUint32() & mask) >>> 0;
    while (j > i);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  return perm;
}

function mulberryPermutation(n: number, seed: number): number[] {
  const next = mulberry32(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i >= 1; i--) {
    // The bias of scaling a uint32 onto i + 1 values is below 2^-32 * n: irrelevant for a data split.
    const j = Math.floor((next() / 2 ** 32) * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  return perm;
}

/** Which positions go to each part; both lists keep the shuffled order, as scikit-learn returns them. */
export function splitIndices(n: number, options: SplitOptions = {}): Split<number> {
  const validFraction = options.validFraction ?? 0.2;
  const seed = options.seed ?? 101;
  const method = options.method ?? 'mulberry32';
  if (!(validFraction >= 0 && validFraction < 1)) throw new DataError(`validFraction must be in [0, 1) (got ${validFraction})`);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new DataError(`seed must be an integer in [0, 2^32) (got ${seed})`);
  if (method !== 'mulberry32' && method !== 'sklearn') throw new DataError(`unknown split method ${JSON.stringify(method)}`);
  // scikit-learn's rule (rounded up, on the floating-point product), so the sizes match train_test_split.
  const nValid = Math.ceil(validFraction * n);
  if (n - nValid < 1) {
    const rows = `${n} row${n === 1 ? '' : 's'}`;
    throw new DataError(`cannot split ${rows} with validFraction ${validFraction}: no rows would be left for training`);
  }
  const perm = method === 'sklearn' ? numpyPermutation(n, seed) : mulberryPermutation(n, seed);
  return { valid: perm.slice(0, nValid), train: perm.slice(nValid) };
}

export function splitRows<T>(rows: readonly T[], options: SplitOptions = {}): Split<T> {
  const { train, valid } = splitIndices(rows.length, options);
  return { train: train.map((i) => rows[i]!), valid: valid.map((i) => rows[i]!) };
}
