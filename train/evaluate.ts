// Validation as the tutorial's validation_step computes it, and the answers' quality as SQuAD scores it:
//   loss        mean cross-entropy over every validation label token (batches weighted by their token counts,
//               so the result does not depend on the eval batch size)
//   exactMatch  percent of greedy (or beam) answers equal to the gold answer after SQuAD normalisation
//   f1          mean token F1, percent
import { noGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { generateIds, padBatch } from '../generate/generate.ts';
import { resolveGenerationConfig, type ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { checkReadable, describeBadRows, readQaCsv } from '../tasks/csv-data.ts';
import { DataError } from '../util/data-error.ts';
import { collate, tokenizeRows, type Example } from './dataset.ts';
import { squadScores } from './squad-metrics.ts';

export interface EvalOptions {
  batchSize: number;
  /** examples answered by generation for exact match / F1 (the first ones); default all; 0 skips generation */
  limit?: number;
  generation: ResolvedGenerationConfig;
  /** the loss's label smoothing ε, as the run trains with it (HF's Trainer smooths its eval loss too); default 0 */
  labelSmoothing?: number;
  /** called after each batch with (done, total) examples, loss pass then generation pass */
  onProgress?: (phase: 'loss' | 'generate', done: number, total: number) => void;
}

export interface EvalResult {
  loss: number;
  /** label tokens the loss averages over */
  tokens: number;
  /** percent */
  exactMatch: number;
  /** percent */
  f1: number;
  /** examples in the loss */
  examples: number;
  /** examples answered by generation */
  generated: number;
  predictions: Array<{ question: string; answer: string; prediction: string; line: number }>;
}

/** Indices sorted by source length (batches of similar lengths pad less; the result does not depend on order). */
function byLength(examples: readonly Example[], n: number): number[] {
  return [...Array(n).keys()].sort((a, b) => examples[a]!.source.length - examples[b]!.source.length || a - b);
}

export async function evaluate(
  model: T5ForConditionalGeneration, tok: T5Tokenizer, examples: readonly Example[], o: EvalOptions,
): Promise<EvalResult> {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RangeError(`eval batch size must be a positive integer, got ${o.batchSize}`);
  let lossSum = 0;
  let tokens = 0;
  const order = byLength(examples, examples.length);
  for (let s = 0; s < order.length; s += o.batchSize) {
    const b = collate(order.slice(s, s + o.batchSize).map((i) => examples[i]!), tok.padTokenId);
    const loss = noGrad(() => tidy(() => model.forward(b, { training: false, skipPadding: true, labelSmoothing: o.labelSmoothing }).loss!));
    const v = await loss.item();
    loss.dispose();
    lossSum += v * b.labelTokens;
    tokens += b.labelTokens;
    o.onProgress?.('loss', Math.min(s + o.batchSize, order.length), order.length);
  }
  const n = Math.min(o.limit ?? examples.length, examples.length);
  const predictions: EvalResult['predictions'] = [];
  const gen = byLength(examples, n);
  const answers = new Array<string>(n);
  for (let s = 0; s < gen.length; s += o.batchSize) {
    const idx = gen.slice(s, s + o.batchSize);
    const out = await noGrad(() => generateIds(model, padBatch(idx.map((i) => examples[i]!.source), tok.padTokenId), o.generation));
    idx.forEach((i, r) => { answers[i] = tok.decode(out.sequences[r * o.generation.numReturnSequences]!); });
    o.onProgress?.('generate', Math.min(s + o.batchSize, gen.length), gen.length);
  }
  for (let i = 0; i < n; i++) {
    const e = examples[i]!;
    predictions.push({ question: e.question, answer: e.answer, prediction: answers[i]!, line: e.line });
  }
  const scores = n > 0 ? squadScores(answers, examples.slice(0, n).map((e) => e.answer)) : { exactMatch: NaN, f1: NaN };
  return {
    loss: tokens > 0 ? lossSum / tokens : NaN, tokens, exactMatch: scores.exactMatch, f1: scores.f1,
    examples: examples.length, generated: n, predictions,
  };
}

/** 'exact match X%, F1 Y%', or what stood in for them when no answer was generated (NaN then: --eval-limit 0). */
export function describeAnswerScores(r: Pick<EvalResult, 'exactMatch' | 'f1' | 'generated'>): string {
  if (r.generated === 0) return 'exact match and F1 not computed (no answers generated)';
  return `exact match ${r.exactMatch.toFixed(1)}%, F1 ${r.f1.toFixed(1)}%`;
}

export interface EvaluateFileOptions {
  /** model folder or Hub id */
  model: string;
  data: string;
  /** default 1 (greedy) */
  numBeams?: number;
  /** default 8 */
  batchSize?: number;
  /** the first N usable rows */
  limit?: number;
  /** answers generated for exact match / F1; default every example */
  generateLimit?: number;
  maxSourceLength?: number;
  maxTargetLength?: number;
  /** tokens generated per answer; default maxTargetLength */
  maxNewTokens?: number;
  /** the loss's label smoothing ε, to compare with a run that trained with it (HF's eval loss then is smoothed) */
  labelSmoothing?: number;
  onBadRow?: 'skip' | 'error';
  onProgress?: EvalOptions['onProgress'];
  /** bad-row and data lines */
  log?: (line: string) => void;
}

/**
 * `engine-cli eval`: loads a model folder, reads and cleans the CSV as the folder's t5_webgpu.json says (raw text
 * for a folder without one, as Hugging Face would see it), and evaluates.
 */
export async function evaluateFile(o: EvaluateFileOptions): Promise<EvalResult> {
  const log = o.log ?? (() => {});
  // before the model, which may be a download from the Hub: a mistyped CSV path should not wait for it
  await checkReadable(o.data);
  const loaded = await loadModelForCli(o.model);
  try {
    const clean = loaded.preprocess ?? { fillNa: false, collapseWhitespace: false, lowercase: false };
    const { rows, report } = await readQaCsv(o.data, { ...clean, ...(loaded.preprocess ?? {}), onBadRow: o.onBadRow, limit: o.limit });
    if (report.badRowCount > 0) log(describeBadRows(report));
    const tok = tokenizeRows(rows, loaded.tokenizer, { maxSourceLength: o.maxSourceLength, maxTargetLength: o.maxTargetLength, onBadRow: o.onBadRow }, o.data);
    if (tok.badRows.length > 0) log(`${o.data}: skipped ${tok.badRows.length} rows too long: ${tok.badRows.slice(0, 5).map((b) => `line ${b.line}`).join(', ')}`);
    if (tok.examples.length === 0) throw new DataError(`${o.data}: no usable rows`, o.data);
    const eps = o.labelSmoothing ?? 0;
    if (!(eps >= 0 && eps < 1)) throw new Error(`eval: label smoothing must be in [0, 1), got ${eps}`);
    const { config, file } = await readGenerationConfigFile(loaded.dir);
    // exact match and F1 from a search, never from samples, whatever the folder's do_sample: a metric that repeats
    const generation = resolveGenerationConfig(config, { num_beams: o.numBeams ?? 1, max_new_tokens: o.maxNewTokens ?? o.maxTargetLength ?? 128, do_sample: false }, file);
    return await evaluate(loaded.model, loaded.tokenizer, tok.examples, {
      batchSize: o.batchSize ?? 8, limit: o.generateLimit, generation, labelSmoothing: eps, onProgress: o.onProgress,
    });
  } finally {
    loaded.model.dispose();
  }
}
