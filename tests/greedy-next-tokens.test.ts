import { describe, expect, it } from 'vitest';
import { gpu } from '../engine/gpu.ts';
import { tensor } from '../engine/tensor.ts';
import { GREEDY_OUT_FIELDS, greedyNextTokens, greedyNextTokensRef } from '../kernels/greedy-next-tokens.ts';
import type { RowImpl } from '../kernels/row-kernel.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { mulberry32 } from './helpers/random-data.ts';

usePoisonedGpu();

interface Case {
  rows: number;
  vocab: number;
  eos: number[];
  /** per row: 'plain' random, 'ties' the max planted at several places, 'ninf' all -inf, 'nan' NaNs planted */
  kinds?: Array<'plain' | 'ties' | 'ninf' | 'nan'>;
}

const CASES: Case[] = [
  { rows: 1, vocab: 1, eos: [] },
  { rows: 3, vocab: 5, eos: [1], kinds: ['ties', 'plain', 'ninf'] },
  { rows: 7, vocab: 13, eos: [1, 5], kinds: ['plain', 'ties', 'nan', 'plain', 'ninf', 'ties', 'plain'] },
  { rows: 5, vocab: 131, eos: [2], kinds: ['ties', 'nan', 'plain', 'plain', 'ties'] }, // prime, not a multiple of 4
  { rows: 2, vocab: 1028, eos: [1], kinds: ['ties', 'nan'] }, // vec4 rows, several per lane
  { rows: 4, vocab: 32128, eos: [1], kinds: ['plain', 'ties', 'nan', 'ties'] }, // t5's vocabulary
];

function build(c: Case, seed: number): { logits: Float32Array; unfinished: Int32Array } {
  const r = mulberry32(seed);
  const logits = new Float32Array(c.rows * c.vocab);
  for (let i = 0; i < logits.length; i++) logits[i] = Math.round((r() * 2 - 1) * 64) / 8; // coarse: natural ties too
  for (let row = 0; row < c.rows; row++) {
    const kind = c.kinds?.[row] ?? 'plain';
    const at = (k: number) => row * c.vocab + k;
    if (kind === 'ties') {
      // the maximum at 3 places; the lowest one must win
      for (let k = 0; k < 3; k++) logits[at(Math.floor(r() * c.vocab))] = 100;
    } else if (kind === 'ninf') {
      logits.fill(-Infinity, row * c.vocab, (row + 1) * c.vocab);
    } else if (kind === 'nan') {
      logits[at(Math.floor(r() * c.vocab))] = 1000; // a larger value elsewhere does not beat a NaN
      for (let k = 0; k < 2; k++) logits[at(Math.floor(r() * c.vocab))] = NaN;
    }
  }
  // about a third of the rows already finished (they take the pad token)
  const unfinished = Int32Array.from({ length: c.rows }, () => (r() < 0.35 ? 0 : 1));
  return { logits, unfinished };
}

const IMPLS: RowImpl[] = ['subgroup', 'invocation', 'workgroup'];

describe('greedyNextTokens', () => {
  for (const impl of IMPLS) {
    for (const [n, c] of CASES.entries()) {
      it(`${impl}: rows ${c.rows} vocab ${c.vocab} eos [${c.eos}] ${c.kinds?.join(',') ?? ''}`, async (ctx) => {
        if (impl === 'subgroup' && !gpu().hasSubgroups) return ctx.skip();
        const { logits, unfinished } = build(c, 40 + n);
        const pad = c.vocab > 3 ? 3 : 0;
        const logitsT = tensor(logits, [c.rows, c.vocab]);
        const unfinishedT = tensor(unfinished, [c.rows], { dtype: 'i32' });
        const eosT = tensor(Int32Array.from(c.eos.length ? c.eos : [-1]), [Math.max(1, c.eos.length)], { dtype: 'i32' });
        const { next, out } = greedyNextTokens(logitsT, unfinishedT, eosT, c.eos.length, pad, { impl });
        const wantUnfinished = Int32Array.from(unfinished);
        const want = greedyNextTokensRef(logits, c.rows, c.vocab, wantUnfinished, c.eos, pad);
        const got = (await out.toArray()) as Int32Array;
        const gotNext = (await next.toArray()) as Int32Array;
        const bits = new Float32Array(got.buffer, got.byteOffset, got.length);
        for (let r = 0; r < c.rows; r++) {
          const [token, logit, nan] = want[r]!;
          expect([r, got[r * GREEDY_OUT_FIELDS]]).toEqual([r, token]);
          expect([r, gotNext[r]]).toEqual([r, token]);
          expect([r, bits[r * GREEDY_OUT_FIELDS + 1]]).toEqual([r, logit]);
          expect([r, got[r * GREEDY_OUT_FIELDS + 2]]).toEqual([r, nan]);
        }
        expect(Array.from((await unfinishedT.toArray()) as Int32Array)).toEqual(Array.from(wantUnfinished));
        for (const t of [logitsT, unfinishedT, eosT, next, out]) t.dispose();
      });
    }
  }

  it('the reference picks the lowest index among ties and the first NaN', () => {
    const logits = Float32Array.from([1, 5, 5, 2, /* row 1 */ 9, NaN, 9, NaN, /* row 2 */ -Infinity, -Infinity, -Infinity, -Infinity]);
    const unfinished = Int32Array.from([1, 1, 1]);
    expect(greedyNextTokensRef(logits, 3, 4, unfinished, [], 0).map((x) => [x[0], x[2]])).toEqual([[1, -1], [1, 1], [0, -1]]);
  });

  it('rejects bad shapes and a pad outside the vocabulary, naming the op', () => {
    const logits = tensor(new Float32Array(6), [2, 3]);
    const unfinished = tensor(Int32Array.from([1, 1]), [2], { dtype: 'i32' });
    const eos = tensor(Int32Array.from([1]), [1], { dtype: 'i32' });
    expect(() => greedyNextTokens(logits, tensor(Int32Array.from([1]), [1], { dtype: 'i32' }), eos, 1, 0)).toThrow(/greedyNextTokens: unfinished must be i32 \[2\]/);
    expect(() => greedyNextTokens(logits, unfinished, eos, 1, 3)).toThrow(/greedyNextTokens: pad 3 is outside the vocabulary \(size 3\)/);
    expect(() => greedyNextTokens(logits.reshape([6]), unfinished, eos, 1, 0)).toThrow(/greedyNextTokens: logits must be f32 \[rows, vocab >= 1\]/);
  });
});
