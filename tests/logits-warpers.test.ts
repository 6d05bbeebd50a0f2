// The sampling warpers against references written here the way HF 4.36 writes them (a full sort of each row,
// float64 cumulative sums), on random rows of awkward lengths, with -inf entries (tokens a processor banned)
// and ties. The warpers' outputs are compared exactly: they only divide (temperature) or set -inf.
import { describe, expect, it } from 'vitest';
import {
  buildLogitsWarpers, epsilonWarper, etaWarper, kthLargest, minPWarper, temperatureWarper, topKWarper, topPWarper, typicalWarper,
} from '../generate/logits-warpers.ts';
import { resolveGenerationConfig } from '../generate/generation-config.ts';
import { mulberry32 } from './helpers/random-data.ts';

/** rows x vocab random scores in [-4, 4); about a tenth -inf when `banned`. */
function randomScores(seed: number, rows: number, vocab: number, banned = false): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: rows * vocab }, () => (banned && rand() < 0.1 ? -Infinity : (rand() * 2 - 1) * 4));
}

const noHistory = (rows: number): number[][] => Array.from({ length: rows }, () => [0]);

/** HF: indices_to_remove = scores < topk(scores, k)[..., -1]. */
function refTopK(row: number[], k: number): number[] {
  const kth = [...row].sort((a, b) => b - a)[Math.min(k, row.length) - 1]!;
  return row.map((x) => (x < kth ? -Infinity : x));
}

/** HF: ascending sort, cumulative softmax; remove where cumsum <= 1 - top_p, except the last min_tokens_to_keep.
 * Ties sort by index (the later index counts as larger), as the warper breaks them. */
function refTopP(row: number[], p: number, minKeep = 1): number[] {
  const order = row.map((_, i) => i).sort((a, b) => row[a]! - row[b]! || a - b);
  const max = Math.max(...row);
  const w = row.map((x) => Math.exp(x - max));
  const total = w.reduce((a, b) => a + b, 0);
  const out = [...row];
  let cum = 0;
  order.forEach((i, rank) => {
    cum += w[i]! / total;
    if (cum <= 1 - p && rank < order.length - minKeep) out[i] = -Infinity;
  });
  return out;
}

describe('logits warpers', () => {
  it('kthLargest equals the sorted array on random data with repeats (lengths 1, 2, 7, 97, 1000)', () => {
    const rand = mulberry32(3);
    for (const n of [1, 2, 7, 97, 1000]) {
      const a = Float32Array.from({ length: n }, () => Math.floor(rand() * 20) - 10);
      const sorted = [...a].sort((x, y) => y - x);
      for (const k of new Set([1, 2, Math.ceil(n / 3), n].filter((k) => k <= n))) expect(kthLargest(a, k)).toBe(sorted[k - 1]);
    }
  });

  it('temperature divides in float32, by the float32 temperature (torch)', () => {
    const s = randomScores(1, 3, 13, true);
    const want = s.map((x) => Math.fround(x / Math.fround(0.7)));
    temperatureWarper(0.7)(noHistory(3), s, 13);
    expect(s).toEqual(want);
    expect(() => temperatureWarper(0)).toThrow(/`temperature` \(=0\) has to be a strictly positive float/);
  });

  it('top-k keeps the k largest and their ties, over rows with -inf; k >= vocab changes nothing', () => {
    for (const [vocab, k, seed] of [[1, 1, 1], [7, 3, 2], [97, 50, 3], [1000, 1, 4], [13, 13, 5], [13, 40, 6]] as const) {
      const s = randomScores(seed, 3, vocab, true);
      const want = [0, 1, 2].flatMap((r) => refTopK(Array.from(s.subarray(r * vocab, (r + 1) * vocab)), k));
      topKWarper(k)(noHistory(3), s, vocab);
      expect(Array.from(s)).toEqual(want);
    }
    // ties at the k-th value stay: k = 2 over [3, 5, 5, 5] keeps all three fives
    const tie = Float32Array.from([3, 5, 5, 5]);
    topKWarper(2)(noHistory(1), tie, 4);
    expect(Array.from(tie)).toEqual([-Infinity, 5, 5, 5]);
    // fewer finite scores than k: the k-th is -inf and nothing more is removed
    const few = Float32Array.from([-Infinity, 2, -Infinity, 1]);
    topKWarper(3)(noHistory(1), few, 4);
    expect(Array.from(few)).toEqual([-Infinity, 2, -Infinity, 1]);
    expect(() => topKWarper(0)).toThrow(/`top_k` has to be a strictly positive integer, but is 0/);
    expect(() => topKWarper(3)([[0]], new Float32Array(5), 6)).toThrow(/TopKLogitsWarper: scores of length 5 do not match 1 rows x vocab 6/);
  });

  it('top-p keeps the smallest top set reaching p (HF ascending cumulative form), rows with -inf, p = 0 keeps one', () => {
    for (const [vocab, p, seed] of [[1, 0.5, 1], [2, 0.3, 2], [7, 0.9, 3], [97, 0.5, 4], [1000, 0.95, 5], [1000, 0.1, 6], [13, 0, 7]] as const) {
      const s = randomScores(seed, 3, vocab, seed % 2 === 0);
      const want = [0, 1, 2].flatMap((r) => refTopP(Array.from(s.subarray(r * vocab, (r + 1) * vocab)), p));
      topPWarper(p)(noHistory(3), s, vocab);
      expect(Array.from(s)).toEqual(want);
    }
    // a nearly flat row (an untrained model's): most of the 5,000 tokens are kept
    const flat = randomScores(10, 2, 5000).map((x) => x / 400);
    const wantFlat = [0, 1].flatMap((r) => refTopP(Array.from(flat.subarray(r * 5000, (r + 1) * 5000)), 0.9));
    topPWarper(0.9)(noHistory(2), flat, 5000);
    expect(Array.from(flat)).toEqual(wantFlat);
    expect(wantFlat.filter((x) => x > -Infinity).length).toBeGreaterThan(8000);
    // ties: probabilities [0.1, 0.3, 0.3, 0.3] and p 0.5: from the top, the second 0.3 brings the mass to 0.6;
    // the ascending form removes 0.1 (cum 0.1) and the first 0.3 in sort order (cum 0.4 <= 0.5)
    const tie = Float32Array.from([Math.log(0.1), Math.log(0.3), Math.log(0.3), Math.log(0.3)]);
    const want = refTopP(Array.from(tie), 0.5);
    topPWarper(0.5)(noHistory(1), tie, 4);
    expect(Array.from(tie)).toEqual(want);
    expect(want.filter((x) => x > -Infinity).length).toBe(2);
    expect(() => topPWarper(1.5)).toThrow(/`top_p` has to be a float > 0 and < 1, but is 1.5/);
    // beam sampling keeps at least two tokens (min_tokens_to_keep 2), and at least three with 3
    for (const [minKeep, p, seed] of [[2, 0, 11], [2, 0.3, 12], [3, 0.05, 13]] as const) {
      const s = randomScores(seed, 3, 57, true);
      const wantKeep = [0, 1, 2].flatMap((r) => refTopP(Array.from(s.subarray(r * 57, (r + 1) * 57)), p, minKeep));
      topPWarper(p, minKeep)(noHistory(3), s, 57);
      expect(Array.from(s)).toEqual(wantKeep);
      for (let r = 0; r < 3; r++) expect(s.subarray(r * 57, (r + 1) * 57).filter((x) => x > -Infinity).length).toBeGreaterThanOrEqual(minKeep);
    }
  });

  it('builds temperature, top-k, top-p in HF order, only those set, and none without do_sample', () => {
    const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_length: 20 };
    expect(buildLogitsWarpers(resolveGenerationConfig(T5, { temperature: 0.5, top_k: 3 }))).toEqual([]);
    expect(buildLogitsWarpers(resolveGenerationConfig(T5, { do_sample: true, top_k: 0 }))).toEqual([]);
    expect(buildLogitsWarpers(resolveGenerationConfig(T5, { do_sample: true })).length).toBe(1); // top_k 50
    // order: top-k over the temperature-scaled scores, then top-p over what is left
    const c = resolveGenerationConfig(T5, { do_sample: true, temperature: 0.5, top_k: 4, top_p: 0.6 });
    const s = randomScores(9, 2, 31);
    const want = [0, 1].flatMap((r) => {
      const row = Array.from(s.subarray(r * 31, (r + 1) * 31), (x) => Math.fround(x / 0.5));
      return refTopP(refTopK(row, 4), 0.6);
    });
    for (const w of buildLogitsWarpers(c)) w(noHistory(2), s, 31);
    expect(Array.from(s)).toEqual(want);
  });

  it('builds min_p right after top_p (later transformers\' order), with beam sampling\'s two tokens kept', () => {
    const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_length: 20 };
    const scores = randomScores(5, 2, 37);
    const run = (o: Record<string, unknown>, rows: number) => {
      const s = scores.slice(0, rows * 37);
      for (const w of buildLogitsWarpers(resolveGenerationConfig(T5, { do_sample: true, top_k: 0, ...o }))) w(noHistory(rows), s, 37);
      return Array.from(s);
    };
    // min_p 0.3 after top_p 0.9: min_p's threshold is taken over what top_p left (the same top token)
    const byHand = Float32Array.from(scores);
    topPWarper(0.9)(noHistory(2), byHand, 37);
    minPWarper(0.3)(noHistory(2), byHand, 37);
    expect(run({ top_p: 0.9, min_p: 0.3 }, 2)).toEqual(Array.from(byHand));
    expect(run({ min_p: 0.3 }, 2).filter((x) => x > -Infinity).length).toBeGreaterThan(0);
    // num_beams 2: min_p 1 keeps two tokens per row
    const kept = run({ min_p: 1, num_beams: 2 }, 2);
    expect([0, 1].map((r) => kept.slice(r * 37, (r + 1) * 37).filter((x) => x > -Infinity).length)).toEqual([2, 2]);
  });

  it('renormalize_logits ends the warpers with a log_softmax too (HF 4.36 _get_logits_warper), only when sampling', () => {
    const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_length: 20 };
    expect(buildLogitsWarpers(resolveGenerationConfig(T5, { renormalize_logits: true }))).toEqual([]);
    const warpers = buildLogitsWarpers(resolveGenerationConfig(T5, { do_sample: true, top_k: 3, renormalize_logits: true }));
    expect(warpers.length).toBe(2);
    const s = randomScores(4, 1, 11);
    for (const w of warpers) w(noHistory(1), s, 11);
    const kept = Array.from(s).filter((x) => x > -Infinity);
    expect(kept.length).toBe(3);
    expect(kept.reduce((sum, x) => sum + Math.exp(x), 0)).toBeCloseTo(1, 6);
  });
});

/** torch's log_softmax of a row in float64 (-inf stays -inf). */
function refLogSoftmax(row: number[]): number[] {
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
  return row.map((x) => x - lse);
}

/** HF TypicalLogitsWarper line by line: sort |−logp − H| ascending, cumulative softmax of the sorted scores,
 * last_ind = count(cumsum < mass) clamped, remove what lies farther than position last_ind, keep the first. */
function refTypical(row: number[], mass: number): number[] {
  const logp = refLogSoftmax(row);
  const p = logp.map(Math.exp);
  const ent = -logp.reduce((a, lp, i) => (Number.isNaN(lp * p[i]!) ? a : a + lp * p[i]!), 0);
  const shifted = logp.map((lp) => Math.abs(-lp - ent));
  const order = row.map((_, i) => i).sort((a, b) => shifted[a]! - shifted[b]! || a - b);
  const cum: number[] = [];
  order.reduce((a, i) => (cum.push(a + p[i]!), a + p[i]!), 0);
  const lastInd = Math.min(cum.filter((c) => c < mass).length, row.length - 1);
  const limit = shifted[order[lastInd]!]!;
  const out = [...row];
  order.forEach((i, rank) => {
    if (rank > 0 && shifted[i]! > limit) out[i] = -Infinity;
  });
  return out;
}

/** HF EpsilonLogitsWarper / EtaLogitsWarper: remove p < cutoff where the score is below the top one. */
function refCutoff(row: number[], cutoff: (p: number[], logp: number[]) => number): number[] {
  const logp = refLogSoftmax(row);
  const p = logp.map(Math.exp);
  const c = cutoff(p, logp);
  const top = Math.max(...row);
  return row.map((x, i) => (p[i]! < c && x < top ? -Infinity : x));
}

describe('typical, epsilon and eta warpers', () => {
  it('equal HF\'s on random rows with -inf entries, at several settings; each removes something', () => {
    let removed = 0;
    for (const [vocab, seed] of [[1, 1], [7, 2], [97, 3], [1000, 4]] as const) {
      const rows = 3;
      for (const [make, ref] of [
        [typicalWarper(0.9), (r: number[]) => refTypical(r, 0.9)],
        [typicalWarper(0.2), (r: number[]) => refTypical(r, 0.2)],
        [epsilonWarper(0.02), (r: number[]) => refCutoff(r, () => 0.02)],
        [etaWarper(0.05), (r: number[]) => refCutoff(r, (p, lp) => Math.min(0.05, Math.sqrt(0.05) * Math.exp(p.reduce((a, x, i) => (x > 0 ? a + x * lp[i]! : a), 0))))],
      ] as const) {
        const s = randomScores(seed * 31, rows, vocab, true);
        const want = [...Array(rows).keys()].flatMap((r) => ref(Array.from(s.subarray(r * vocab, (r + 1) * vocab))));
        const before = s.filter((x) => x === -Infinity).length;
        make(noHistory(rows), s, vocab);
        expect(Array.from(s), `vocab ${vocab}`).toEqual(want);
        removed += s.filter((x) => x === -Infinity).length - before;
        // the top token always stays
        for (let r = 0; r < rows; r++) expect(Math.max(...s.subarray(r * vocab, (r + 1) * vocab))).toBeGreaterThan(-Infinity);
      }
    }
    expect(removed).toBeGreaterThan(1000);
  });

  it('come after top-p in HF\'s order, only when sampling, and refuse out-of-range values as HF', () => {
    const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_length: 20 };
    const c = resolveGenerationConfig(T5, { do_sample: true, top_k: 0, typical_p: 0.5, epsilon_cutoff: 0.01, eta_cutoff: 0.2 });
    expect(buildLogitsWarpers(c).length).toBe(3);
    expect(buildLogitsWarpers(resolveGenerationConfig(T5, { do_sample: true, top_k: 0, epsilon_cutoff: 1, eta_cutoff: -1 })).length).toBe(0);
    const off = resolveGenerationConfig(T5, { typical_p: 0.5 });
    expect(buildLogitsWarpers(off)).toEqual([]);
    expect(off.warnings).toEqual([expect.stringMatching(/`do_sample` is false, but `typical_p` is 0.5/)]);
    const s = randomScores(9, 2, 50);
    const want = [0, 1].flatMap((r) => {
      const row = Array.from(s.subarray(r * 50, (r + 1) * 50));
      return refCutoff(refCutoff(refTypical(row, 0.5), () => 0.01), (p, lp) => Math.min(0.2, Math.sqrt(0.2) * Math.exp(p.reduce((a, x, i) => (x > 0 ? a + x * lp[i]! : a), 0))));
    });
    for (const w of buildLogitsWarpers(c)) w(noHistory(2), s, 50);
    expect(Array.from(s)).toEqual(want);
    expect(() => typicalWarper(1)).toThrow('`typical_p` has to be a float > 0 and < 1, but is 1');
    expect(() => epsilonWarper(0)).toThrow('`epsilon_cutoff` has to be a float > 0 and < 1, but is 0');
    expect(() => etaWarper(1.5)).toThrow('`eta_cutoff` has to be a float > 0 and < 1, but is 1.5');
  });
});
