// The options of a training run: what the caller may set, their defaults (the tutorial's where it had one), and
// the checks that turn a bad value into a one-line error before anything is loaded.
import { join } from 'node:path';
import type { QaCsvOptions } from '../tasks/csv-data.ts';
import type { ScheduleKind } from '../optim/lr-schedule.ts';

export interface TrainOptions {
  /** training CSV */
  data: string;
  /** model folder or Hub id to start from */
  model: string;
  /** output folder */
  out: string;
  /** validation CSV; without it `validSplit` of the training rows are held out */
  valid?: string;
  /** default 0.2 (the tutorial's 80/20); 0 trains on everything and validates never */
  validSplit?: number;
  /** default 101 */
  splitSeed?: number;
  /** the first N usable rows of the training file (the tutorial used 10,000) */
  limit?: number;
  /** column names and cleaning; defaults: context, question, text; fillna, collapse, lowercase */
  csv?: Pick<QaCsvOptions, 'contextColumn' | 'questionColumn' | 'answerColumn' | 'fillNa' | 'collapseWhitespace' | 'lowercase'>;
  /** a bad row: 'skip' (default, counted and listed) or 'error' */
  onBadRow?: 'skip' | 'error';
  maxSourceLength?: number;
  maxTargetLength?: number;
  /** default 5 */
  epochs?: number;
  /** stop after this many optimizer steps (overrides epochs) */
  maxSteps?: number;
  /** default 8 */
  batchSize?: number;
  /** default 2 */
  evalBatchSize?: number;
  /** 'adamw' (default, the tutorial's transformers.AdamW), 'adamw_torch' (HF Trainer's default: torch's AdamW,
   * no weight decay for norms and biases) or 'adafactor' (HF Trainer's optim="adafactor": transformers' Adafactor
   * at this lr, scale_parameter and relative_step off): train/optimizer-setup.ts */
  optim?: OptimizerKind;
  /** default 1e-4 */
  lr?: number;
  /** default 0 */
  weightDecay?: number;
  /** default 1e-6 */
  adamEps?: number;
  /** default [0.9, 0.999] */
  adamBetas?: [number, number];
  /** default 'constant' (the tutorial) */
  lrSchedule?: ScheduleKind;
  /** default 0 */
  warmupSteps?: number;
  /** HF's warmup_ratio: with warmupSteps 0, ceil(ratio x total steps) warm-up steps; default 0 */
  warmupRatio?: number;
  /** micro-batches per optimizer step, default 1 */
  gradAccum?: number;
  /** max global gradient norm; default none (Lightning's default) */
  clipGradNorm?: number;
  /** label smoothing ε of the training and validation loss (HF TrainingArguments' label_smoothing_factor); default 0 */
  labelSmoothing?: number;
  /** overrides config.dropout_rate during training */
  dropout?: number;
  /** recompute each block's activations in the backward instead of keeping them (HF's gradient_checkpointing) */
  gradientCheckpointing?: boolean;
  /** default 100 */
  seed?: number;
  /** default true */
  shuffle?: boolean;
  /** batch examples of similar length together (less padding), default false */
  groupByLength?: boolean;
  /** evaluate every N optimizer steps as well as at each epoch end */
  evalEvery?: number;
  /** examples answered by generation at each evaluation; default 100 */
  evalLimit?: number;
  /** validation examples in the loss (the first N of the validation set); default all */
  validLimit?: number;
  /** tokens generated per answer at evaluation; default maxTargetLength */
  evalMaxNewTokens?: number;
  /** stop when the validation loss has not improved (by more than earlyStoppingThreshold) for this many
   * evaluations in a row: HF's EarlyStoppingCallback(early_stopping_patience); default: never */
  earlyStoppingPatience?: number;
  /** default 0 (HF's early_stopping_threshold) */
  earlyStoppingThreshold?: number;
  /** default 2 */
  saveTopK?: number;
  /** stop training (then evaluate and save as at the end) after this many seconds of this process's loop */
  timeLimit?: number;
  /** save last/ every N optimizer steps besides each evaluation; default: only at evaluations and the end */
  saveEvery?: number;
  /** write a train line to metrics.jsonl every N steps; default 1 */
  logEvery?: number;
  /** tokenization cache folder; default OUT/.cache; null disables */
  cacheDir?: string | null;
  /** measure the matmul / attention / other split on one step (the second, after compilation) */
  profile?: boolean;
}

export const OPTIMIZERS = ['adamw', 'adamw_torch', 'adafactor'] as const;
export type OptimizerKind = (typeof OPTIMIZERS)[number];

export type ResolvedTrainOptions = Required<Omit<TrainOptions, 'valid' | 'limit' | 'maxSteps' | 'clipGradNorm' | 'dropout' | 'evalEvery' | 'validLimit' | 'saveEvery' | 'timeLimit' | 'cacheDir' | 'csv' | 'earlyStoppingPatience'>> &
  Pick<TrainOptions, 'valid' | 'limit' | 'maxSteps' | 'clipGradNorm' | 'dropout' | 'evalEvery' | 'validLimit' | 'saveEvery' | 'timeLimit' | 'earlyStoppingPatience'> & { cacheDir: string | null; csv: NonNullable<TrainOptions['csv']> };

export function resolveTrainOptions(o: TrainOptions): ResolvedTrainOptions {
  const r: ResolvedTrainOptions = {
    data: o.data, model: o.model, out: o.out, valid: o.valid, validSplit: o.validSplit ?? 0.2, splitSeed: o.splitSeed ?? 101,
    limit: o.limit, csv: o.csv ?? {}, onBadRow: o.onBadRow ?? 'skip', maxSourceLength: o.maxSourceLength ?? 512,
    maxTargetLength: o.maxTargetLength ?? 128, epochs: o.epochs ?? 5, maxSteps: o.maxSteps, batchSize: o.batchSize ?? 8,
    evalBatchSize: o.evalBatchSize ?? 2, optim: o.optim ?? 'adamw', lr: o.lr ?? 1e-4, weightDecay: o.weightDecay ?? 0, adamEps: o.adamEps ?? (o.optim === 'adamw_torch' ? 1e-8 : 1e-6),
    adamBetas: o.adamBetas ?? [0.9, 0.999], lrSchedule: o.lrSchedule ?? 'constant', warmupSteps: o.warmupSteps ?? 0, warmupRatio: o.warmupRatio ?? 0,
    gradAccum: o.gradAccum ?? 1, clipGradNorm: o.clipGradNorm, labelSmoothing: o.labelSmoothing ?? 0, dropout: o.dropout, seed: o.seed ?? 100, shuffle: o.shuffle ?? true,
    groupByLength: o.groupByLength ?? false, evalEvery: o.evalEvery, evalLimit: o.evalLimit ?? 100, validLimit: o.validLimit,
    evalMaxNewTokens: o.evalMaxNewTokens ?? o.maxTargetLength ?? 128, saveTopK: o.saveTopK ?? 2, earlyStoppingPatience: o.earlyStoppingPatience, earlyStoppingThreshold: o.earlyStoppingThreshold ?? 0, saveEvery: o.saveEvery, timeLimit: o.timeLimit,
    logEvery: o.logEvery ?? 1, gradientCheckpointing: o.gradientCheckpointing ?? false, cacheDir: o.cacheDir === undefined ? join(o.out, '.cache') : o.cacheDir, profile: o.profile ?? false,
  };
  const int = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new Error(`${name} must be an integer >= ${min}, got ${v}`);
  };
  int('epochs', r.epochs, 1);
  int('max steps', r.maxSteps, 1);
  int('batch size', r.batchSize, 1);
  int('eval batch size', r.evalBatchSize, 1);
  int('grad accum', r.gradAccum, 1);
  int('eval every', r.evalEvery, 1);
  int('eval limit', r.evalLimit, 0);
  int('valid limit', r.validLimit, 1);
  int('eval max new tokens', r.evalMaxNewTokens, 1);
  int('save top k', r.saveTopK, 0);
  int('early stopping patience', r.earlyStoppingPatience, 1);
  if (!(r.earlyStoppingThreshold >= 0)) throw new Error(`early stopping threshold must be >= 0, got ${r.earlyStoppingThreshold}`);
  int('save every', r.saveEvery, 1);
  int('log every', r.logEvery, 1);
  int('limit', r.limit, 1);
  int('seed', r.seed, 0);
  if (r.timeLimit !== undefined && !(r.timeLimit > 0)) throw new Error(`time limit must be > 0 seconds, got ${r.timeLimit}`);
  if (!(r.validSplit >= 0 && r.validSplit < 1)) throw new Error(`valid split must be in [0, 1), got ${r.validSplit}`);
  if (r.dropout !== undefined && !(r.dropout >= 0 && r.dropout < 1)) throw new Error(`dropout must be in [0, 1), got ${r.dropout}`);
  if (!(r.warmupRatio >= 0 && r.warmupRatio <= 1)) throw new Error(`warmup ratio must lie in range [0, 1], got ${r.warmupRatio}`);
  if (r.lrSchedule === 'constant' && (r.warmupSteps > 0 || r.warmupRatio > 0)) {
    // before any file is written; checkSchedule says the same of a schedule built by hand
    throw new Error("the 'constant' schedule has no warm-up (Hugging Face's get_constant_schedule ignores it): use 'constant_with_warmup' to warm up");
  }
  if (!(r.labelSmoothing >= 0 && r.labelSmoothing < 1)) throw new Error(`label smoothing must be in [0, 1), got ${r.labelSmoothing}`);
  if (r.clipGradNorm !== undefined && !(r.clipGradNorm > 0)) throw new Error(`clip grad norm must be > 0, got ${r.clipGradNorm}`);
  if (!OPTIMIZERS.includes(r.optim)) throw new Error(`optim must be one of ${OPTIMIZERS.join(', ')}, got ${String(r.optim)}`);
  if (!(r.weightDecay >= 0)) throw new Error(`weight decay must be >= 0, got ${r.weightDecay}`);
  if (!(r.adamEps > 0)) throw new Error(`adam eps must be > 0, got ${r.adamEps}`);
  if (!r.adamBetas.every((b) => b >= 0 && b < 1)) throw new Error(`adam betas must be in [0, 1), got ${r.adamBetas.join(',')}`);
  return r;
}

/** `--resume`: the run continues with the options it started with; only how long it runs may change. */
export function resumedOptions(saved: ResolvedTrainOptions, given: TrainOptions): ResolvedTrainOptions {
  // runs saved before 'constant_with_warmup' existed warmed up under the name 'constant'
  const lrSchedule = saved.lrSchedule === 'constant' && saved.warmupSteps > 0 ? 'constant_with_warmup' : saved.lrSchedule;
  return resolveTrainOptions({
    ...saved, lrSchedule, out: given.out,
    ...(given.epochs !== undefined ? { epochs: given.epochs } : {}),
    ...(given.maxSteps !== undefined ? { maxSteps: given.maxSteps } : {}),
    ...(given.timeLimit !== undefined ? { timeLimit: given.timeLimit } : {}),
    profile: given.profile ?? false,
    // a memory setting, not a numeric one: a resumed run may switch it
    gradientCheckpointing: given.gradientCheckpointing ?? saved.gradientCheckpointing,
  });
}
