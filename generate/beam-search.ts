// Beam search as HF 4.36's `beam_search` with its `BeamSearchScorer` and `BeamHypotheses`, decision for decision:
//
// - scores = log_softmax(logits) (float32; on the GPU when the stepper offers stepLogProbs), then the logits
//   processors, plus each row's running beam score (float32 add); at the first step only beam 0 is alive (the
//   others start at -1e9);
// - per input, the top max(2, 1 + #eos) * num_beams of the flattened [beams x vocab] scores, best first, the lowest
//   flat index first among exact ties (what we take torch.topk to do);
// - walking that list: an eos candidate becomes a finished hypothesis only if its rank is < num_beams, any other
//   candidate fills the next free beam, until num_beams beams are filled;
// - hypothesis score = sum of log-probs / generated_len ** length_penalty, generated_len counting the tokens after
//   the decoder start token INCLUDING the eos (4.36: `cur_len + 1 - decoder_prompt_len` for an eos candidate,
//   `hyp.shape[-1] - decoder_prompt_len` at finalize); at most num_beams kept per input;
// - an input is done when is_done() says so (early_stopping true / false / "never", 4.36 formulas below) for the
//   best running beam's score, as transformers' vectorized `_beam_search` (measured with 4.57) has it; 4.36's scorer
//   passed the best candidate of the step, a finishing eos included. The two differ only when an eos candidate
//   tops a step after num_beams hypotheses are kept (tests/t5-generate-golden.test.ts: a boosted eos with
//   exponential_decay_length_penalty); every 4.36 golden case is the same under both. Group beam search keeps
//   4.36's rule, as the scorer of its Hub code still does, and so does beam sampling (below). A done input's
//   rows then get pad tokens, score 0 and cache row 0 (HF's `next_beam_indices[batch_idx, :] = 0`);
// - stop when every input is done or the sequence reaches max_length; finalize() adds the still-running beams of
//   inputs not done, takes the best num_return_sequences per input, appends eos_token_id[0] to the ones that ended
//   in eos and pads the rest with pad_token_id.
// Scores are float32 where HF holds them in tensors and float64 where HF takes `.item()` into Python floats.
//
// Beam sampling (do_sample with num_beams > 1) is HF 4.36's `beam_sample` on the same scorer: every beam starts
// alive (score 0); the warpers (min_tokens_to_keep 2) run on processed + beam score, and each input's candidates
// are 2·num_beams draws without replacement from the softmax of its flattened [beams x vocab] warped scores,
// sorted by warped score, best first; those warped scores become the beam scores. The per-step `scores` (and the
// transition scores) are the warpers applied to the processed scores alone, as HF records them. The draws come
// from sample-search.ts's seeded stream, not torch's generator.
import type { EarlyStopping, ResolvedGenerationConfig } from './generation-config.ts';
import { timeIsUp, type DecoderStepper, type GenerationOutput } from './search-types.ts';
import { applyLogitsProcessors, buildLogitsProcessors, logSoftmaxRows } from './logits-processors.ts';
import { checkLogits, checkLogitsShape, checkNoNaN, checkTokenIds, nanLogitsError } from './greedy-search.ts';
import { buildLogitsWarpers } from './logits-warpers.ts';
import { samplingStream, type SampleOptions } from './sample-search.ts';

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
   * computed for (HF 4.36: `input_ids.shape[-1] + 1`), `bestSumLogprobs` the best running beam's score (or the best
   * candidate's: BeamSearchScorer's `doneFrom`).
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
 * among equal scores. The same pass looks for NaN (a broken step): `nanAt` is the flat index into `scores` of the
 * first NaN met, and the candidates are then incomplete; -1 when there is none.
 */
export function topKCandidates(
  scores: Float32Array,
  beamScores: Float32Array,
  first: number,
  numBeams: number,
  vocab: number,
  k: number,
): { index: Int32Array; value: Float64Array; nanAt: number } {
  if (k > numBeams * vocab) throw new RangeError(`topKCandidates: ${k} requested of ${numBeams * vocab} candidates`);
  const index = new Int32Array(k);
  const value = new Float64Array(k).fill(-Infinity);
  let n = 0;
  let threshold = -Infinity; // value[k - 1] once k are kept
  // Fast rejection without the float32 rounding: fround is monotone and `threshold` a float32, so a float64 sum
  // <= threshold rounds to <= threshold and cannot enter. NaN until k are kept: compares false, rejects nothing
  // (a -inf candidate still fills an empty place). A NaN score also fails `<=` and is caught below.
  let bound = NaN;
  for (let beam = 0; beam < numBeams; beam++) {
    const base = (first + beam) * vocab;
    const add = beamScores[first + beam]!;
    for (let token = 0; token < vocab; token++) {
      const sum = scores[base + token]! + add;
      if (sum <= bound) continue;
      const s = Math.fround(sum);
      if (s !== s) return { index, value, nanAt: base + token };
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
      if (n === k) bound = threshold;
    }
  }
  return { index, value, nanAt: -1 };
}

/**
 * Beam sampling's candidates of one input (HF 4.36 beam_sample): `k` draws without replacement from the softmax
 * of warped[(first + beam) * vocab + token] over the flattened [numBeams x vocab] (torch.multinomial), each draw
 * from `next()` (uniform in [0, 2^32)) by inverse CDF over the weights left: the first index whose running sum of
 * the tokens not drawn yet exceeds u times their total, found by bisection on prefix sums less the drawn weights
 * (one pass over the row, not one per draw: 4 beams x 32,128 tokens x 8 draws a step). Then sorted by warped
 * score, best first (draw order among equal scores). Throws, as torch.multinomial does, when fewer than k tokens
 * have a probability above 0. `nanAt` as in topKCandidates.
 */
export function sampleCandidates(
  warped: Float32Array, first: number, numBeams: number, vocab: number, k: number, next: () => number,
): { index: Int32Array; value: Float64Array; nanAt: number } {
  const n = numBeams * vocab;
  const base = first * vocab;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const s = warped[base + i]!;
    if (s !== s) return { index: new Int32Array(k), value: new Float64Array(k), nanAt: base + i };
    if (s > max) max = s;
  }
  // prefix[i] = the weights of tokens 0 .. i-1
  const prefix = new Float64Array(n + 1);
  let alive = 0;
  for (let i = 0; i < n; i++) {
    const w = Math.exp(warped[base + i]! - max);
    if (w > 0) alive++;
    prefix[i + 1] = prefix[i]! + w;
  }
  if (alive < k) {
    throw new RangeError(`generate: beam sampling draws ${k} tokens (2 x num_beams) without replacement per input, but only ${alive} have a probability above 0`);
  }
  const drawn: Array<{ index: number; value: number }> = [];
  let drawnMass = 0;
  // the running sum of the tokens not drawn, through token i
  const left = (i: number) => {
    let m = prefix[i + 1]!;
    for (const d of drawn) if (d.index <= i) m -= prefix[d.index + 1]! - prefix[d.index]!;
    return m;
  };
  for (let d = 0; d < k; d++) {
    const target = (next() / 4294967296) * (prefix[n]! - drawnMass);
    let lo = 0;
    let hi = n - 1;
    if (left(hi) <= target) {
      // u rounded up to the whole mass: the last token still there
      while (hi > 0 && (prefix[hi + 1]! === prefix[hi]! || drawn.some((x) => x.index === hi))) hi--;
      lo = hi;
    }
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (left(mid) > target) hi = mid;
      else lo = mid + 1;
    }
    drawn.push({ index: lo, value: warped[base + lo]! });
    drawnMass += prefix[lo + 1]! - prefix[lo]!;
  }
  drawn.sort((a, b) => b.value - a.value);
  return { index: Int32Array.from(drawn, (c) => c.index), value: Float64Array.from(drawn, (c) => c.value), nanAt: -1 };
}

/** The candidates of input b's beams starting at row `first`, best first (beam search: the top ones). */
export type CandidateSource = (first: number) => { index: Int32Array; value: Float64Array; nanAt: number };

/** HF's decoder prompt: the decoder start token alone. */
export const DECODER_PROMPT_LEN = 1;

/** The running beams, one row per (input, beam): HF's input_ids, beam_indices, per-token scores and beam_scores. */
export interface RunningBeams {
  inputIds: number[][];
  beamHistory: number[][];
  transitionHistory: number[][];
  beamScores: Float32Array;
}

/** What one step keeps: HF's next_beam_scores, next_beam_tokens and next_beam_indices. */
export interface NextBeams {
  scores: Float32Array;
  tokens: Int32Array;
  indices: Int32Array;
}

/** Beam search, or with do_sample beam sampling (`sampling`: its seed). */
export async function beamSearch(
  stepper: DecoderStepper,
  batchSize: number,
  config: ResolvedGenerationConfig,
  sampling: SampleOptions = {},
): Promise<GenerationOutput> {
  checkBeamSearchArgs(batchSize, config);
  const vocab = stepper.vocabSize;
  // beam sampling restates 4.36's beam_sample throughout (4.57 also moved its warpers before the beam score)
  const scorer = new BeamSearchScorer(batchSize, config, vocab, undefined, config.doSample ? 'best-candidate' : 'best-running-beam');
  const rows = batchSize * config.numBeams;
  const processors = buildLogitsProcessors(config, DECODER_PROMPT_LEN, stepper.encoderInputIds);
  const sample = config.doSample ? { next: samplingStream(sampling), warpers: buildLogitsWarpers(config) } : null;
  const scoresOut: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  let beams = startBeams(rows, config.numBeams, config.decoderStartTokenId, sample === null);
  let tokens: Int32Array = new Int32Array(rows).fill(config.decoderStartTokenId);
  let curLen = DECODER_PROMPT_LEN;
  const start = performance.now();

  for (let step = 0; ; step++) {
    const processed = await stepLogSoftmax(stepper, tokens, rows, vocab, step);
    applyLogitsProcessors(processors, beams.inputIds, processed, vocab);
    // what HF records per step: the processed scores, or for beam sampling the warpers' view of them
    let stepScores = processed;
    let candidates: CandidateSource = (first) => topKCandidates(processed, beams.beamScores, first, config.numBeams, vocab, scorer.nCandidates);
    if (sample) {
      const warped = new Float32Array(processed.length);
      for (let r = 0; r < rows; r++) {
        const add = beams.beamScores[r]!;
        for (let v = 0; v < vocab; v++) warped[r * vocab + v] = processed[r * vocab + v]! + add;
      }
      applyLogitsProcessors(sample.warpers, beams.inputIds, warped, vocab);
      stepScores = Float32Array.from(processed);
      applyLogitsProcessors(sample.warpers, beams.inputIds, stepScores, vocab);
      candidates = (first) => sampleCandidates(warped, first, config.numBeams, vocab, 2 * config.numBeams, sample.next);
    }
    if (scoresOut) scoresOut.push(stepScores);

    const next = scorer.process(processed, stepScores, candidates, beams, curLen, step);
    beams = advanceBeams(beams, next, stepScores, vocab);
    curLen++;
    // HF reorders the cache before this check; after the last step the cache is not used again.
    if (scorer.allDone() || curLen >= config.maxLength || timeIsUp(config.maxTime, start)) break;
    stepper.reorder(next.indices);
    tokens = next.tokens;
  }

  return scorer.finalize(beams, scoresOut);
}

/** One decoder step's log_softmax [rows, vocab], on the GPU when the stepper offers it. */
export async function stepLogSoftmax(stepper: DecoderStepper, tokens: Int32Array, rows: number, vocab: number, step: number): Promise<Float32Array> {
  if (stepper.stepLogProbs) {
    const logProbs = await stepper.stepLogProbs(tokens);
    // a NaN logit makes its row's log-probs NaN; the scorer's top-k pass finds it (a separate scan of 64 rows x
    // 32,128 took 2-3 ms a step of beam search at batch 16)
    checkLogitsShape(logProbs, rows, vocab, step);
    return logProbs;
  }
  const logits = await stepper.step(tokens);
  checkLogits(logits, rows, vocab, step);
  return logSoftmaxRows(logits, rows, vocab);
}

/** The checks HF makes before a beam search, with its messages. */
export function checkBeamSearchArgs(batchSize: number, config: ResolvedGenerationConfig): void {
  const numBeams = config.numBeams;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`beamSearch: batch size must be >= 1, got ${batchSize}`);
  if (!Number.isSafeInteger(numBeams) || numBeams < 2) {
    throw new RangeError(`generate: \`num_beams\` has to be an integer strictly greater than 1 for beam search, but is ${numBeams}`);
  }
  if (config.numReturnSequences > numBeams) {
    throw new RangeError(`generate: \`num_return_sequences\` has to be smaller or equal to \`num_beams\` (${numBeams}), but is ${config.numReturnSequences}`);
  }
  if (config.maxLength <= DECODER_PROMPT_LEN) {
    // HF fails here too (finalize cannot fit a hypothesis longer than max_length).
    throw new RangeError(`generate: \`max_length\` (${config.maxLength}) must be larger than the decoder prompt length (${DECODER_PROMPT_LEN}) for beam search`);
  }
}

/** Every row starts at the decoder start token; only beam 0 of each input is alive at the first step of beam
 * search (`deadBeams`), every beam at once in beam sampling (HF's beam_sample starts all scores at 0). */
export function startBeams(rows: number, numBeams: number, decoderStartTokenId: number, deadBeams: boolean): RunningBeams {
  const beamScores = new Float32Array(rows);
  if (deadBeams) for (let r = 0; r < rows; r++) if (r % numBeams !== 0) beamScores[r] = DEAD_BEAM_SCORE;
  return {
    inputIds: Array.from({ length: rows }, () => [decoderStartTokenId]),
    beamHistory: Array.from({ length: rows }, () => []),
    transitionHistory: Array.from({ length: rows }, () => []),
    beamScores,
  };
}

/** Row r continues row next.indices[r] with next.tokens[r] (HF's torch.cat of input_ids[beam_idx, :]). */
export function advanceBeams(beams: RunningBeams, next: NextBeams, processed: Float32Array, vocab: number): RunningBeams {
  const rows = next.indices.length;
  const { inputIds, beamHistory, transitionHistory } = beams;
  return {
    inputIds: Array.from({ length: rows }, (_, r) => [...inputIds[next.indices[r]!]!, next.tokens[r]!]),
    beamHistory: Array.from({ length: rows }, (_, r) => [...beamHistory[next.indices[r]!]!, next.indices[r]!]),
    transitionHistory: Array.from({ length: rows }, (_, r) => [
      ...transitionHistory[next.indices[r]!]!,
      processed[next.indices[r]! * vocab + next.tokens[r]!]!,
    ]),
    beamScores: next.scores,
  };
}

/** HF's BeamSearchScorer: the finished hypotheses and done flag of every input, process() and finalize(). Group
 * beam search (group-beam-search.ts) keeps one per group, each with the group's beams. */
export class BeamSearchScorer {
  private readonly hyps: BeamHypotheses[];
  private readonly done: boolean[];
  private readonly numBeams: number;
  private readonly eos: number[];
  /** How many of the best candidates each input looks at per step (beam search; beam sampling draws 2 x beams). */
  readonly nCandidates: number;

  /**
   * `nCandidates`: the candidates walked per input and step (default: beam search's, or beam sampling's draws).
   * `doneFrom`: the score is_done() weighs, the best running beam's (transformers' `_beam_search`) or the best
   * candidate's, eos included (4.36's BeamSearchScorer, still group beam search's).
   */
  constructor(
    batchSize: number,
    private readonly config: ResolvedGenerationConfig,
    private readonly vocab: number,
    nCandidates?: number,
    private readonly doneFrom: 'best-running-beam' | 'best-candidate' = 'best-running-beam',
  ) {
    checkTokenIds(config, vocab);
    this.numBeams = config.numBeams;
    this.eos = config.eosTokenIds;
    this.nCandidates = nCandidates ?? (config.doSample ? 2 * config.numBeams : Math.max(2, 1 + this.eos.length) * config.numBeams);
    if (this.nCandidates > this.numBeams * vocab) {
      throw new RangeError(`generate: beam search takes the top ${this.nCandidates} of num_beams x vocab = ${this.numBeams * vocab} candidates per input`);
    }
    this.hyps = Array.from({ length: batchSize }, () => new BeamHypotheses(this.numBeams, config.lengthPenalty, config.earlyStopping, config.maxLength));
    this.done = new Array<boolean>(batchSize).fill(false);
  }

  allDone(): boolean {
    return this.done.every(Boolean);
  }

  /** The next beams of every input from its candidates; a done input's rows get pad tokens, score 0 and cache row
   * 0. `stepScores` give the transition score of a finished hypothesis's eos. */
  process(processed: Float32Array, stepScores: Float32Array, candidates: CandidateSource, beams: RunningBeams, curLen: number, step: number): NextBeams {
    const rows = beams.inputIds.length;
    const next: NextBeams = { scores: new Float32Array(rows), tokens: new Int32Array(rows), indices: new Int32Array(rows) };
    for (let b = 0; b < this.hyps.length; b++) {
      const first = b * this.numBeams;
      if (this.done[b]) {
        checkNoNaN(processed, first * this.vocab, (first + this.numBeams) * this.vocab, this.vocab, step);
        const pad = this.config.padTokenId;
        if (pad === null) throw new Error('generate: finished beams need `eos_token_id` and `pad_token_id` to be defined');
        next.tokens.fill(pad, first, first + this.numBeams);
        continue; // scores 0, cache row 0
      }
      const bestCandidate = this.selectInputBeams(b, candidates(first), stepScores, beams, curLen, next, step);
      const best = this.doneFrom === 'best-candidate' ? bestCandidate : next.scores[first]!;
      this.done[b] = this.hyps[b]!.isDone(best, curLen + 1, DECODER_PROMPT_LEN);
    }
    return next;
  }

  /**
   * Walks input b's best candidates: an eos candidate ranked below num_beams finishes a hypothesis, any other
   * fills the next free beam. Returns the best candidate score (for is_done).
   */
  private selectInputBeams(
    b: number, top: ReturnType<CandidateSource>, stepScores: Float32Array, beams: RunningBeams, curLen: number, next: NextBeams, step: number,
  ): number {
    const { numBeams, nCandidates, vocab, eos } = this;
    const first = b * numBeams;
    if (top.nanAt >= 0) throw nanLogitsError(step, top.nanAt, vocab);
    let filled = 0;
    for (let rank = 0; rank < nCandidates; rank++) {
      const flat = top.index[rank]!;
      const score = Math.fround(top.value[rank]!);
      const source = first + ((flat / vocab) | 0);
      const token = flat % vocab;
      if (eos.includes(token)) {
        if (rank >= numBeams) continue;
        this.hyps[b]!.add(
          beams.inputIds[source]!,
          score,
          [...beams.beamHistory[source]!, source],
          // compute_transition_scores gathers the token in `sequences`, where finalize wrote eos_token_id[0]
          [...beams.transitionHistory[source]!, stepScores[source * vocab + eos[0]!]!],
          curLen + 1 - DECODER_PROMPT_LEN,
        );
      } else {
        next.scores[first + filled] = score;
        next.tokens[first + filled] = token;
        next.indices[first + filled] = source;
        filled++;
      }
      if (filled === numBeams) break;
    }
    if (filled < numBeams) {
      throw new Error(`generate: at most ${numBeams} of the top ${nCandidates} tokens can be eos tokens (${eos.join(', ')}), input ${b}`);
    }
    return Math.fround(top.value[0]!);
  }

  /** finalize's first half: the running beams of inputs not done join their hypotheses. */
  addOpenBeams(beams: RunningBeams): void {
    this.hyps.forEach((hyp, b) => {
      if (this.done[b]) return;
      for (let k = 0; k < this.numBeams; k++) {
        const r = b * this.numBeams + k;
        const ids = beams.inputIds[r]!;
        hyp.add(ids, beams.beamScores[r]!, beams.beamHistory[r]!, beams.transitionHistory[r]!, ids.length - DECODER_PROMPT_LEN);
      }
    });
  }

  /** Input b's kept hypotheses, in the order they were added. */
  hypotheses(b: number): readonly Hypothesis[] {
    return this.hyps[b]!.beams;
  }

  /** Adds the running beams of inputs not done, then takes the best num_return_sequences per input. */
  finalize(beams: RunningBeams, scoresOut: Float32Array[] | undefined): GenerationOutput {
    this.addOpenBeams(beams);
    const best = this.hyps.flatMap((hyp) => bestHypotheses(hyp.beams, this.config.numReturnSequences));
    return hypothesesOutput(best, this.config, scoresOut);
  }
}

/** HF's pick of the best `n`: Python's sorted() is stable and pop() takes the last, so among equal scores the
 * later added one comes first. */
export function bestHypotheses(candidates: readonly Hypothesis[], n: number): Hypothesis[] {
  const sorted = [...candidates].sort((a, b) => a.score - b.score);
  return Array.from({ length: n }, () => sorted.pop()!);
}

/** The chosen hypotheses as HF's output: sequences padded to one width, beam indices, transition scores. */
export function hypothesesOutput(best: Hypothesis[], config: ResolvedGenerationConfig, scoresOut: Float32Array[] | undefined): GenerationOutput {
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
