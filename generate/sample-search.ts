// Sampling as HF 4.36's `sample` (`do_sample=True`, `num_beams=1`): each step the logits processors, then the
// logits warpers (temperature, top-k, top-p: logits-warpers.ts), then one token per row drawn from
// softmax(scores); a row that produced an eos token gets pad tokens from then on, and the loop stops when every
// row has finished or the sequence reaches max_length, as greedy search does. With num_return_sequences k the
// stepper has k rows per input (HF's `_expand_inputs_for_generation`), each sampled on its own.
//
// The draws come from a seeded mulberry32 stream (util/mulberry32.ts), not torch's generator: the same seed gives
// the same sequences here on every machine, and the same distribution as HF, but not HF's draws. Without a seed
// each call draws a fresh one, as successive HF generate() calls differ unless `set_seed` is called.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import type { DecoderStepper, GenerationOutput } from './search-types.ts';
import { applyLogitsProcessors } from './logits-processors.ts';
import { buildLogitsWarpers } from './logits-warpers.ts';
import { checkRowSearchTokens, searchRowByRow } from './greedy-search.ts';
import { logSumExpRows } from './greedy-sequence-scores.ts';
import { mulberry32 } from '../util/mulberry32.ts';

/**
 * One token drawn from softmax(scores[r]): the first index whose running sum of exp(score - max) exceeds
 * u * total, for u uniform in [0, 1). Throws when every token of the row is -inf (HF: torch.multinomial refuses
 * the row).
 */
export function sampleRow(scores: Float32Array, r: number, vocab: number, u: number, step: number): number {
  const base = r * vocab;
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (scores[base + i]! > max) max = scores[base + i]!;
  if (max === -Infinity) {
    throw new RangeError(`generate: at decoder step ${step} every token of row ${r} was removed (-inf), so there is nothing to sample`);
  }
  let total = 0;
  for (let i = 0; i < vocab; i++) total += Math.exp(scores[base + i]! - max);
  const target = u * total;
  let run = 0;
  let last = 0;
  for (let i = 0; i < vocab; i++) {
    const w = Math.exp(scores[base + i]! - max);
    if (w === 0) continue;
    run += w;
    last = i;
    if (run > target) return i;
  }
  return last; // u * total rounded up to the whole sum: the last token with any weight
}

export interface SampleOptions {
  /** Seed of the draws, an integer in [0, 2^32); default: a fresh random one per call. */
  seed?: number;
  /**
   * Also return `sequencesScores`: each row's sum of token log-probabilities under the processed, unwarped
   * distribution (what greedy and beam search score), up to and including `</s>`, / generated length **
   * length_penalty. HF has no sequence score for sampling.
   */
  sequenceScores?: boolean;
}

/** The draws of a sampling search: mulberry32 from the given seed, or a fresh random one; u in [0, 2^32). */
export function samplingStream(options: SampleOptions): () => number {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`generate: the sampling seed must be an integer in [0, 2^32), got ${seed}`);
  return mulberry32(seed);
}

export async function sampleSearch(
  stepper: DecoderStepper,
  rows: number,
  config: ResolvedGenerationConfig,
  options: SampleOptions = {},
): Promise<GenerationOutput> {
  const vocab = stepper.vocabSize;
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`sampleSearch: rows must be >= 1, got ${rows}`);
  if (config.numBeams !== 1) throw new RangeError(`sampleSearch: num_beams must be 1, got ${config.numBeams}`);
  checkRowSearchTokens(config, vocab);
  const next = samplingStream(options);
  const warpers = buildLogitsWarpers(config);
  const logProbs: number[][] | undefined = options.sequenceScores ? Array.from({ length: rows }, () => []) : undefined;
  // per step: one draw per row, ended or not, so a row's draws do not depend on when the others end; and, for the
  // sequence scores, the processed scores before the warpers change them and their logsumexp
  const draws = new Float64Array(rows);
  let unwarped: Float32Array | undefined;
  let lse: Float64Array | undefined;

  const out = await searchRowByRow(stepper, rows, config, {
    prepare(processed, inputIds) {
      for (let r = 0; r < rows; r++) draws[r] = next() / 4294967296;
      if (logProbs) {
        lse = logSumExpRows(processed, rows, vocab);
        unwarped = warpers.length > 0 ? Float32Array.from(processed) : processed;
      }
      applyLogitsProcessors(warpers, inputIds, processed, vocab);
    },
    choose(processed, r, step) {
      const token = sampleRow(processed, r, vocab, draws[r]!, step);
      if (logProbs) logProbs[r]!.push(unwarped![r * vocab + token]! - lse![r]!);
      return token;
    },
  });
  if (logProbs) {
    out.sequencesScores = logProbs.map((lp) => (lp.length > 0 ? lp.reduce((a, b) => a + b, 0) / lp.length ** config.lengthPenalty : 0));
  }
  return out;
}
