// The logits warpers HF 4.36's `_get_logits_warper` builds for sampling (`do_sample`), in its order: temperature,
// top-k, top-p, min-p (4.39's, placed as later versions place it), typical, epsilon, eta (then LogitNormalization
// with renormalize_logits). They run after the logits processors, in place on scores [rows, vocab] (the
// LogitsProcessor signature), and set every token they remove to -inf; sampling then draws from softmax(scores). HF's `min_tokens_to_keep` is 1, or 2 for beam sampling.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { checkShape, logitNormalizationProcessor, type LogitsProcessor } from './logits-processors.ts';

/** HF TemperatureLogitsWarper: scores / temperature in float32, the temperature rounded to float32 first, as torch
 * divides a float32 tensor by a Python float (dividing by the float64 0.7 differs in the last bit for a fifth of
 * the scores: tests/logits-warpers-golden.test.ts). */
export function temperatureWarper(temperature: number): LogitsProcessor {
  if (!(typeof temperature === 'number' && Number.isFinite(temperature) && temperature > 0)) {
    throw new RangeError(`\`temperature\` (=${temperature}) has to be a strictly positive float, otherwise your next token scores will be invalid.`);
  }
  const t = Math.fround(temperature);
  return (inputIds, scores, vocab) => {
    checkShape('TemperatureLogitsWarper', inputIds, scores, vocab);
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / t;
  };
}

/** Scratch arrays reused from row to row and step to step (a 32,128-token row would allocate ~0.4 MB each time). */
let scratchF64 = new Float64Array(0);
let scratchI32 = new Int32Array(0);
let scratchU8 = new Uint8Array(0);
function scratch(n: number): { f64: Float64Array; i32: Int32Array; u8: Uint8Array } {
  if (scratchF64.length < n) {
    scratchF64 = new Float64Array(n);
    scratchI32 = new Int32Array(n);
    scratchU8 = new Uint8Array(n);
  }
  return { f64: scratchF64.subarray(0, n), i32: scratchI32.subarray(0, n), u8: scratchU8.subarray(0, n) };
}

/** The k-th largest of values[0..n) (k >= 1), by quickselect on a copy: O(n) on average. */
export function kthLargest(values: Float32Array, k: number): number {
  const a = scratch(values.length).f64;
  a.set(values);
  // the (k-1)-th position of a descending order is the (n-k)-th of an ascending one
  const target = a.length - k;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target]!;
}

/** HF TopKLogitsWarper: every score below the row's k-th largest gets -inf (ties with it are kept). */
export function topKWarper(topK: number, minTokensToKeep = 1): LogitsProcessor {
  if (!Number.isSafeInteger(topK) || topK <= 0) throw new RangeError(`\`top_k\` has to be a strictly positive integer, but is ${topK}`);
  const k0 = Math.max(topK, minTokensToKeep);
  return (inputIds, scores, vocab) => {
    checkShape('TopKLogitsWarper', inputIds, scores, vocab);
    const k = Math.min(k0, vocab);
    if (k === vocab) return;
    for (let r = 0; r < inputIds.length; r++) {
      const row = scores.subarray(r * vocab, (r + 1) * vocab);
      const kth = kthLargest(row, k);
      for (let i = 0; i < vocab; i++) if (row[i]! < kth) row[i] = -Infinity;
    }
  };
}

/**
 * HF TopPLogitsWarper: with the row sorted ascending, a token whose cumulative probability (softmax of the
 * scores, summed from the smallest) is <= 1 - top_p gets -inf, except the `minTokensToKeep` largest. Read from
 * the top: a token is kept while the probability of the tokens above it is below top_p, so the kept set is the
 * smallest top set reaching top_p. Found by a quickselect on probability mass (keepTopP), in O(vocab) on
 * average, without sorting the row: a nearly flat row (an untrained model) keeps most of its 32,128 tokens.
 * Probabilities in float64 where torch sums float32: the kept set can differ from HF's only when a cumulative
 * sum lands within float32 rounding of 1 - top_p.
 */
export function topPWarper(topP: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(typeof topP === 'number' && topP >= 0 && topP <= 1)) throw new RangeError(`\`top_p\` has to be a float > 0 and < 1, but is ${topP}`);
  if (!Number.isSafeInteger(minTokensToKeep) || minTokensToKeep < 1) throw new RangeError(`TopPLogitsWarper: min_tokens_to_keep must be >= 1, got ${minTokensToKeep}`);
  return (inputIds, scores, vocab) => {
    checkShape('TopPLogitsWarper', inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) keepTopP(scores.subarray(r * vocab, (r + 1) * vocab), topP, minTokensToKeep);
  };
}

/**
 * Sets to -inf every token of `row` outside its top-p set. Tokens rank by score, equal scores by index (the
 * higher index counts as larger, as the last of an ascending sort); a token is kept when the mass of the tokens
 * ranked above it is below topP times the row's mass. A segment of candidates is split around a pivot: when
 * the mass above the pivot already reaches the budget, only the upper part can hold kept tokens; otherwise the
 * upper part and the pivot are kept and the lower part is searched with what is left of the budget.
 */
function keepTopP(row: Float32Array, topP: number, minTokensToKeep: number): void {
  const n = row.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity) return; // every token is already out
  // candidates: the tokens with mass (a -inf token has none and stays -inf either way)
  const { i32: idx, f64: w, u8: keep } = scratch(n);
  keep.fill(0);
  let count = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (row[i] === -Infinity) continue;
    idx[count++] = i;
    w[i] = Math.exp(row[i]! - max);
    total += w[i]!;
  }
  let budget = topP * total;
  let lo = 0;
  let hi = count; // the candidates still undecided: idx[lo .. hi)
  while (lo < hi && budget > 0) {
    // partition idx[lo .. hi) around a middle pivot: [lo, p) ranks above it, [p + 1, hi) below
    const mid = lo + ((hi - lo) >>> 1);
    const pivot = idx[mid]!;
    idx[mid] = idx[hi - 1]!;
    idx[hi - 1] = pivot;
    let p = lo;
    let massUp = 0;
    for (let i = lo; i < hi - 1; i++) {
      const t = idx[i]!;
      if (ranksAbove(row, t, pivot)) {
        idx[i] = idx[p]!;
        idx[p++] = t;
        massUp += w[t]!;
      }
    }
    idx[hi - 1] = idx[p]!;
    idx[p] = pivot;
    if (massUp >= budget) {
      hi = p; // the pivot and everything below it are out
    } else {
      for (let i = lo; i <= p; i++) keep[idx[i]!] = 1;
      budget -= massUp + w[pivot]!;
      lo = p + 1;
    }
  }
  // min_tokens_to_keep: the top ones stay even for top_p 0 (the last of HF's ascending order)
  for (const i of topRanked(row, minTokensToKeep)) keep[i] = 1;
  for (let i = 0; i < n; i++) if (!keep[i]) row[i] = -Infinity;
}

/** Token a ranks above token b: a higher score, or an equal score and a higher index (the last of an ascending sort). */
function ranksAbove(row: Float32Array, a: number, b: number): boolean {
  return row[a]! > row[b]! || (row[a] === row[b] && a > b);
}

/** The `m` highest-ranked tokens of a row (by score, the higher index first among equal scores). */
function topRanked(row: Float32Array, m: number): number[] {
  const top: number[] = [];
  for (let i = 0; i < row.length; i++) {
    if (top.length === m && !ranksAbove(row, i, top[m - 1]!)) continue;
    let pos = top.length === m ? m - 1 : top.length;
    if (top.length < m) top.push(i);
    while (pos > 0 && ranksAbove(row, i, top[pos - 1]!)) {
      top[pos] = top[pos - 1]!;
      pos--;
    }
    top[pos] = i;
  }
  return top;
}

/** Row r's softmax in float64 (-inf entries 0) and its log: torch's softmax and log_softmax of the row. */
function softmaxRow(row: Float32Array): { p: Float64Array; logp: Float64Array } {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const lse = max + Math.log(sum);
  const logp = Float64Array.from(row, (x) => x - lse);
  return { p: logp.map(Math.exp), logp };
}

/** −Σ p log p over the tokens with mass: a -inf token adds 0 (torch's nansum in the typical warper drops 0·(-inf);
 * the eta warper's Categorical clamps -inf logits to the float32 minimum, so they add 0 there too). */
function rowEntropy(p: Float64Array, logp: Float64Array): number {
  let entropy = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) entropy -= p[i]! * logp[i]!;
  return entropy;
}

/**
 * HF TypicalLogitsWarper (locally typical sampling): tokens ordered by |−log p − H| (H the row's entropy), the
 * smallest set of the most typical ones whose probability reaches `mass` is kept (at least the most typical one),
 * the rest get -inf. As HF: the kept set is every token not farther from H than the one at position
 * count(cumulative < mass) of that order. Ties in the order keep the lower index first (torch's sort is not
 * stable; exact ties are measure-zero for real logits).
 */
export function typicalWarper(mass: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(typeof mass === 'number' && mass > 0 && mass < 1)) throw new RangeError(`\`typical_p\` has to be a float > 0 and < 1, but is ${mass}`);
  return (inputIds, scores, vocab) => {
    checkShape('TypicalLogitsWarper', inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) {
      const row = scores.subarray(r * vocab, (r + 1) * vocab);
      const { p, logp } = softmaxRow(row);
      const entropy = rowEntropy(p, logp);
      const shifted = Float64Array.from(logp, (lp) => Math.abs(-lp - entropy));
      const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => shifted[a]! - shifted[b]! || a - b);
      let cumulative = 0;
      let lastInd = 0;
      for (const i of order) {
        cumulative += p[i]!;
        if (cumulative < mass) lastInd++;
        else break;
      }
      const limit = shifted[order[Math.min(lastInd, vocab - 1)]!]!;
      order.forEach((i, rank) => {
        if (rank >= minTokensToKeep && shifted[i]! > limit) row[i] = -Infinity;
      });
    }
  };
}

/** HF's epsilon and eta warpers: tokens with probability below the row's cutoff get -inf, unless their score is
 * not below the `minTokensToKeep`-th largest (the top token always stays). */
function cutoffWarper(name: string, cutoff: (p: Float64Array, logp: Float64Array) => number, minTokensToKeep: number): LogitsProcessor {
  return (inputIds, scores, vocab) => {
    checkShape(name, inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) {
      const row = scores.subarray(r * vocab, (r + 1) * vocab);
      const { p, logp } = softmaxRow(row);
      const c = cutoff(p, logp);
      const kth = kthLargest(row, Math.min(minTokensToKeep, vocab));
      for (let i = 0; i < vocab; i++) if (p[i]! < c && row[i]! < kth) row[i] = -Infinity;
    }
  };
}

/** HF MinPLogitsWarper (transformers >= 4.39): drop tokens less likely than minP times the row's most likely one. */
export function minPWarper(minP: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(minP >= 0 && minP <= 1)) throw new RangeError(`\`min_p\` has to be a float in the [0, 1] interval, but is ${minP}`);
  return cutoffWarper('MinPLogitsWarper', (p) => {
    let top = 0;
    for (let i = 0; i < p.length; i++) if (p[i]! > top) top = p[i]!;
    return minP * top;
  }, minTokensToKeep);
}

/** HF EpsilonLogitsWarper (truncation sampling): drop tokens less likely than epsilon. */
export function epsilonWarper(epsilon: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(epsilon > 0 && epsilon < 1)) throw new RangeError(`\`epsilon_cutoff\` has to be a float > 0 and < 1, but is ${epsilon}`);
  return cutoffWarper('EpsilonLogitsWarper', () => epsilon, minTokensToKeep);
}

/**
 * HF EtaLogitsWarper (eta sampling): drop tokens less likely than min(eta, sqrt(eta)·exp(−H)), H the row's entropy
 * (torch's Categorical entropy: −Σ p log p with -inf logits clamped to the float32 minimum, so they add 0).
 */
export function etaWarper(eta: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(eta > 0 && eta < 1)) throw new RangeError(`\`eta_cutoff\` has to be a float > 0 and < 1, but is ${eta}`);
  return cutoffWarper('EtaLogitsWarper', (p, logp) => {
    return Math.min(eta, Math.sqrt(eta) * Math.exp(-rowEntropy(p, logp)));
  }, minTokensToKeep);
}

/** The warpers `_get_logits_warper` (4.36) makes from a resolved config, in its order; none without do_sample. */
export function buildLogitsWarpers(config: ResolvedGenerationConfig): LogitsProcessor[] {
  if (!config.doSample) return [];
  const out: LogitsProcessor[] = [];
  // beam sampling keeps at least two tokens per row (4.36: `2 if num_beams > 1 else 1`)
  const keep = config.numBeams > 1 ? 2 : 1;
  if (config.temperature !== 1) out.push(temperatureWarper(config.temperature));
  if (config.topK !== 0) out.push(topKWarper(config.topK, keep));
  if (config.topP < 1) out.push(topPWarper(config.topP, keep));
  if (config.minP !== null) out.push(minPWarper(config.minP, keep));
  if (config.typicalP < 1) out.push(typicalWarper(config.typicalP, keep));
  if (config.epsilonCutoff > 0) out.push(epsilonWarper(config.epsilonCutoff, keep));
  if (config.etaCutoff > 0) out.push(etaWarper(config.etaCutoff, keep));
  // HF 4.36's `_get_logits_warper` ends with LogitNormalization too (the processors' already did, once)
  if (config.renormalizeLogits) out.push(logitNormalizationProcessor());
  return out;
}
