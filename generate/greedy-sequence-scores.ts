// A sequence score for greedy search, where HF has none: beam search's formula, sum of the token
// log-probabilities (up to and including `</s>`) / generated length ** length_penalty, over the greedy tokens.
// A greedy transition score is the chosen token's processed logit, and the processors only set banned tokens to
// -inf (a banned token is never chosen), so logit - logsumexp(raw logits) is the token's log-probability, the
// same quantity beam search sums. Float64 throughout.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import type { GenerationOutput } from './search-types.ts';

/** logsumexp of each row of raw logits [rows, vocab]. */
export function logSumExpRows(logits: Float32Array, rows: number, vocab: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) if (logits[base + i]! > max) max = logits[base + i]!;
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i]! - max);
    out[r] = max + Math.log(sum);
  }
  return out;
}

/** One score per row of a greedy output; `stepLse[t][r]` is logSumExpRows of step t's raw logits. */
export function greedySequencesScores(
  out: GenerationOutput,
  stepLse: readonly Float64Array[],
  config: ResolvedGenerationConfig,
): number[] {
  const eos = new Set(config.eosTokenIds);
  return out.sequences.map((row, i) => {
    const end = row.findIndex((id, t) => t > 0 && eos.has(id));
    const n = (end < 0 ? row.length : end + 1) - 1;
    let sum = 0;
    for (let t = 0; t < n; t++) sum += out.transitionScores[i]![t]! - stepLse[t]![i]!;
    return n > 0 ? sum / n ** config.lengthPenalty : 0;
  });
}
