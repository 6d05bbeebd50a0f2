// The logits warpers HF 4.36's `_get_logits_warper` builds for sampling (`do_sample`), in its order: temperature,
// then top-k, then top-p. They run after the logits processors, in place on scores [rows, vocab] (the
// LogitsProcessor signature), and set every token they remove to -inf; sampling then draws from
// softmax(scores). HF's `min_tokens_to_keep` is 1 for sampling without beams, the only sampling we implement.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { checkShape, type LogitsProcessor } from './logits-processors.ts';

/** HF TemperatureLogitsWarper: scores / temperature (float32, as torch divides a float32 tensor). */
export function temperatureWarper(temperature: number): LogitsProcessor {
  if (!(typeof temperature === 'number' && Number.isFinite(temperature) && temperature > 0)) {
    throw new RangeError(`\`temperature\` (=${temperature}) has to be a strictly positive float, otherwise your next token scores will be invalid.`);
  }
  return (inputIds, scores, vocab) => {
    checkShape('TemperatureLogitsWarper', inputIds, scores, vocab);
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / temperature;
  };
}

/** The k-th largest of values[0..n) (k >= 1), by quickselect on a copy: O(n) on average. */
export function kthLargest(values: Float32Array, k: number): number {
  const a = Float64Array.from(values);
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
 * smallest top set reaching top_p. Only that top set is sorted (a heap of the row, popped until the mass is
 * reached), not the whole row. Probabilities in float64 where torch sums float32: the kept set can differ from
 * HF's only when a cumulative sum lands within float32 rounding of 1 - top_p.
 */
export function topPWarper(topP: number, minTokensToKeep = 1): LogitsProcessor {
  if (!(typeof topP === 'number' && topP >= 0 && topP <= 1)) throw new RangeError(`\`top_p\` has to be a float > 0 and < 1, but is ${topP}`);
  return (inputIds, scores, vocab) => {
    checkShape('TopPLogitsWarper', inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) keepTopP(scores.subarray(r * vocab, (r + 1) * vocab), topP, minTokensToKeep);
  };
}

function keepTopP(row: Float32Array, topP: number, minKeep: number): void {
  const n = row.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (row[i]! > max) max = row[i]!;
  if (max === -Infinity) return; // nothing to keep or remove: every token is already out
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(row[i]! - max);
  // a max-heap of token indices by score; equal scores: the higher index first, as the ascending sort's last
  const heap = new Int32Array(n);
  for (let i = 0; i < n; i++) heap[i] = i;
  const above = (a: number, b: number) => row[a]! > row[b]! || (row[a] === row[b] && a > b);
  const siftDown = (start: number, size: number) => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= size) return;
      let c = l;
      if (l + 1 < size && above(heap[l + 1]!, heap[l]!)) c = l + 1;
      if (!above(heap[c]!, heap[i]!)) return;
      const t = heap[i]!;
      heap[i] = heap[c]!;
      heap[c] = t;
      i = c;
    }
  };
  for (let i = (n >>> 1) - 1; i >= 0; i--) siftDown(i, n);
  const keep = new Uint8Array(n);
  let size = n;
  let massAbove = 0;
  let kept = 0;
  while (size > 0 && (massAbove < topP * sum || kept < minKeep)) {
    const top = heap[0]!;
    keep[top] = 1;
    kept++;
    massAbove += Math.exp(row[top]! - max);
    heap[0] = heap[--size]!;
    siftDown(0, size);
  }
  for (let i = 0; i < n; i++) if (!keep[i]) row[i] = -Infinity;
}

/** The warpers `_get_logits_warper` (4.36) makes from a resolved config, in its order; none without do_sample. */
export function buildLogitsWarpers(config: ResolvedGenerationConfig): LogitsProcessor[] {
  if (!config.doSample) return [];
  const out: LogitsProcessor[] = [];
  if (config.temperature !== 1) out.push(temperatureWarper(config.temperature));
  if (config.topK !== 0) out.push(topKWarper(config.topK));
  if (config.topP < 1) out.push(topPWarper(config.topP));
  return out;
}
