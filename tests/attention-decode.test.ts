// The decode-attention kernel (kernels/attention-decode.ts) against its float64 reference on awkward sizes: rows
// 1 and primes, head dims that are not multiples of 4 (the scalar kernel), lengths 1 and the whole capacity,
// random index tables, fewer slots than rows. Cache entries no table entry points at, and positions past the
// length, hold NaN: reading one would show. Outputs start as NaN (poisoning), so an unwritten one shows too.
import { describe, expect, it } from 'vitest';
import { noGrad } from '../engine/autograd.ts';
import { memory, tensor } from '../engine/tensor.ts';
import { decodeAttention, decodeAttentionRef, type DecodeAttentionRefInput } from '../kernels/attention-decode.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { mulberry32 } from './helpers/random-data.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';

usePoisonedGpu();

// deterministic uniform [0, 1)
const rng = mulberry32;

interface Case {
  rows: number;
  heads: number;
  dk: number;
  length: number;
  capacity: number;
  /** physical rows of the cache; default rows */
  slots?: number;
}

function build(c: Case, seed: number): DecodeAttentionRefInput {
  const r = rng(seed);
  const slots = c.slots ?? c.rows;
  const { rows, heads, dk, length, capacity } = c;
  const src = new Int32Array(length * rows);
  for (let i = 0; i < src.length; i++) src[i] = Math.floor(r() * slots);
  const q = Float32Array.from({ length: rows * heads * dk }, () => r() - 0.5);
  const k = new Float32Array(capacity * slots * heads * dk).fill(NaN);
  const v = new Float32Array(k.length).fill(NaN);
  for (let j = 0; j < length; j++)
    for (let row = 0; row < rows; row++) {
      const at = (j * slots + src[j * rows + row]!) * heads * dk;
      for (let e = at; e < at + heads * dk; e++) {
        k[e] = r() - 0.5;
        v[e] = 2 * r() - 1;
      }
    }
  const bias = Float32Array.from({ length: heads * length }, () => 4 * r() - 2);
  return { q, k, v, src, bias, dims: { rows, heads, dk, length, slots } };
}

// f32 dot products of length dk and an online softmax over `length` keys: a few ulps against float64; a wrong
// slot or position moves an output by O(0.1)
const TOL = 1e-5;

const CASES: Case[] = [
  { rows: 1, heads: 1, dk: 4, length: 1, capacity: 1 },
  { rows: 1, heads: 8, dk: 64, length: 1, capacity: 32 },
  { rows: 7, heads: 3, dk: 16, length: 13, capacity: 13 }, // length = capacity
  { rows: 5, heads: 2, dk: 7, length: 9, capacity: 11 }, // scalar kernel
  { rows: 13, heads: 5, dk: 6, length: 1, capacity: 4 }, // scalar kernel, dk even but not a multiple of 4
  { rows: 11, heads: 3, dk: 12, length: 17, capacity: 20, slots: 4 }, // fewer slots than rows
  { rows: 67, heads: 3, dk: 8, length: 5, capacity: 6 }, // several workgroups (201 (row, head) pairs)
];

/** Runs case c through the kernel against the reference; `stacked`: q as the first block of [3, rows, H, dk] whose
 * other two blocks hold NaN (a step's stacked q, k, v projections). */
async function check(c: Case, seed: number, stacked = false): Promise<void> {
  const x = build(c, seed);
  const { rows, heads, dk, length, slots } = x.dims;
  const qData = new Float32Array((stacked ? 3 : 1) * rows * heads * dk).fill(NaN);
  qData.set(x.q);
  const q = tensor(qData, stacked ? [3, rows, heads, dk] : [rows, heads, dk]);
  const k = tensor(Float32Array.from(x.k), [c.capacity, slots, heads, dk]);
  const v = tensor(Float32Array.from(x.v), [c.capacity, slots, heads, dk]);
  const src = tensor(Int32Array.from(x.src), [length, rows], { dtype: 'i32' });
  const bias = tensor(Float32Array.from(x.bias), [heads, length]);
  const out = noGrad(() => decodeAttention({ q, k, v, src, bias }));
  expect(out.shape).toEqual([rows, heads, dk]);
  const got = await out.toArray();
  expect(relMaxErr(got, decodeAttentionRef(x))).toBeLessThan(TOL);
  for (const t of [q, k, v, src, bias, out]) t.dispose();
}

describe('decodeAttention', () => {
  for (const [n, c] of CASES.entries()) {
    it(`matches the float64 reference: rows ${c.rows} H ${c.heads} dk ${c.dk} length ${c.length}/${c.capacity} slots ${c.slots ?? c.rows}`, () =>
      check(c, 10 + n));
  }

  it('reads the first block of stacked q, k, v projections [3, rows, H, dk] (the other two hold NaN)', async () => {
    await check(CASES[2]!, 50, true);
    await check(CASES[6]!, 51, true);
  });

  it('refuses inputs that need a gradient, and bad shapes, with a message naming them', () => {
    const before = memory().bytesLive;
    const q = tensor(new Float32Array(8), [1, 2, 4], { requiresGrad: true });
    const k = tensor(new Float32Array(24), [3, 1, 2, 4]);
    const src = tensor(new Int32Array(2), [2, 1], { dtype: 'i32' });
    const bias = tensor(new Float32Array(4), [2, 2]);
    expect(() => decodeAttention({ q, k, v: k, src, bias })).toThrow(/q requires grad.*noGrad/);
    const badBias = tensor(new Float32Array(3), [1, 3]);
    expect(() => noGrad(() => decodeAttention({ q, k, v: k, src, bias: badBias }))).toThrow(/bias must be \[2, 2\]/);
    const long = tensor(new Int32Array(4), [4, 1], { dtype: 'i32' });
    expect(() => noGrad(() => decodeAttention({ q, k, v: k, src: long, bias }))).toThrow(/length <= capacity 3/);
    for (const t of [q, k, src, bias, badBias, long]) t.dispose();
    expect(memory().bytesLive).toBe(before);
  });
});
