// Greedy search as HF 4.36's `greedy_search`: the processors run on the raw logits (no log-softmax), the token is
// the argmax (lowest index among exact ties, as torch.argmax), a row that produced an eos token gets pad tokens
// from then on (it keeps being fed, so its transition scores there are the processed logits of the pad), and the
// loop stops when every row has finished or the sequence reaches max_length (decoder start token included).
// The loop itself (searchRowByRow) is sampling's too (sample-search.ts), with another token choice.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { timeIsUp, type DecoderStepper, type GenerationOutput } from './search-types.ts';
import { applyLogitsProcessors, buildLogitsProcessors } from './logits-processors.ts';

/** Index of the largest value of row `r`; the first one among equal values; NaN counts as largest (torch). */
export function argmaxRow(scores: Float32Array, r: number, vocab: number): number {
  const base = r * vocab;
  let best = 0;
  let bestValue = scores[base]!;
  if (Number.isNaN(bestValue)) return 0;
  for (let i = 1; i < vocab; i++) {
    const x = scores[base + i]!;
    if (Number.isNaN(x)) return i;
    if (x > bestValue) {
      bestValue = x;
      best = i;
    }
  }
  return best;
}

export function checkLogits(logits: Float32Array, rows: number, vocab: number, step: number): void {
  checkLogitsShape(logits, rows, vocab, step);
  checkNoNaN(logits, 0, logits.length, vocab, step);
}

/** The step returned rows x vocab float32 values. */
export function checkLogitsShape(logits: Float32Array, rows: number, vocab: number, step: number): void {
  if (!(logits instanceof Float32Array) || logits.length !== rows * vocab) {
    throw new RangeError(
      `generate: decoder step ${step} returned ${logits instanceof Float32Array ? logits.length : typeof logits} values, expected rows ${rows} x vocab ${vocab}`,
    );
  }
}

/** No NaN in logits[from, to). HF would carry a NaN on into garbage ids; a NaN here means a broken model step
 * (e.g. float16 overflow). */
export function checkNoNaN(logits: Float32Array, from: number, to: number, vocab: number, step: number): void {
  for (let i = from; i < to; i++) {
    const x = logits[i]!;
    if (x !== x) throw nanLogitsError(step, i, vocab);
  }
}

/** The error for a NaN at flat index i of a step's rows x vocab values. */
export function nanLogitsError(step: number, i: number, vocab: number): RangeError {
  return new RangeError(`generate: decoder step ${step} returned NaN logits (row ${Math.floor(i / vocab)}, token ${i % vocab})`);
}

/** The special token ids must be rows of the model's output. */
export function checkTokenIds(config: ResolvedGenerationConfig, vocab: number): void {
  if (!Number.isSafeInteger(vocab) || vocab < 1) throw new RangeError(`generate: stepper vocabSize must be a positive integer, got ${vocab}`);
  const check = (name: string, id: number | null): void => {
    if (id !== null && !(id >= 0 && id < vocab)) throw new RangeError(`generate: \`${name}\` ${id} is outside the vocabulary (size ${vocab})`);
  };
  check('decoder_start_token_id', config.decoderStartTokenId);
  check('pad_token_id', config.padTokenId);
  for (const id of config.eosTokenIds) check('eos_token_id', id);
}

/** The special tokens a row-by-row search needs: in the vocabulary, and a pad token for rows after their eos. */
export function checkRowSearchTokens(config: ResolvedGenerationConfig, vocab: number): void {
  checkTokenIds(config, vocab);
  if (config.eosTokenIds.length > 0 && config.padTokenId === null) {
    throw new Error('generate: If `eos_token_id` is defined, make sure that `pad_token_id` is defined.');
  }
}

/** What both greedy searches (this one and greedy-on-device.ts) need of their arguments. */
export function checkGreedyArgs(batchSize: number, config: ResolvedGenerationConfig, vocab: number): void {
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`greedySearch: batch size must be >= 1, got ${batchSize}`);
  if (config.numBeams !== 1) throw new RangeError(`greedySearch: num_beams must be 1, got ${config.numBeams}`);
  if (config.doSample) throw new RangeError('greedySearch: the config samples (do_sample): use generate() or sampleSearch()');
  checkRowSearchTokens(config, vocab);
}

/** How a row-by-row search (greedy search, sampling) picks each row's next token. */
export interface RowChooser {
  /** After the logits processors, before the step's scores are kept: sampling's warpers. */
  prepare?(processed: Float32Array, inputIds: readonly (readonly number[])[], step: number): void;
  /** The next token of row r while it has not ended (every row when there is no eos token). */
  choose(processed: Float32Array, r: number, step: number): number;
}

/**
 * The loop HF 4.36's `greedy_search` and `sample` share: each step the logits, the processors, then the
 * chooser's token for every row that has not ended and the pad token for the others; transition scores are the
 * chosen tokens' scores as kept in `scores`; it stops when every row has ended or the sequence, decoder start
 * token included, is max_length long (MaxLengthCriteria). Arguments are checked by the caller.
 */
export async function searchRowByRow(
  stepper: DecoderStepper,
  rows: number,
  config: ResolvedGenerationConfig,
  chooser: RowChooser,
): Promise<GenerationOutput> {
  const vocab = stepper.vocabSize;
  const eos = config.eosTokenIds;
  const pad = config.padTokenId;
  const processors = buildLogitsProcessors(config, 1, stepper.encoderInputIds);
  const start = performance.now();

  const inputIds: number[][] = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  const transition: number[][] = Array.from({ length: rows }, () => []);
  const scores: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  const unfinished = new Uint8Array(rows).fill(1);
  const tokens = new Int32Array(rows).fill(config.decoderStartTokenId);

  for (let step = 0; ; step++) {
    const logits = await stepper.step(tokens);
    checkLogits(logits, rows, vocab, step);
    // the processors write into the step's array unless each step's scores are kept (the stepper may reuse it)
    const processed = scores ? Float32Array.from(logits) : logits;
    applyLogitsProcessors(processors, inputIds, processed, vocab);
    chooser.prepare?.(processed, inputIds, step);
    if (scores) scores.push(processed);

    let anyUnfinished = false;
    for (let r = 0; r < rows; r++) {
      const token = unfinished[r] || eos.length === 0 ? chooser.choose(processed, r, step) : pad!;
      tokens[r] = token;
      inputIds[r]!.push(token);
      transition[r]!.push(processed[r * vocab + token]!);
      if (eos.length > 0 && eos.includes(token)) unfinished[r] = 0;
      if (unfinished[r]) anyUnfinished = true;
    }
    if (eos.length > 0 && !anyUnfinished) break;
    if (inputIds[0]!.length >= config.maxLength || timeIsUp(config.maxTime, start)) break;
  }

  return { sequences: inputIds, transitionScores: transition, ...(scores ? { scores } : {}) };
}

export async function greedySearch(
  stepper: DecoderStepper,
  batchSize: number,
  config: ResolvedGenerationConfig,
): Promise<GenerationOutput> {
  const vocab = stepper.vocabSize;
  checkGreedyArgs(batchSize, config, vocab);
  return searchRowByRow(stepper, batchSize, config, { choose: (processed, r) => argmaxRow(processed, r, vocab) });
}
