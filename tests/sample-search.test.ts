// Sampling (do_sample): the draw against the exact inverse of the softmax CDF, whole runs against greedy search
// (top_k 1 samples the argmax) and against a reference that replays the seeded draws, and the options that
// shape it (seed, num_return_sequences, sequence scores, pad after eos).
import { describe, expect, it } from 'vitest';
import { sampleRow } from '../generate/sample-search.ts';
import { resolveGenerationConfig, type GenerationOptions } from '../generate/generation-config.ts';
import { generate } from '../generate/generate.ts';
import type { DecoderStepper } from '../generate/search-types.ts';
import { mulberry32 } from '../util/mulberry32.ts';
import { tableLogits, type LogitsFn } from './helpers/table-logits.ts';

/** Rows fed one token a step; row r's logits are fn(floor(r / perInput), its tokens). */
class HistoryStepper implements DecoderStepper {
  histories: number[][];
  constructor(readonly vocabSize: number, rows: number, private readonly fn: LogitsFn, private readonly perInput = 1) {
    this.histories = Array.from({ length: rows }, () => []);
  }
  async step(tokens: Int32Array): Promise<Float32Array> {
    const out = new Float32Array(this.histories.length * this.vocabSize);
    this.histories.forEach((h, r) => {
      h.push(tokens[r]!);
      out.set(this.fn(Math.floor(r / this.perInput), h), r * this.vocabSize);
    });
    return out;
  }
  reorder(): void {
    throw new Error('sampling must not reorder the cache');
  }
}

const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };

async function run(fn: LogitsFn, batch: number, vocab: number, o: GenerationOptions, sampling: { seed?: number; sequenceScores?: boolean } = {}) {
  const config = resolveGenerationConfig(T5, o);
  const perInput = config.doSample ? config.numReturnSequences : 1;
  const stepper = new HistoryStepper(vocab, batch * perInput, fn, perInput);
  return generate(stepper, batch, config, sampling);
}

/** softmax in float64 of a float32 row. */
function softmax(row: Float32Array): number[] {
  const max = Math.max(...row);
  const w = Array.from(row, (x) => Math.exp(x - max));
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / total);
}

describe('sampling', () => {
  it('sampleRow inverts the softmax CDF: N evenly spaced draws hit each token N·p times, to within one', () => {
    const rand = mulberry32(5);
    for (const vocab of [1, 2, 7, 61]) {
      const row = Float32Array.from({ length: vocab }, () => (rand() < 0.2 ? -Infinity : (rand() * 2 - 1) * 3));
      if (row.every((x) => x === -Infinity)) row[0] = 0;
      const p = softmax(row);
      const N = 10000;
      const counts = new Array<number>(vocab).fill(0);
      for (let i = 0; i < N; i++) counts[sampleRow(row, 0, vocab, (i + 0.5) / N, 0)]!++;
      counts.forEach((c, j) => expect(Math.abs(c - N * p[j]!)).toBeLessThanOrEqual(1));
      // a removed token is never drawn, even at u's extremes
      for (const u of [0, 1 - 2 ** -32]) expect(row[sampleRow(row, 0, vocab, u, 0)]).toBeGreaterThan(-Infinity);
    }
    expect(() => sampleRow(Float32Array.from([-Infinity, -Infinity]), 0, 2, 0.5, 3)).toThrow(/step 3 every token of row 0 was removed/);
  });

  it('top_k 1 samples the argmax: the same sequences as greedy search, and transition scores to </s>, whatever the seed', async () => {
    const vocab = 9;
    const fn = tableLogits(11, 3, vocab, { spread: 4, eosBias: 1.5 });
    for (const extra of [{}, { no_repeat_ngram_size: 2 }, { min_length: 6 }] as GenerationOptions[]) {
      const greedy = await run(fn, 3, vocab, { max_length: 14, ...extra });
      for (const seed of [0, 7]) {
        const sampled = await run(fn, 3, vocab, { max_length: 14, do_sample: true, top_k: 1, ...extra }, { seed });
        expect(sampled.sequences).toEqual(greedy.sequences);
        // up to </s> the same scores; after it the pad's score is the warped one, as HF's `scores` hold: -inf,
        // since top_k 1 removed every token but the best, unless the pad is the best
        let padsRemoved = 0;
        sampled.sequences.forEach((seq, r) => {
          const end = seq.indexOf(1, 1);
          const n = end < 0 ? seq.length - 1 : end;
          expect(sampled.transitionScores[r]!.slice(0, n)).toEqual(greedy.transitionScores[r]!.slice(0, n));
          sampled.transitionScores[r]!.slice(n).forEach((x, i) => {
            if (x === -Infinity) padsRemoved++;
            else expect(x).toBe(greedy.transitionScores[r]![n + i]);
          });
        });
        expect(padsRemoved).toBeGreaterThan(0);
      }
    }
  });

  it('replays a reference that draws from the warped softmax with the same seeded stream; pads after eos', async () => {
    const vocab = 11;
    const batch = 2;
    const k = 3;
    const fn = tableLogits(12, batch, vocab, { spread: 2, eosBias: 1 });
    const o: GenerationOptions = { max_length: 10, do_sample: true, temperature: 0.8, top_k: 6, top_p: 0.9, num_return_sequences: k };
    const out = await run(fn, batch, vocab, o, { seed: 1234 });

    // reference: the same stream, one draw per row and step, rows input-major (k per input)
    const next = mulberry32(1234);
    const rows = Array.from({ length: batch * k }, () => ({ tokens: [0], ended: false }));
    while (rows[0]!.tokens.length < 10 && !rows.every((r) => r.ended)) {
      for (const [r, row] of rows.entries()) {
        const u = next() / 2 ** 32;
        let s = Array.from(fn(Math.floor(r / k), row.tokens), (x) => Math.fround(x / 0.8));
        const kth = [...s].sort((a, b) => b - a)[5]!;
        s = s.map((x) => (x < kth ? -Infinity : x));
        // top-p from the top: keep while the mass above is below 0.9
        const p = softmax(Float32Array.from(s));
        const order = s.map((_, i) => i).sort((a, b) => s[b]! - s[a]! || b - a);
        let above = 0;
        const keep = new Set<number>();
        for (const i of order) {
          if (above >= 0.9) break;
          keep.add(i);
          above += p[i]!;
        }
        s = s.map((x, i) => (keep.has(i) ? x : -Infinity));
        const q = softmax(Float32Array.from(s));
        let token = 0;
        for (let i = 0, c = 0; i < vocab; i++) {
          if (q[i] === 0) continue;
          c += q[i]!;
          token = i;
          if (c > u) break;
        }
        if (row.ended) token = 0;
        row.tokens.push(token);
        if (token === 1) row.ended = true;
      }
    }
    expect(out.sequences).toEqual(rows.map((r) => r.tokens));
    // the run is long enough to see both a finished row padded and different samples of one input
    expect(out.sequences.some((s) => s.indexOf(1) > 0 && s.indexOf(1) < s.length - 1)).toBe(true);
    expect(new Set(out.sequences.slice(0, k).map((s) => s.join())).size).toBeGreaterThan(1);
  });

  it('a seed repeats its run; other seeds give other samples; without a seed every call draws anew', async () => {
    const vocab = 50;
    const fn = tableLogits(13, 2, vocab, { spread: 0.5 });
    const o: GenerationOptions = { max_length: 12, do_sample: true, top_k: 0 };
    const a = await run(fn, 2, vocab, o, { seed: 5 });
    expect((await run(fn, 2, vocab, o, { seed: 5 })).sequences).toEqual(a.sequences);
    expect((await run(fn, 2, vocab, o, { seed: 6 })).sequences).not.toEqual(a.sequences);
    // 2 rows x 11 draws over about 50 tokens each: two unseeded calls agree with probability ~50^-22
    expect((await run(fn, 2, vocab, o)).sequences).not.toEqual((await run(fn, 2, vocab, o)).sequences);
    await expect(run(fn, 2, vocab, o, { seed: -1 })).rejects.toThrow(/the sampling seed must be an integer in \[0, 2\^32\), got -1/);
  });

  it('sequence scores: the log-probabilities of the drawn tokens under the unwarped model, to </s>, / length', async () => {
    const vocab = 8;
    const fn = tableLogits(14, 2, vocab, { spread: 3, eosBias: 1 });
    const o: GenerationOptions = { max_length: 9, do_sample: true, temperature: 0.5, num_return_sequences: 2, length_penalty: 1 };
    const out = await run(fn, 2, vocab, o, { seed: 3, sequenceScores: true });
    out.sequences.forEach((seq, r) => {
      const end = seq.indexOf(1, 1);
      const n = (end < 0 ? seq.length : end + 1) - 1;
      let sum = 0;
      for (let t = 0; t < n; t++) sum += Math.log(softmax(fn(Math.floor(r / 2), seq.slice(0, t + 1)))[seq[t + 1]!]!);
      expect(out.sequencesScores![r]).toBeCloseTo(sum / n, 5);
    });
    // output_scores: the warped scores of each step, as HF's `scores`
    const withScores = await run(fn, 2, vocab, { ...o, output_scores: true }, { seed: 3 });
    expect(withScores.sequences).toEqual(out.sequences);
    expect(Array.from(withScores.scores![0]!.subarray(0, vocab))).toEqual(Array.from(fn(0, [0]), (x) => Math.fround(x / 0.5)));
  });
});
