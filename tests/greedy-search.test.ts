// Greedy search against a reference written here (one row at a time, over a pure logits function, no stepper)
// and hand-checked cases. HF 4.36 greedy: processors on the RAW logits, argmax (lowest index among ties), pad
// after eos while the row keeps being fed, transition scores = processed logits of the chosen (or pad) tokens.
// Ids must be identical; scores are the same float32 values on both sides (no arithmetic), compared exactly.
import { describe, expect, it } from 'vitest';
import { argmaxRow, greedySearch } from '../generate/greedy-search.ts';
import { resolveGenerationConfig, type GenerationOptions } from '../generate/generation-config.ts';
import { generate } from '../generate/generate.ts';
import type { DecoderStepper } from '../generate/search-types.ts';
import { tableLogits, type LogitsFn } from './helpers/table-logits.ts';

class HistoryStepper implements DecoderStepper {
  histories: number[][];
  steps = 0;
  constructor(readonly vocabSize: number, batch: number, private readonly fn: LogitsFn) {
    this.histories = Array.from({ length: batch }, () => []);
  }
  async step(tokens: Int32Array): Promise<Float32Array> {
    this.steps++;
    const out = new Float32Array(this.histories.length * this.vocabSize);
    this.histories.forEach((h, r) => {
      h.push(tokens[r]!);
      out.set(this.fn(r, h), r * this.vocabSize);
    });
    return out;
  }
  reorder(): void {
    throw new Error('greedy search must not reorder the cache');
  }
}

interface Ref { maxLength: number; eos: number[]; pad: number; ngram: number; minLength: number; minNewTokens: number; penalty?: number }

/** One row: ban, argmax, pad after eos; the batch runs until every row ended or max_length. */
function refGreedy(fn: LogitsFn, batch: number, o: Ref): { sequences: number[][]; transitionScores: number[][] } {
  const rows = Array.from({ length: batch }, () => ({ tokens: [0], trans: [] as number[], ended: false }));
  while (rows[0]!.tokens.length < o.maxLength && !(o.eos.length > 0 && rows.every((r) => r.ended))) {
    rows.forEach((row, input) => {
      const s = Array.from(fn(input, row.tokens));
      const h = row.tokens;
      // HF's RepetitionPenaltyLogitsProcessor, first: each token of the row once, float32
      if (o.penalty) for (const t of new Set(h)) s[t] = Math.fround(s[t]! < 0 ? s[t]! * o.penalty : s[t]! / o.penalty);
      if (o.ngram > 0 && h.length >= o.ngram - 1) {
        s.forEach((_, v) => {
          const gram = [...h.slice(h.length - (o.ngram - 1)), v];
          for (let i = 0; i + o.ngram <= h.length; i++) if (gram.every((t, j) => h[i + j] === t)) s[v] = -Infinity;
        });
      }
      if (h.length < o.minLength || h.length - 1 < o.minNewTokens) for (const e of o.eos) s[e] = -Infinity;
      const token = row.ended ? o.pad : s.indexOf(Math.max(...s));
      row.tokens.push(token);
      row.trans.push(s[token]!);
      if (o.eos.includes(token)) row.ended = true;
    });
  }
  return { sequences: rows.map((r) => r.tokens), transitionScores: rows.map((r) => r.trans) };
}

const options = (o: Ref): GenerationOptions => ({
  max_length: o.maxLength, eos_token_id: o.eos.length === 0 ? null : o.eos.length === 1 ? o.eos[0]! : o.eos,
  pad_token_id: o.pad, decoder_start_token_id: 0, no_repeat_ngram_size: o.ngram, min_length: o.minLength,
  ...(o.minNewTokens ? { min_new_tokens: o.minNewTokens } : {}),
  ...(o.penalty ? { repetition_penalty: o.penalty } : {}),
});

async function run(fn: LogitsFn, batch: number, vocab: number, o: Ref, extra: GenerationOptions = {}) {
  const stepper = new HistoryStepper(vocab, batch, fn);
  const out = await generate(stepper, batch, resolveGenerationConfig({}, { ...options(o), ...extra }));
  return { out, stepper };
}

const base: Ref = { maxLength: 12, eos: [1], pad: 0, ngram: 0, minLength: 0, minNewTokens: 0 };

describe('greedy search', () => {
  it('matches the reference over eos / no eos / several eos, no_repeat_ngram_size, min_length, min_new_tokens, batch 3', async () => {
    const vocab = 7;
    const fn = tableLogits(4, 3, vocab, { spread: 5, eosBias: 2 });
    let cases = 0;
    for (const eos of [[1], [], [3, 1]]) {
      for (const ngram of [0, 2, 3]) {
        for (const [minLength, minNewTokens] of [[0, 0], [6, 0], [0, 4]] as const) {
          const o: Ref = { ...base, eos, ngram, minLength, minNewTokens };
          const { out, stepper } = await run(fn, 3, vocab, o);
          const want = refGreedy(fn, 3, o);
          expect(out.sequences, JSON.stringify(o)).toEqual(want.sequences);
          expect(out.transitionScores, JSON.stringify(o)).toEqual(want.transitionScores);
          expect(stepper.steps).toBe(out.sequences[0]!.length - 1);
          expect(out.sequencesScores).toBeUndefined();
          expect(out.beamIndices).toBeUndefined();
          cases++;
        }
      }
    }
    expect(cases).toBe(27);
  });

  it('matches the reference with repetition_penalty (2.5 and 0.6), alone and before no_repeat_ngram_size', async () => {
    const vocab = 7;
    // spread 5 around 0: positive and negative logits, so both the division and the multiplication happen
    const fn = tableLogits(5, 3, vocab, { spread: 5, eosBias: -1 });
    let changed = 0;
    for (const penalty of [2.5, 0.6]) {
      for (const ngram of [0, 2]) {
        const o: Ref = { ...base, maxLength: 14, ngram, penalty };
        const { out } = await run(fn, 3, vocab, o);
        const want = refGreedy(fn, 3, o);
        expect(out.sequences, JSON.stringify(o)).toEqual(want.sequences);
        expect(out.transitionScores, JSON.stringify(o)).toEqual(want.transitionScores);
        if (JSON.stringify(want.sequences) !== JSON.stringify(refGreedy(fn, 3, { ...o, penalty: undefined }).sequences)) changed++;
      }
    }
    expect(changed).toBeGreaterThan(1); // the penalty changes what is chosen
  });

  it('pads finished rows, keeps feeding them, and reports the pad token processed logit as HF does', async () => {
    // Row 0 says </s> at once, row 1 after two tokens, row 2 never: 5 steps to max_length 6.
    const vocab = 4;
    const script: number[][] = [[1], [2, 3, 1], [2, 2, 3, 3, 2]];
    const fn: LogitsFn = (input, h) => {
      const out = new Float32Array(vocab).fill(-1);
      out[0] = -0.5 - h.length; // the pad's logit, to be reported after </s>
      const want = script[input]![h.length - 1];
      if (want !== undefined) out[want] = 10;
      else out[2] = 3;
      return out;
    };
    const { out, stepper } = await run(fn, 3, vocab, { ...base, maxLength: 6 });
    expect(out.sequences).toEqual([[0, 1, 0, 0, 0, 0], [0, 2, 3, 1, 0, 0], [0, 2, 2, 3, 3, 2]]);
    expect(out.transitionScores).toEqual([[10, -2.5, -3.5, -4.5, -5.5], [10, 10, 10, -4.5, -5.5], [10, 10, 10, 10, 10]]);
    expect(stepper.histories[0]).toEqual([0, 1, 0, 0, 0]);
  });

  it('stops as soon as every row has ended', async () => {
    const vocab = 4;
    const fn: LogitsFn = (input, h) => {
      const out = new Float32Array(vocab);
      out[h.length === input + 1 ? 1 : 2] = 1;
      return out;
    };
    const { out, stepper } = await run(fn, 2, vocab, { ...base, maxLength: 20 });
    expect(out.sequences).toEqual([[0, 1, 0], [0, 2, 1]]);
    expect(stepper.steps).toBe(2);
  });

  it('max_new_tokens n generates n tokens after the start token; max_length 1 still generates one (HF)', async () => {
    const fn = tableLogits(9, 1, 5, { spread: 5, eosBias: -100 }); // never </s>
    const a = await run(fn, 1, 5, base, { max_new_tokens: 7 });
    expect(a.out.sequences[0]!.length).toBe(8);
    const b = await run(fn, 1, 5, { ...base, maxLength: 1 });
    expect(b.out.sequences[0]!.length).toBe(2);
    const c = await run(fn, 1, 5, { ...base, maxLength: 20 });
    expect(c.out.sequences[0]!.length).toBe(20);
  });

  it('argmax takes the lowest index among exact ties', async () => {
    expect(argmaxRow(Float32Array.from([1, 5, 5, 2, 5]), 0, 5)).toBe(1);
    expect(argmaxRow(Float32Array.from([0, 0, 7, 7, 7, 7]), 1, 3)).toBe(0);
    const flat: LogitsFn = () => Float32Array.from([0, 0, 2, 2, 2]);
    const { out } = await run(flat, 1, 5, { ...base, maxLength: 4 });
    expect(out.sequences).toEqual([[0, 2, 2, 2]]);
    const banned = await run(flat, 1, 5, { ...base, maxLength: 5, ngram: 2 });
    // (2,2) banned after [0,2,2]: 3; then (2,3) seen -> after 3 the bigrams (3,x) are free: 2
    expect(banned.out.sequences).toEqual([[0, 2, 2, 3, 2]]);
  });

  it('output_scores returns the processed logits (not log-probs) of every step', async () => {
    const vocab = 5;
    const fn = tableLogits(2, 2, vocab, { spread: 5, eosBias: 1 });
    const { out } = await run(fn, 2, vocab, { ...base, minLength: 3 }, { output_scores: true });
    expect(out.scores!.length).toBe(out.sequences[0]!.length - 1);
    const first = Array.from(fn(0, [0]));
    first[1] = -Infinity; // min_length 3 bans </s> at the first step
    expect(Array.from(out.scores![0]!.subarray(0, vocab))).toEqual(first.map((x) => Math.fround(x)));
  });

  it('refuses bad steps and configurations', async () => {
    const config = resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: 1 });
    const short: DecoderStepper = { vocabSize: 4, step: async () => new Float32Array(7), reorder: () => {} };
    await expect(greedySearch(short, 2, config)).rejects.toThrow(/returned 7 values, expected rows 2 x vocab 4/);
    const nan: DecoderStepper = { vocabSize: 4, step: async () => Float32Array.from([0, NaN, 0, 0]), reorder: () => {} };
    await expect(greedySearch(nan, 1, config)).rejects.toThrow(/NaN logits \(row 0, token 1\)/);
    await expect(greedySearch(nan, 0, config)).rejects.toThrow(/batch size/);
    const beams = resolveGenerationConfig({}, { decoder_start_token_id: 0, num_beams: 2 });
    await expect(greedySearch(nan, 1, beams)).rejects.toThrow(/num_beams/);
    const tiny: DecoderStepper = { vocabSize: 1, step: async () => new Float32Array(1), reorder: () => {} };
    const padded = resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 });
    await expect(greedySearch(tiny, 1, padded)).rejects.toThrow(/`eos_token_id` 1 is outside the vocabulary \(size 1\)/);
  });
});
