// Logits processors against restatements of HF 4.36's code (the n-gram dictionary of `_get_ngrams`) and hand
// cases; log_softmax against float64. Bounds: the processors only write -inf (exact comparisons); log_softmax is
// rounded once from float64, so within half a float32 ulp of the float64 value plus the float64 error: 1e-7
// relative to max(1, |value|).
import { describe, expect, it } from 'vitest';
import {
  applyLogitsProcessors, bannedNgramTokens, buildLogitsProcessors, logSoftmaxRows, minLengthProcessor, minNewTokensProcessor,
  noRepeatNgramProcessor, repetitionPenaltyProcessor,
} from '../generate/logits-processors.ts';
import { resolveGenerationConfig } from '../generate/generation-config.ts';
import { mulberry32 } from './helpers/random-data.ts';

/** HF's way: a dict from every (n-1)-prefix in the row to the tokens that followed it; look up the last n-1. */
function hfBanned(tokens: number[], n: number): number[] {
  if (tokens.length + 1 < n) return [];
  const dict = new Map<string, number[]>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n - 1).join(',');
    dict.set(key, [...(dict.get(key) ?? []), tokens[i + n - 1]!]);
  }
  return dict.get(tokens.slice(tokens.length + 1 - n, tokens.length).join(',')) ?? [];
}

describe('no_repeat_ngram_size', () => {
  it('bans what HF bans, for n = 1..4 on random histories (small vocabulary, so repeats happen)', () => {
    const rand = mulberry32(1);
    let nonEmpty = 0;
    for (let trial = 0; trial < 400; trial++) {
      const n = 1 + (trial % 4);
      const tokens = Array.from({ length: Math.floor(rand() * 14) }, () => Math.floor(rand() * 3));
      const got = bannedNgramTokens(tokens, n);
      expect(got, `${n} ${tokens}`).toEqual(hfBanned(tokens, n));
      if (got.length) nonEmpty++;
    }
    expect(nonEmpty).toBeGreaterThan(100);
  });

  it('hand cases: the decoder start token counts, n = 1 bans every token seen, nothing before n - 1 tokens', () => {
    expect(bannedNgramTokens([0, 5, 3, 5], 2)).toEqual([3]);
    expect(bannedNgramTokens([0, 5, 3, 0], 2)).toEqual([5]); // (0, 5) with 0 the decoder start token
    expect(bannedNgramTokens([1, 2, 3, 1, 2], 3)).toEqual([3]);
    expect(bannedNgramTokens([4, 4, 4], 2)).toEqual([4, 4]);
    expect(bannedNgramTokens([0, 7, 7], 1)).toEqual([0, 7, 7]);
    expect(bannedNgramTokens([0], 3)).toEqual([]);
    expect(bannedNgramTokens([0, 1], 3)).toEqual([]);
  });

  it('the processor writes -inf per row and nothing else', () => {
    const vocab = 6;
    const scores = Float32Array.from({ length: 2 * vocab }, (_, i) => i / 10);
    noRepeatNgramProcessor(2)([[0, 5, 3, 5], [0, 1, 2]], scores, vocab);
    const want = Float32Array.from({ length: 2 * vocab }, (_, i) => i / 10);
    want[3] = -Infinity;
    expect(Array.from(scores)).toEqual(Array.from(want));
    expect(() => noRepeatNgramProcessor(0)).toThrow(/no_repeat_ngram_size/);
    expect(() => noRepeatNgramProcessor(2)([[0]], new Float32Array(5), 6)).toThrow(/NoRepeatNGramLogitsProcessor: scores of length 5 do not match 1 rows x vocab 6/);
  });
});

describe('repetition_penalty', () => {
  it('divides the positive and multiplies the negative scores of the tokens in the row, once each, in float32', () => {
    const vocab = 6;
    const scores = Float32Array.from([0.3, -0.7, 2, -4, 0, 5, /* row 1 */ 1, 1, 1, 1, -1, -Infinity]);
    repetitionPenaltyProcessor(1.3)([[0, 3, 3, 2, 3], [0, 5, 4]], scores, vocab);
    const f = Math.fround;
    expect(Array.from(scores)).toEqual([
      f(f(0.3) / 1.3), f(-0.7), f(2 / 1.3), f(-4 * 1.3), 0, 5, // the decoder start token 0 counts; 3 thrice: once
      f(1 / 1.3), 1, 1, 1, f(-1 * 1.3), -Infinity,
    ]);
    expect(() => repetitionPenaltyProcessor(0)).toThrow(/`penalty` has to be a strictly positive float, but is 0/);
  });

  it('comes first among the processors, as in _get_logits_processor', () => {
    const config = resolveGenerationConfig({ decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 }, {
      repetition_penalty: 2, no_repeat_ngram_size: 2, min_length: 5, max_length: 20,
    });
    const processors = buildLogitsProcessors(config);
    expect(processors).toHaveLength(3);
    // a row whose last bigram repeats: the penalty halves token 2's score before the ban sets it to -inf
    const scores = Float32Array.from([4, 4, 4]);
    processors[0]!([[0, 2, 0]], scores, 3);
    expect(Array.from(scores)).toEqual([2, 4, 2]);
  });
});

describe('min_length and min_new_tokens', () => {
  it('ban every eos id while the sequence (start token included) is shorter than min_length', () => {
    const p = minLengthProcessor(3, [1, 4]);
    const at = (len: number): number[] => {
      const s = new Float32Array(2 * 5).fill(0.5);
      p([new Array(len).fill(0), new Array(len).fill(0)], s, 5);
      return Array.from(s);
    };
    const banned = [0.5, -Infinity, 0.5, 0.5, -Infinity];
    expect(at(2)).toEqual([...banned, ...banned]);
    expect(at(3)).toEqual(new Array(10).fill(0.5));
    expect(() => minLengthProcessor(-1, [1])).toThrow(/min_length/);
  });

  it('min_new_tokens counts after the decoder prompt', () => {
    const p = minNewTokensProcessor(1, 2, [1]);
    const s = new Float32Array(3);
    p([[0, 5]], s, 3); // 1 new token < 2
    expect(s[1]).toBe(-Infinity);
    const t = new Float32Array(3);
    p([[0, 5, 6]], t, 3);
    expect(Array.from(t)).toEqual([0, 0, 0]);
  });

  it('buildLogitsProcessors follows _get_logits_processor: n-gram, min_length, min_new_tokens; min lengths need an eos', () => {
    const cfg = (o: object) => resolveGenerationConfig({}, { decoder_start_token_id: 0, ...o });
    expect(buildLogitsProcessors(cfg({})).length).toBe(0);
    expect(buildLogitsProcessors(cfg({ eos_token_id: 1, min_length: 3, no_repeat_ngram_size: 2, min_new_tokens: 2 })).length).toBe(3);
    expect(buildLogitsProcessors(cfg({ min_length: 3, min_new_tokens: 2 })).length).toBe(0);
    const ps = buildLogitsProcessors(cfg({ eos_token_id: 1, min_length: 4, no_repeat_ngram_size: 2 }));
    const s = new Float32Array(4);
    applyLogitsProcessors(ps, [[0, 2, 0]], s, 4);
    expect(Array.from(s)).toEqual([0, -Infinity, -Infinity, 0]);
  });
});

describe('logSoftmaxRows', () => {
  it('matches float64 at awkward sizes, large logits included', () => {
    const rand = mulberry32(2);
    for (const [rows, vocab] of [[1, 1], [3, 7], [2, 1128], [1, 32128]] as const) {
      const x = Float32Array.from({ length: rows * vocab }, () => (rand() * 2 - 1) * 90);
      const y = logSoftmaxRows(x, rows, vocab);
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * vocab, (r + 1) * vocab));
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        row.forEach((v, i) => (worst = Math.max(worst, Math.abs(y[r * vocab + i]! - (v - lse)) / Math.max(1, Math.abs(v - lse)))));
      }
      expect(worst, `${rows} x ${vocab}`).toBeLessThanOrEqual(1e-7);
    }
  });

  it('keeps -inf, gives NaN for an all -inf row (torch), checks the shape', () => {
    const y = logSoftmaxRows(Float32Array.from([0, -Infinity, 0, -Infinity, -Infinity]), 1, 5);
    expect(Array.from(y)).toEqual([Math.fround(-Math.LN2), -Infinity, Math.fround(-Math.LN2), -Infinity, -Infinity]);
    expect(Number.isNaN(logSoftmaxRows(Float32Array.from([-Infinity, -Infinity]), 1, 2)[0])).toBe(true);
    expect(() => logSoftmaxRows(new Float32Array(5), 2, 3)).toThrow(/5 values for 2 x 3/);
  });
});
