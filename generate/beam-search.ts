// Beam search as HF 4.36's `beam_search` with its `BeamSearchScorer` and `BeamHypotheses`, decision for decision:
//
// - scores = log_softmax(logits) (float32), then the logits processors, plus each row's running beam score
//   (float32 add); at the first step only beam 0 is alive (the others start at -1e9);
// - per input, the top max(2, 1 + #eos) * num_beams of the flattened [beams x vocab] scores, best first, the lowest
//   flat index first among exact ties (what we take torch.topk to do);
// - walking that list: an eos candidate becomes a finished hypothesis only if its rank is < num_beams, any other
//   candidate fills the next free beam, until num_beams beams are filled;
// - hypothesis score = sum of log-probs / generated_len ** length_penalty, generated_len counting the tokens after
//   the decoder start token INCLUDING the eos (4.36: `cur_len + 1 - decoder_prompt_len` for an eos candidate,
//   `hyp.shape[-1] - decoder_prompt_len` at finalize); at most num_beams kept per input;
// - an input is done when is_done() says so (early_stopping true / false / "never", 4.36 formulas below); a done
//   input's rows then get pad tokens, score 0 and cache row 0 (HF's `next_beam_indices[batch_idx, :] = 0`);
// - stop when every input is done or the sequence reaches max_length; finalize() adds the still-running beams of
//   inputs not done, takes the best num_return_sequences per input, appends eos_token_id[0] to the ones that ended
//   in eos and pads the rest with pad_token_id.
// Scores are float32 where HF holds them in tensors and float64 where HF takes `.item()` into Python floats.
import type { EarlyStopping, ResolvedGenerationConfig } from './generation-config.ts';
import type { DecoderStepper, GenerationOutput } from './search-types.ts';
import { applyLogitsProcessors, buildLogitsProcessors, logSoftmaxRows } from './logits-processors.ts';
import { checkLogits, checkTokenIds } from './greedy-search.ts';

/** HF's initial score of beams 1.. at the first step, so that only beam 0's tokens are considered. */
export const DEAD_BEAM_SCORE = -1e9;

export interface Hypothesis {
  /** Python float: sum_logprobs / generated_len ** length_penalty. */
  score: number;
  /** Decoder start token included; without the eos token (finalize appends it). */
  tokens: number[];
  /** Running row of every generated token, the eos token included. */
  beamIndices: number[];
  /** Processed log-prob of every generated token, as compute_transition_scores gathers it. */
  transitionScores: number[];
}

/** HF BeamHypotheses: the best `numBeams` finished hypotheses of one input. */
export class BeamHypotheses {
  readonly beams: Hypothesis[] = [];
  worstScore = 1e9;

  constructor(
    readonly numBeams: number,
    readonly lengthPenalty: number,
    readonly earlyStopping: EarlyStopping,
    readonly maxLength: number,
  ) {}

  get length(): number {
    return this.beams.length;
  }

  add(tokens: number[], sumLogprobs: number, beamIndices: number[], transitionScores: number[], generatedLen: number): void {
    const score = sumLogprobs / generatedLen ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worstScore) {
      this.beams.push({ score, tokens, beamIndices, transitionScores });
      if (this.beams.length > this.numBeams) {
        // Python: sorted((s, idx) ...): ties on the score go to the lower index, i.e. the earlier added one.
        const order = this.beams.map((h, idx) => ({ s: h.score, idx })).sort((a, b) => a.s - b.s || a.idx - b.idx);
        this.beams.splice(order[0]!.idx, 1);
        this.worstScore = order[1]!.s;
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  /**
   * Whether no running beam can still beat the worst kept hypothesis. `curLen` is the length the scores were
   * computed for (HF 4.36: `input_ids.shape[-1] + 1`), `bestSumLogprobs` the best candidate score of the step.
   */
  isDone(bestSumLogprobs: number, curLen: number, decoderPromptLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    let highestAttainable: number;
    if (this.earlyStopping === false) {
      // HF's heuristic: as if the best running beam stopped now.
      highestAttainable = bestSumLogprobs / (curLen - decoderPromptLen) ** this.lengthPenalty;
    } else if (this.lengthPenalty > 0) {
      // "never", positive penalty: the largest denominator (max_length) gives the highest (negative) score.
      if (this.maxLength <= decoderPromptLen) throw new Error('generate: max_length is not larger than decoder prompt length');
      highestAttainable = bestSumLogprobs / (this.maxLength - decoderPromptLen) ** this.lengthPenalty;
    } else {
      highestAttainable = bestSumLogprobs / (curLen - decoderPromptLen) ** this.lengthPenalty;
    }
    return this.worstScore >= highestAttainable;
  }
}

/**
 * The `k` best candidates of one input: scores[(first + beam) * vocab + token] + beamScores[first + beam] in
 * float32 over the flattened [numBeams x vocab], best first, the lower flat index (beam * vocab + token) first
 * among equal scores. NaN-free input (checkLogits refuses NaN).
 */
export function topKCandidates(
  scores: Float32Array,
  beamScores: Float32Array,
  first: number,
  numBeams: number,
  vocab: number,
  k: number,
): { index: Int32Array; value: Float64Array } {
  if (k > numBeams * vocab) throw new RangeError(`topKCandidates: ${k} requested of ${numBeams * vocab} candidates`);
  const index = new Int32Array(k);
  const value = new Float64Array(k).fill(-Infinity);
  let n = 0;
  let threshold = -Infinity; // value[k - 1] once k are kept
  for (let beam = 0; beam < numBeams; beam++) {
    const base = (first + beam) * vocab;
    const add = beamScores[first + beam]!;
    for (let token = 0; token < vocab; token++) {
      const s = Math.fround(scores[base + token]! + add);
      if (n === k && !(s > threshold)) continue;
      // insert after every kept value >= s: earlier (lower) indices stay ahead on ties
      let pos = n === k ? k - 1 : n;
      while (pos > 0 && value[pos - 1]! < s) {
        value[pos] = value[pos - 1]!;
        index[pos] = index[pos - 1]!;
        pos--;
      }
      value[pos] = s;
      index[pos] = beam * vocab + token;
      if (n < k) n++;
      threshold = value[k - 1]!;
    }
  }
  return { index, value };
}

export async function beamSearch(
  stepper: DecoderStepper,
  batchSize: number,
  config: ResolvedGenerationConfig,
): Promise<GenerationOutput> {
  const numBeams = config.numBeams;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`beamSearch: batch size must be >= 1, got ${batchSize}`);
  if (!Number.isSafeInteger(numBeams) || numBeams < 2) {
    throw new RangeError(`generate: \`num_beams\` has to be an integer strictly greater than 1 for beam search, but is ${numBeams}`);
  }
  if (config.numReturnSequences > numBeams) {
    throw new RangeError(`generate: \`num_return_sequences\` has to be smaller or equal to \`num_beams\` (${numBeams}), but is ${config.numReturnSequences}`);
  }
  const decoderPromptLen = 1;
  if (config.maxLength <= decoderPromptLen) {
    // HF fails here too (finalize cannot fit a hypothesis longer than max_length).
    throw new RangeError(`generate: \`max_length\` (${config.maxLength}) must be larger than the decoder prompt length (${decoderPromptLen}) for beam search`);
  }
  const vocab = stepper.vocabSize;
  checkTokenIds(config, vocab);
  const rows = batchSize * numBeams;
  const eos = config.eosTokenIds;
  const pad = config.padTokenId;
  const nCandidates = Math.max(2, 1 + eos.length) * numBeams;
  if (nCandidates > numBeams * vocab) {
    throw new RangeError(`generate: beam search takes the top ${nCandidates} of num_beams x vocab = ${numBeams * vocab} candidates per input`);
  }
  const processors = buildLogitsProcessors(config, decoderPromptLen);
  const hyps = Array.from({ length: batchSize }, () => new BeamHypotheses(numBeams, config.lengthPenalty, config.earlyStopping, config.maxLength));
  const done = new Array<boolean>(batchSize).fill(false);

  let inputIds: number[][] = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  let beamHistory: number[][] = Array.from({ length: rows }, () => []);
  let transitionHistory: number[][] = Array.from({ length: rows }, () => []);
  let beamScores = new Float32Array(rows);
  for (let r = 0; r < rows; r++) if (r % numBeams !== 0) beamScores[r] = DEAD_BEAM_SCORE;
  const scoresOut: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  let tokens = new Int32Array(rows).fill(config.decoderStartTokenId);
  let curLen = decoderPromptLen;

  for (let step = 0; ; step++) {
    const logits = await stepper.step(tokens);
    checkLogits(logits, rows, vocab, step);
    const processed = logSoftmaxRows(logits, rows, vocab);
    applyLogitsProcessors(processors, inputIds, processed, vocab);
    if (scoresOut) scoresOut.push(processed);

    const nextScores = new Float32Array(rows);
    const nextTokens = new Int32Array(rows);
    const nextIndices = new Int32Array(rows);
    for (let b = 0; b < batchSize; b++) {
      const first = b * numBeams;
      if (done[b]) {
        if (pad === null) throw new Error('generate: finished beams need `eos_token_id` and `pad_token_id` to be defined');
        nextTokens.fill(pad, first, first + numBeams);
        continue; // scores 0, cache row 0
      }
      const top = topKCandidates(processed, beamScores, first, numBeams, vocab, nCandidates);
      let filled = 0;
      for (let rank = 0; rank < nCandidates; rank++) {
        const flat = top.index[rank]!;
        const score = Math.fround(top.value[rank]!);
        const source = first + ((flat / vocab) | 0);
        const token = flat % vocab;
        if (eos.includes(token)) {
          if (rank >= numBeams) continue;
          hyps[b]!.add(
            inputIds[source]!,
            score,
            [...beamHistory[source]!, source],
            // compute_transition_scores gathers the token in `sequences`, where finalize wrote eos_token_id[0]
            [...transitionHistory[source]!, processed[source * vocab + eos[0]!]!],
            curLen + 1 - decoderPromptLen,
          );
        } else {
          nextScores[first + filled] = score;
          nextTokens[first + filled] = token;
          nextIndices[first + filled] = source;
          filled++;
        }
        if (filled === numBeams) break;
      }
      if (filled < numBeams) {
        throw new Error(`generate: at most ${numBeams} of the top ${nCandidates} tokens can be eos tokens (${eos.join(', ')}), input ${b}`);
      }
      done[b] = hyps[b]!.isDone(Math.fround(top.value[0]!), curLen + 1, decoderPromptLen);
    }

    inputIds = Array.from({ length: rows }, (_, r) => [...inputIds[nextIndices[r]!]!, nextTokens[r]!]);
    beamHistory = Array.from({ length: rows }, (_, r) => [...beamHistory[nextIndices[r]!]!, nextIndices[r]!]);
    transitionHistory = Array.from({ length: rows }, (_, r) => [
      ...transitionHistory[nextIndices[r]!]!,
      processed[nextIndices[r]! * vocab + nextTokens[r]!]!,
    ]);
    beamScores = nextScores;
    curLen++;
    // HF reorders the cache before this check; after the last step the cache is not used again.
    if (done.every(Boolean) || curLen >= config.maxLength) break;
    stepper.reorder(nextIndices);
    tokens = nextTokens;
  }

  return finalize(hyps, done, inputIds, beamScores, beamHistory, transitionHistory, config, decoderPromptLen, scoresOut);
}

function finalize(
  hyps: BeamHypotheses[],
  done: boolean[],
  inputIds: number[][],
  beamScores: Float32Array,
  beamHistory: number[][],
  transitionHistory: number[][],
  config: ResolvedGenerationConfig,
  decoderPromptLen: number,
  scoresOut: Float32Array[] | undefined,
): GenerationOutput {
  const numBeams = config.numBeams;
  hyps.forEach((hyp, b) => {
    if (done[b]) return;
    for (let k = 0; k < numBeams; k++) {
      const r = b * numBeams + k;
      hyp.add(inputIds[r]!, beamScores[r]!, beamHistory[r]!, transitionHistory[r]!, inputIds[r]!.length - decoderPromptLen);
    }
  });

  const best: Hypothesis[] = [];
  for (const hyp of hyps) {
    // Python's sorted() is stable and pop() takes the last: among equal scores the later added one comes first.
    const sorted = [...hyp.beams].sort((a, b) => a.score - b.score);
    for (let j = 0; j < config.numReturnSequences; j++) best.push(sorted.pop()!);
  }
  const lengths = best.map((h) => h.tokens.length);
  const longest = Math.max(...lengths);
  const width = Math.min(longest + 1, config.maxLength);
  if (Math.min(...lengths) !== longest && config.padTokenId === null) throw new Error('generate: `pad_token_id` has to be defined');
  const fillValue = config.padTokenId ?? 0;

  const sequences = best.map((h) => {
    const row = new Array<number>(width).fill(fillValue);
    for (let i = 0; i < h.tokens.length; i++) row[i] = h.tokens[i]!;
    if (h.tokens.length < width) row[h.tokens.length] = config.eosTokenIds[0]!; // only the first eos id, as HF
    return row;
  });
  const beamIndices = best.map((h) => {
    const row = new Array<number>(width).fill(-1);
    for (let i = 0; i < h.beamIndices.length; i++) row[i] = h.beamIndices[i]!;
    return row;
  });
  // compute_transition_scores: as many columns as the longest beam path, 0 where a path ended.
  const steps = Math.max(...best.map((h) => h.beamIndices.length));
  const transitionScores = best.map((h) => Array.from({ length: steps }, (_, t) => h.transitionScores[t] ?? 0));
  return {
    sequences,
    sequencesScores: best.map((h) => Math.fround(h.score)),
    beamIndices,
    transitionScores,
    ...(scoresOut ? { scores: scoresOut } : {}),
  };
}
