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
import { applyLogitsProcessors, buildLogitsProcessors } from './logits-processors.ts';
import { buildLogitsWarpers } from './logits-warpers.ts';
import { checkLogits, checkTokenIds } from './greedy-search.ts';
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

export async function sampleSearch(
  stepper: DecoderStepper,
  rows: number,
  config: ResolvedGenerationConfig,
  options: SampleOptions = {},
): Promise<GenerationOutput> {
  const vocab = stepper.vocabSize;
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`sampleSearch: rows must be >= 1, got ${rows}`);
  if (config.numBeams !== 1) throw new RangeError(`sampleSearch: num_beams must be 1, got ${config.numBeams}`);
  checkTokenIds(config, vocab);
  const eos = config.eosTokenIds;
  const pad = config.padTokenId;
  if (eos.length > 0 && pad === null) throw new Error('generate: If `eos_token_id` is defined, make sure that `pad_token_id` is defined.');
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`generate: the sampling seed must be an integer in [0, 2^32), got ${seed}`);
  const next = mulberry32(seed);
  const processors = buildLogitsProcessors(config);
  const warpers = buildLogitsWarpers(config);

  const inputIds: number[][] = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  const transition: number[][] = Array.from({ length: rows }, () => []);
  const logProbs: number[][] | undefined = options.sequenceScores ? Array.from({ length: rows }, () => []) : undefined;
  const scores: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  const unfinished = new Uint8Array(rows).fill(1);
  const tokens = new Int32Array(rows).fill(config.decoderStartTokenId);

  for (let step = 0; ; step++) {
    const logits = await stepper.step(tokens);
    checkLogits(logits, rows, vocab, step);
    const processed = scores ? Float32Array.from(logits) : logits;
    applyLogitsProcessors(processors, inputIds, processed, vocab);
    // the model's log-probabilities come from the processed scores, before the warpers change them
    const lse = logProbs ? logSumExpRows(processed, rows, vocab) : undefined;
    const unwarped = logProbs && warpers.length > 0 ? Float32Array.from(processed) : processed;
    applyLogitsProcessors(warpers, inputIds, processed, vocab);
    if (scores) scores.push(processed);

    let anyUnfinished = false;
    for (let r = 0; r < rows; r++) {
      // one draw per row and step, finished or not, so a row's draws do not depend on when the others end
      const u = next() / 4294967296;
      const token = unfinished[r] || eos.length === 0 ? sampleRow(processed, r, vocab, u, step) : pad!;
      tokens[r] = token;
      inputIds[r]!.push(token);
      transition[r]!.push(processed[r * vocab + token]!);
      if (logProbs && unfinished[r]) logProbs[r]!.push(unwarped[r * vocab + token]! - lse![r]!);
      if (eos.length > 0 && eos.includes(token)) unfinished[r] = 0;
      if (unfinished[r]) anyUnfinished = true;
    }
    if (eos.length > 0 && !anyUnfinished) break;
    if (inputIds[0]!.length >= config.maxLength) break;
  }

  const out: GenerationOutput = { sequences: inputIds, transitionScores: transition, ...(scores ? { scores } : {}) };
  if (logProbs) {
    out.sequencesScores = logProbs.map((lp) => (lp.length > 0 ? lp.reduce((a, b) => a + b, 0) / lp.length ** config.lengthPenalty : 0));
  }
  return out;
}
