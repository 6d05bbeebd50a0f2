// Logits processors against restatements of HF 4.36's code (the n-gram dictionary of `_get_ngrams`, the bias
// tensor of SequenceBiasLogitsProcessor) and hand cases; log_softmax against float64. Bounds: the processors only write -inf (exact comparisons); log_softmax is
// rounded once from float64, so within half a float32 ulp of the float64 value plus the float64 error: 1e-7
// relative to max(1, |value|).
import { describe, expect, it } from 'vitest';
import {
  applyLogitsProcessors, bannedNgramTokens, buildLogitsProcessors, encoderNoRepeatNgramProcessor, encoderRepetitionPenaltyProcessor,
  exponentialDecayProcessor, forcedBosProcessor, forcedEosProcessor,
  forceTokensProcessor, infNanRemoveProcessor, logitNormalizationProcessor, logSoftmaxRows, minLengthProcessor, minNewTokensProcessor, noBadWordsProcessor,
  noRepeatNgramProcessor, repetitionPenaltyProcessor, sequenceBiasProcessor, suppressTokensProcessor,
} from '../generate/logits-processors.ts';
import { resolveGenerationConfig, type GenerationOptions } from '../generate/generation-config.ts';
import { generate } from '../generate/generate.ts';
import { greedyOnDeviceSuits } from '../generate/greedy-on-device.ts';
import type { DecoderStepper } from '../generate/search-types.ts';
import { tableLogits, type LogitsFn } from './helpers/table-logits.ts';
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

/** Python's seq[start:end] for a possibly negative start (HF's _get_generated_ngrams slices so). */
function pySlice<T>(a: readonly T[], start: number, end: number): T[] {
  const s = start < 0 ? Math.max(0, a.length + start) : start;
  return a.slice(s, end);
}

/** EncoderNoRepeatNGramLogitsProcessor as HF writes it: _get_ngrams over each source, then per hypothesis the
 * followers of tuple(input_ids[cur_len + 1 - n : cur_len]), with no guard for short rows. */
function hfEncoderNgramBans(sources: number[][], rows: number[][], n: number): number[][] {
  const dicts = sources.map((src) => {
    const d = new Map<string, number[]>();
    const grams = src.length - n + 1;
    for (let i = 0; i < grams; i++) {
      const key = src.slice(i, i + n - 1).join(',');
      d.set(key, [...(d.get(key) ?? []), src[i + n - 1]!]);
    }
    return d;
  });
  const beams = Math.floor(rows.length / sources.length);
  return rows.map((row, h) => {
    const curLen = row.length;
    const key = pySlice(row, curLen + 1 - n, curLen);
    // a tuple of another length than n - 1 matches no key of the dict
    return key.length === n - 1 ? dicts[Math.floor(h / beams)]!.get(key.join(',')) ?? [] : [];
  });
}

describe('encoder_no_repeat_ngram_size and encoder_repetition_penalty', () => {
  it('the encoder n-gram bans equal HF\'s on random sources and rows, several rows per input, n = 1..4', () => {
    const rand = mulberry32(8);
    const vocab = 4;
    let banned = 0;
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + (trial % 4);
      const inputs = 1 + Math.floor(rand() * 2);
      const perInput = 1 + Math.floor(rand() * 3);
      const sources = Array.from({ length: inputs }, () => Array.from({ length: 1 + Math.floor(rand() * 9) }, () => Math.floor(rand() * vocab)));
      const len = 1 + Math.floor(rand() * 6);
      const rows = Array.from({ length: inputs * perInput }, () => Array.from({ length: len }, () => Math.floor(rand() * vocab)));
      const scores = new Float32Array(rows.length * vocab).fill(0.5);
      encoderNoRepeatNgramProcessor(n, sources)(rows, scores, vocab);
      const want = new Float32Array(rows.length * vocab).fill(0.5);
      hfEncoderNgramBans(sources, rows, n).forEach((tokens, r) => tokens.forEach((t) => (want[r * vocab + t] = -Infinity)));
      expect(Array.from(scores), JSON.stringify({ n, sources, rows })).toEqual(Array.from(want));
      banned += want.filter((x) => x === -Infinity).length;
    }
    expect(banned).toBeGreaterThan(200);
  });

  it('the encoder repetition penalty multiplies the positive and divides the negative scores of source tokens, once each', () => {
    const f = Math.fround;
    const scores = Float32Array.from([0.5, -2, 3, 1, /* row 1 */ 1, 1, -1, 1]);
    // the source of row 0 holds tokens 1 and 2 (2 twice), row 1's token 2 and a pad 0 (pads count, as in HF)
    encoderRepetitionPenaltyProcessor(2, [[1, 2, 2], [2, 0]])([[0], [0]], scores, 4);
    expect(Array.from(scores)).toEqual([0.5, -1, 6, 1, 2, 1, f(-0.5), 1]);
    expect(() => encoderRepetitionPenaltyProcessor(2, [[1]])([[0], [0]], new Float32Array(8), 4)).toThrow(/2 rows for 1 sources/);
    expect(() => buildLogitsProcessors(resolveGenerationConfig({}, { decoder_start_token_id: 0, encoder_no_repeat_ngram_size: 2 })))
      .toThrow("generate: `encoder_no_repeat_ngram_size` needs the source's input ids, which this decoder stepper does not give");
  });
});

/** SequenceBiasLogitsProcessor as HF writes it: a float32 bias tensor that starts as the one-token biases, gains
 * each longer sequence's bias (dict order) where the row's last tokens match its prefix, then adds to the scores. */
function hfSequenceBias(inputIds: number[][], scores: Float32Array, vocab: number, entries: Array<[number[], number]>): void {
  const dict = new Map<string, [number[], number]>();
  for (const [seq, b] of entries) dict.set(seq.join(','), [seq, b]);
  const length1 = new Float32Array(vocab);
  for (const [seq, b] of dict.values()) if (seq.length === 1) length1[seq[0]!] = b;
  const bias = new Float32Array(scores.length);
  for (let r = 0; r < inputIds.length; r++) bias.set(length1, r * vocab);
  const curLen = inputIds[0]!.length;
  for (const [seq, b] of dict.values()) {
    if (seq.length === 1 || seq.length > curLen) continue;
    const prefix = seq.slice(0, -1);
    for (let r = 0; r < inputIds.length; r++) {
      const tail = inputIds[r]!.slice(curLen - prefix.length);
      if (tail.every((t, i) => t === prefix[i])) bias[r * vocab + seq[seq.length - 1]!] += b;
    }
  }
  for (let i = 0; i < scores.length; i++) scores[i] = Math.fround(scores[i]! + bias[i]!);
}

describe('sequence_bias and bad_words_ids', () => {
  it('sequence_bias equals HF\'s bias tensor on random rows, sequences and biases (repeats, overlaps, -inf)', () => {
    const rand = mulberry32(3);
    const vocab = 5;
    let changed = 0;
    for (let trial = 0; trial < 300; trial++) {
      const rows = 1 + Math.floor(rand() * 3);
      const len = 1 + Math.floor(rand() * 5);
      const inputIds = Array.from({ length: rows }, () => Array.from({ length: len }, () => Math.floor(rand() * 3)));
      const entries = Array.from({ length: 1 + Math.floor(rand() * 5) }, (): [number[], number] => [
        Array.from({ length: 1 + Math.floor(rand() * 3) }, () => Math.floor(rand() * 3)),
        rand() < 0.15 ? -Infinity : Math.fround((rand() - 0.5) * 7),
      ]);
      const scores = Float32Array.from({ length: rows * vocab }, () => Math.fround(rand() * 4 - 2));
      const want = scores.slice();
      hfSequenceBias(inputIds, want, vocab, entries);
      sequenceBiasProcessor(entries)(inputIds, scores, vocab);
      expect(Array.from(scores), JSON.stringify({ inputIds, entries })).toEqual(Array.from(want));
      if (entries.some(([seq]) => seq.length > 1)) changed++;
    }
    expect(changed).toBeGreaterThan(100);
  });

  it('hand cases: a longer sequence biases only where the row ends with its prefix, and sums with the one-token bias', () => {
    const scores = Float32Array.from([1, 1, 1, 1, /* row 1 */ 1, 1, 1, 1]);
    sequenceBiasProcessor([[[3], 0.5], [[2, 3], -2], [[0, 2, 3], 100]])([[0, 2], [0, 1]], scores, 4); // 3 tokens > 2: skipped
    expect(Array.from(scores)).toEqual([1, 1, 1, -0.5, 1, 1, 1, 1.5]);
    expect(() => sequenceBiasProcessor([[[2, 7], 1]])([[0]], new Float32Array(5), 5))
      .toThrow('generate: `sequence_bias`: the model vocabulary size is 5, but the following tokens were being biased: [7]');
  });

  it('bad_words_ids bans a word\'s last token after the rest of it, never a lone eos id', () => {
    const p = noBadWordsProcessor([[2], [3, 4], [1]], [1]);
    const scores = new Float32Array(2 * 5).fill(0.25);
    p([[0, 3], [0, 4]], scores, 5);
    const I = -Infinity;
    expect(Array.from(scores)).toEqual([0.25, 0.25, I, 0.25, I, /* row 1 */ 0.25, 0.25, I, 0.25, 0.25]);
    const onlyEos = new Float32Array(3).fill(0.5);
    noBadWordsProcessor([[1]], [1])([[0]], onlyEos, 3);
    expect(Array.from(onlyEos)).toEqual([0.5, 0.5, 0.5]);
    expect(() => noBadWordsProcessor([[2, 9]], [1])([[0]], new Float32Array(4), 4)).toThrow(/`bad_words_ids`: the model vocabulary size is 4, but the following tokens were being biased: \[9\]/);
  });
});

describe('forced tokens, inf/nan removal, length penalty, suppression, renormalisation', () => {
  const I = -Infinity;
  it('forced_bos_token_id: only at the first step, every other token -inf and the forced one 0', () => {
    const p = forcedBosProcessor(2);
    const first = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    p([[0], [0]], first, 4);
    expect(Array.from(first)).toEqual([I, I, 0, I, I, I, 0, I]);
    const later = Float32Array.from([1, 2, 3, 4]);
    p([[0, 2]], later, 4);
    expect(Array.from(later)).toEqual([1, 2, 3, 4]);
    expect(() => p([[0]], new Float32Array(2), 2)).toThrow(/ForcedBOSTokenLogitsProcessor: token 2 is outside the vocabulary of 2/);
  });

  it('forced_eos_token_id: at the step that reaches max_length, every eos id 0 and the rest -inf', () => {
    const p = forcedEosProcessor(4, [1, 3]);
    const last = Float32Array.from([5, 6, 7, 8]);
    p([[0, 5, 6]], last, 4);
    expect(Array.from(last)).toEqual([I, 0, I, 0]);
    const before = Float32Array.from([5, 6, 7, 8]);
    p([[0, 5]], before, 4);
    expect(Array.from(before)).toEqual([5, 6, 7, 8]);
  });

  it('forced_decoder_ids: the mapped token only at its position (a later pair wins); begin_suppress_tokens after them', () => {
    const p = forceTokensProcessor([[1, 3], [2, 0], [2, 2]]);
    const at = (len: number) => {
      const s = Float32Array.from([1, 2, 3, 4]);
      p([new Array(len).fill(0)], s, 4);
      return Array.from(s);
    };
    expect([at(1), at(2), at(3)]).toEqual([[I, I, I, 0], [I, I, 0, I], [1, 2, 3, 4]]);
    // HF: begin_index = prompt (1) + the last forced position (2): suppression at length 3
    const config = resolveGenerationConfig({}, { decoder_start_token_id: 0, forced_decoder_ids: [[1, 3], [2, 2]], begin_suppress_tokens: [1] });
    const eosAt = (len: number) => {
      const s = Float32Array.from([0.5, 0.5, 0.5, 0.5]);
      applyLogitsProcessors(buildLogitsProcessors(config), [new Array(len).fill(0)], s, 4);
      return s[1];
    };
    expect([eosAt(3), eosAt(4)]).toEqual([I, 0.5]);
  });

  it('remove_invalid_values: nan -> 0, inf -> float32 max, -inf -> float32 min', () => {
    const s = Float32Array.from([Number.NaN, Infinity, -Infinity, -2.5]);
    infNanRemoveProcessor()([[0]], s, 4);
    expect(Array.from(s)).toEqual([0, 3.4028234663852886e38, -3.4028234663852886e38, -2.5]);
  });

  it('exponential_decay_length_penalty: eos scores grow by |s|·(factor^n - 1) once past start + the prompt', () => {
    const p = exponentialDecayProcessor([2, 1.5], [1], 1);
    const f = Math.fround;
    const at = (len: number, eos: number): number => {
      const s = Float32Array.from([0.5, eos, 0.5]);
      p([new Array(len).fill(0)], s, 3);
      expect(s[0]).toBe(0.5);
      return s[1]!;
    };
    expect(at(3, -2)).toBe(-2); // start 2 + prompt 1 = 3: not yet
    expect(at(4, -2)).toBe(f(-2 + f(2 * f(1.5 - 1)))); // n = 1: -1
    expect(at(6, -2)).toBe(f(-2 + f(2 * f(1.5 ** 3 - 1)))); // a negative score rises past 0
    expect(at(6, 0.3)).toBe(f(f(0.3) + f(f(0.3) * f(1.5 ** 3 - 1))));
  });

  it('suppress_tokens at every step; begin_suppress_tokens only at its step, after a forced bos token when set', () => {
    const s = Float32Array.from([1, 2, 3, 4]);
    suppressTokensProcessor([0, 3, 99])([[0, 5, 6]], s, 4);
    expect(Array.from(s)).toEqual([I, 2, 3, I]);
    const cfg = (o: object) => resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: 1, begin_suppress_tokens: [1], ...o });
    const eosAt = (o: object, len: number) => {
      const t = Float32Array.from([0.5, 0.5, 0.5]);
      applyLogitsProcessors(buildLogitsProcessors(cfg(o)), [new Array(len).fill(0)], t, 3);
      return t[1];
    };
    expect([eosAt({}, 1), eosAt({}, 2)]).toEqual([I, 0.5]);
    expect([eosAt({ forced_bos_token_id: 2 }, 2), eosAt({ forced_bos_token_id: 2 }, 3)]).toEqual([I, 0.5]);
  });

  it('renormalize_logits: log_softmax of the processed rows, the last processor (after the suppression)', () => {
    const s = Float32Array.from([1, 2, 3, 0, 0, 0]);
    logitNormalizationProcessor()([[0], [0]], s, 3);
    expect(Array.from(s)).toEqual(Array.from(logSoftmaxRows(Float32Array.from([1, 2, 3, 0, 0, 0]), 2, 3)));
    const config = resolveGenerationConfig({}, { decoder_start_token_id: 0, renormalize_logits: true, suppress_tokens: [2] });
    const t = Float32Array.from([1, 2, 3]);
    applyLogitsProcessors(buildLogitsProcessors(config), [[0]], t, 3);
    expect(t[2]).toBe(I);
    expect(Math.exp(t[0]!) + Math.exp(t[1]!)).toBeCloseTo(1, 6);
  });

  it('buildLogitsProcessors keeps HF\'s order: sequence bias first; forced eos, then inf removal, then the length penalty', () => {
    const config = resolveGenerationConfig({}, {
      decoder_start_token_id: 0, eos_token_id: 1, max_length: 4, repetition_penalty: 2, sequence_bias: [[[2], 2]],
      forced_eos_token_id: 1, remove_invalid_values: true, exponential_decay_length_penalty: [0, 2],
    });
    const processors = buildLogitsProcessors(config);
    expect(processors).toHaveLength(5);
    // token 2 was generated: its bias first (1 + 2 = 3), then the penalty halves it (the other order gives 2.5);
    // the eos score doubles (one token past start 0 + prompt 1)
    const s = Float32Array.from([1, 1, 1]);
    applyLogitsProcessors(processors, [[0, 2]], s, 3);
    expect(Array.from(s)).toEqual([0.5, 2, 1.5]);
    // at max_length - 1 the forced eos leaves -inf elsewhere, which the inf removal makes float32's min
    const t = Float32Array.from([1, 1, 1]);
    applyLogitsProcessors(processors, [[0, 2, 2]], t, 3);
    expect(Array.from(t)).toEqual([-3.4028234663852886e38, 0, -3.4028234663852886e38]);
  });
});

/** Each row's logits from its own history; reorder() moves the histories as a cache reorder moves rows. */
function historyStepper(fn: LogitsFn, vocab: number, inputs: number, rowsPerInput: number, sources?: number[][]): DecoderStepper {
  let rows = Array.from({ length: inputs * rowsPerInput }, (_, r) => ({ input: Math.floor(r / rowsPerInput), history: [] as number[] }));
  return {
    vocabSize: vocab,
    encoderInputIds: sources,
    async step(tokens) {
      const out = new Float32Array(rows.length * vocab);
      rows.forEach((row, r) => {
        row.history.push(tokens[r]!);
        out.set(fn(row.input, row.history), r * vocab);
      });
      return out;
    },
    reorder(beamIdx) {
      rows = Array.from(beamIdx, (i) => ({ input: rows[i]!.input, history: [...rows[i]!.history] }));
    },
  };
}

describe('the optional processors in greedy search, beam search and sampling', () => {
  const vocab = 7;
  const fn = tableLogits(21, 2, vocab, { eosBias: -1.5 });
  const SOURCES = [[3, 4, 5, 6, 3, 1], [2, 2, 5, 1, 0, 0]];
  const run = (o: GenerationOptions) => {
    const config = resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_new_tokens: 6, ...o });
    const perInput = config.doSample ? config.numReturnSequences : config.numBeams;
    return generate(historyStepper(fn, vocab, 2, perInput, SOURCES), 2, config, { seed: 5 });
  };
  const modes: GenerationOptions[] = [{}, { num_beams: 3, num_return_sequences: 2 }, { do_sample: true, top_k: 0, num_return_sequences: 2 }];

  it('bad_words_ids keeps a token out that the search picks without it, and greedy leaves the GPU path', async () => {
    for (const mode of modes) {
      const free = await run(mode);
      const counts = new Map<number, number>();
      for (const seq of free.sequences) for (const t of seq.slice(1)) if (t > 1) counts.set(t, (counts.get(t) ?? 0) + 1);
      const common = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
      const banned = await run({ ...mode, bad_words_ids: [[common]] });
      expect(banned.sequences.flat(), JSON.stringify(mode)).not.toContain(common);
    }
    expect(greedyOnDeviceSuits(resolveGenerationConfig({}, { decoder_start_token_id: 0, bad_words_ids: [[3]] }), false)).toBe(false);
  });

  it('encoder_no_repeat_ngram_size: no generated bigram is one of the source\'s; the encoder penalty changes greedy answers', async () => {
    let changed = 0;
    for (const mode of modes) {
      const free = await run(mode);
      const out = await run({ ...mode, encoder_no_repeat_ngram_size: 2 });
      out.sequences.forEach((seq, r) => {
        const src = SOURCES[Math.floor(r / (out.sequences.length / 2))]!;
        const grams = new Set(src.slice(1).map((t, i) => `${src[i]},${t}`));
        // up to the first eos: a finished row is padded, not searched
        const end = seq.indexOf(1, 1) === -1 ? seq.length : seq.indexOf(1, 1) + 1;
        for (let i = 1; i < end; i++) expect(grams.has(`${seq[i - 1]},${seq[i]}`), JSON.stringify({ mode, seq })).toBe(false);
      });
      if (JSON.stringify(out.sequences) !== JSON.stringify(free.sequences)) changed++;
    }
    expect(changed).toBeGreaterThan(1);
    const greedy = await run({ encoder_repetition_penalty: 3 });
    expect(greedy.sequences).not.toEqual((await run({})).sequences);
  });

  it('max_time (HF\'s MaxTimeCriteria): 0 stops every search after its first step; a long one changes nothing', async () => {
    for (const mode of modes) {
      const cut = await run({ ...mode, max_time: 0 });
      // beam search's finalize appends eos to a hypothesis that max_length did not end (HF's BeamSearchScorer)
      const want = mode.num_beams ? cut.sequences.map((q) => [0, q[1], 1]) : cut.sequences.map((q) => [0, q[1]]);
      expect(cut.sequences, JSON.stringify(mode)).toEqual(want);
      expect((await run({ ...mode, max_time: 3600 })).sequences).toEqual((await run(mode)).sequences);
    }
  });

  it('forced_bos_token_id and forced_eos_token_id fix the first token and end every sequence at max_length', async () => {
    let forced = 0;
    for (const mode of modes) {
      const out = await run({ ...mode, forced_bos_token_id: 4, forced_eos_token_id: 1, eos_token_id: 6 });
      for (const seq of out.sequences) {
        expect(seq[1], JSON.stringify(mode)).toBe(4);
        // the eos token 6 may end a row early; a row that reaches the last position (6) takes the forced 1
        const early = seq.indexOf(6, 1);
        if (early === -1) expect(seq[6], JSON.stringify({ mode, seq })).toBe(1);
        else expect(early).toBeLessThan(6);
        if (early === -1) forced++;
      }
    }
    expect(forced).toBeGreaterThan(3);
  });
});
