// Fine-tuning T5 on a question-answering CSV: the Hugging Face + Lightning tutorial's loop in one function.
//
//   for each epoch: for each batch of the epoch's order:
//     loss = model(batch, dropout on).loss / gradAccum;  backward(loss)
//     every gradAccum batches: clip (optional); AdamW step with the schedule's lr; zero the gradients
//     every evalEvery steps and at each epoch end: validation loss, exact match, F1; top-k checkpoints; last/
//
// Everything random is a function of the seed and counters that `last/trainer_state.json` stores: the data order
// of an epoch is seeded by (seed, epoch), the dropout masks of a micro-batch by (seed, micro-batch counter). So a
// run resumed from `last/` draws the same batches and masks as one that never stopped.
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { AdamW } from '../optim/adamw.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { memory, type Tensor } from '../engine/tensor.ts';
import { scale } from '../kernels/elementwise.ts';
import { clipGradNorm } from '../kernels/grad-norm.ts';
import { resolveGenerationConfig, type ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { GENERATION_CONFIG_FILE, readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { SPIECE_FILE } from '../hf/hf-folder.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import {
  checkpointName, findResumeFolder, readOptimizerState, readTrainerState, saveLast, TopKCheckpoints,
  type CheckpointEntry, type ModelFolderFiles, type TrainerState,
} from './checkpoint.ts';
import { describeBadRows, readQaCsv, type QaCsvOptions, type QaRow } from '../tasks/csv-data.ts';
import { preprocessConfig } from '../util/text-clean.ts';
import { DataError } from '../util/data-error.ts';
import { collate, describePadding, epochBatches, paddingStats, tokenizeRowsCached, type Example } from './dataset.ts';
import { evaluate, type EvalResult } from './evaluate.ts';
import { writeLossPlot } from './loss-plot.ts';
import { checkSchedule, lrAt, type LrSchedule, type ScheduleKind } from '../optim/lr-schedule.ts';
import { captureDispatches, describeProfile, replayTimes, type ProfileReport } from './profile.ts';
import { splitRows } from './split.ts';

/** OUT/run-files/: the tokenizer and generation config copied from the starting model, for every saved folder */
export const RUN_FILES_DIR = 'run-files';

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
  /** micro-batches per optimizer step, default 1 */
  gradAccum?: number;
  /** max global gradient norm; default none (Lightning's default) */
  clipGradNorm?: number;
  /** overrides config.dropout_rate during training */
  dropout?: number;
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

export type ResolvedTrainOptions = Required<Omit<TrainOptions, 'valid' | 'limit' | 'maxSteps' | 'clipGradNorm' | 'dropout' | 'evalEvery' | 'validLimit' | 'saveEvery' | 'timeLimit' | 'cacheDir' | 'csv'>> &
  Pick<TrainOptions, 'valid' | 'limit' | 'maxSteps' | 'clipGradNorm' | 'dropout' | 'evalEvery' | 'validLimit' | 'saveEvery' | 'timeLimit'> & { cacheDir: string | null; csv: NonNullable<TrainOptions['csv']> };

export function resolveTrainOptions(o: TrainOptions): ResolvedTrainOptions {
  const r: ResolvedTrainOptions = {
    data: o.data, model: o.model, out: o.out, valid: o.valid, validSplit: o.validSplit ?? 0.2, splitSeed: o.splitSeed ?? 101,
    limit: o.limit, csv: o.csv ?? {}, onBadRow: o.onBadRow ?? 'skip', maxSourceLength: o.maxSourceLength ?? 512,
    maxTargetLength: o.maxTargetLength ?? 128, epochs: o.epochs ?? 5, maxSteps: o.maxSteps, batchSize: o.batchSize ?? 8,
    evalBatchSize: o.evalBatchSize ?? 2, lr: o.lr ?? 1e-4, weightDecay: o.weightDecay ?? 0, adamEps: o.adamEps ?? 1e-6,
    adamBetas: o.adamBetas ?? [0.9, 0.999], lrSchedule: o.lrSchedule ?? 'constant', warmupSteps: o.warmupSteps ?? 0,
    gradAccum: o.gradAccum ?? 1, clipGradNorm: o.clipGradNorm, dropout: o.dropout, seed: o.seed ?? 100, shuffle: o.shuffle ?? true,
    groupByLength: o.groupByLength ?? false, evalEvery: o.evalEvery, evalLimit: o.evalLimit ?? 100, validLimit: o.validLimit,
    evalMaxNewTokens: o.evalMaxNewTokens ?? o.maxTargetLength ?? 128, saveTopK: o.saveTopK ?? 2, saveEvery: o.saveEvery, timeLimit: o.timeLimit,
    logEvery: o.logEvery ?? 1, cacheDir: o.cacheDir === undefined ? join(o.out, '.cache') : o.cacheDir, profile: o.profile ?? false,
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
  int('save every', r.saveEvery, 1);
  int('log every', r.logEvery, 1);
  int('limit', r.limit, 1);
  int('seed', r.seed, 0);
  if (r.timeLimit !== undefined && !(r.timeLimit > 0)) throw new Error(`time limit must be > 0 seconds, got ${r.timeLimit}`);
  if (!(r.validSplit >= 0 && r.validSplit < 1)) throw new Error(`valid split must be in [0, 1), got ${r.validSplit}`);
  if (r.dropout !== undefined && !(r.dropout >= 0 && r.dropout < 1)) throw new Error(`dropout must be in [0, 1), got ${r.dropout}`);
  if (r.clipGradNorm !== undefined && !(r.clipGradNorm > 0)) throw new Error(`clip grad norm must be > 0, got ${r.clipGradNorm}`);
  if (!(r.weightDecay >= 0)) throw new Error(`weight decay must be >= 0, got ${r.weightDecay}`);
  if (!(r.adamEps > 0)) throw new Error(`adam eps must be > 0, got ${r.adamEps}`);
  if (!r.adamBetas.every((b) => b >= 0 && b < 1)) throw new Error(`adam betas must be in [0, 1), got ${r.adamBetas.join(',')}`);
  return r;
}

/** What the loop tells its caller (the CLI draws a progress bar from it). */
export interface StepInfo {
  step: number;
  epoch: number;
  epochs: number;
  /** optimizer steps in this epoch, done and total */
  epochStep: number;
  epochSteps: number;
  totalSteps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  secondsPerStep: number;
  /** seconds left for the whole run (training steps only) */
  eta: number;
}

export interface TrainHooks {
  /** one line of the run's log (data report, evaluations, checkpoints) */
  log?: (line: string) => void;
  step?: (info: StepInfo) => void;
  /** evaluation progress */
  evalProgress?: (phase: 'loss' | 'generate', done: number, total: number) => void;
  /** checked between steps: when true, last/ is saved and train() returns with `interrupted` */
  shouldStop?: () => boolean;
}

export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
  constructor(readonly step: number, readonly loss: number, readonly lastGood: string | null) {
    super(
      `training stopped at step ${step}: the loss is ${loss} (diverged; try a smaller --lr or --clip-grad-norm 1.0); ` +
        (lastGood ? `the last good checkpoint is ${lastGood}` : 'no checkpoint was saved before it'),
    );
  }
}

export interface TrainResult {
  out: string;
  steps: number;
  epochsDone: number;
  interrupted: boolean;
  lastDir: string;
  best: CheckpointEntry | null;
  bestDir: string | null;
  lastEval: EvalResult | null;
  metricsFile: string;
  plotFile: string;
  trainExamples: number;
  validExamples: number;
  tokensPerSecond: number;
  secondsPerStep: number;
  peakBytes: number;
  profile?: ProfileReport;
}

export interface PreparedData {
  train: Example[];
  valid: Example[];
}

async function readRows(file: string, o: ResolvedTrainOptions, limit: number | undefined, log: (s: string) => void): Promise<QaRow[]> {
  const { rows, report } = await readQaCsv(file, { ...o.csv, onBadRow: o.onBadRow, limit });
  if (report.badRowCount > 0) log(describeBadRows(report));
  if (rows.length === 0) throw new DataError(`${file}: no usable rows`, file);
  return rows;
}

/** Reads, cleans, splits and tokenizes the data as the options say. */
export async function prepareData(o: ResolvedTrainOptions, tokenizer: T5Tokenizer, log: (s: string) => void): Promise<PreparedData> {
  const rows = await readRows(o.data, o, o.limit, log);
  let trainRows: QaRow[];
  let validRows: QaRow[];
  if (o.valid) {
    trainRows = rows;
    validRows = await readRows(o.valid, o, undefined, log);
  } else {
    ({ train: trainRows, valid: validRows } = splitRows(rows, { validFraction: o.validSplit, seed: o.splitSeed }));
  }
  if (o.validLimit !== undefined) validRows = validRows.slice(0, o.validLimit);
  const tokOpts = { maxSourceLength: o.maxSourceLength, maxTargetLength: o.maxTargetLength, onBadRow: o.onBadRow };
  const t = await tokenizeRowsCached(trainRows, tokenizer, tokOpts, o.cacheDir, o.data);
  const v = await tokenizeRowsCached(validRows, tokenizer, tokOpts, o.cacheDir, o.valid ?? o.data);
  for (const [rep, file] of [[t, o.data], [v, o.valid ?? o.data]] as const) {
    if (rep.badRows.length > 0) {
      log(`${file}: skipped ${rep.badRows.length} rows too long for --max-source-length ${o.maxSourceLength}: ` +
        rep.badRows.slice(0, 5).map((b) => `line ${b.line}`).join(', ') + (rep.badRows.length > 5 ? ', …' : ''));
    }
  }
  if (t.examples.length === 0) throw new DataError(`${o.data}: no usable training rows`, o.data);
  log(`data: ${t.examples.length} training, ${v.examples.length} validation examples` +
    (o.valid ? ` (from ${o.valid})` : o.validSplit > 0 ? ` (split ${1 - o.validSplit}/${o.validSplit}, seed ${o.splitSeed})` : '') +
    `; ${t.truncatedSources + v.truncatedSources} contexts cut to ${o.maxSourceLength} tokens, ${t.truncatedTargets + v.truncatedTargets} answers cut to ${o.maxTargetLength}` +
    (t.cached ? '; tokenized data from cache' : ''));
  return { train: t.examples, valid: v.examples };
}

/** The dropout seed of micro-batch `micro`: distinct Philox streams per micro-batch, fixed by the run's seed. */
export function dropoutSeedFor(seed: number, micro: number): number {
  let h = Math.imul(seed ^ 0x3c6ef372, 0x9e3779b1) ^ Math.imul(micro + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}

async function generationFor(modelDir: string, maxNewTokens: number, numBeams = 1): Promise<ResolvedGenerationConfig> {
  const { config, file } = await readGenerationConfigFile(modelDir);
  return resolveGenerationConfig(config, { max_new_tokens: maxNewTokens, num_beams: numBeams, max_length: undefined }, file);
}

/** Trains as the options say; `--resume`: pass `resume: true` with the same `out`. */
export async function train(options: TrainOptions & { resume?: boolean }, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.log ?? (() => {});
  let o: ResolvedTrainOptions;
  let resumeDir: string | null = null;
  let state: TrainerState | null = null;
  if (options.resume) {
    resumeDir = findResumeFolder(options.out);
    if (!resumeDir) throw new Error(`--resume ${options.out}: no last/ checkpoint there to resume from`);
    state = await readTrainerState(resumeDir);
    // the run continues with the options it started with; only how long it runs may change
    const saved = state.options as unknown as ResolvedTrainOptions;
    o = resolveTrainOptions({
      ...saved, out: options.out,
      ...(options.epochs !== undefined ? { epochs: options.epochs } : {}),
      ...(options.maxSteps !== undefined ? { maxSteps: options.maxSteps } : {}),
      ...(options.timeLimit !== undefined ? { timeLimit: options.timeLimit } : {}),
      profile: options.profile ?? false,
    });
    log(`resuming from ${resumeDir} at step ${state.step} (epoch ${state.epoch + 1}, batch ${state.batchInEpoch})`);
  } else {
    o = resolveTrainOptions(options);
    if (findResumeFolder(o.out)) throw new Error(`--out ${o.out} already holds a training run (last/); pass --resume ${o.out} to continue it, or choose another folder`);
  }
  await mkdir(o.out, { recursive: true });

  const loaded = await loadModelForCli(resumeDir ?? o.model, { requiresGrad: true });
  const { model, tokenizer } = loaded;
  const modelDir = loaded.dir;
  let opt: AdamW | null = null;
  try {
    const data = await prepareData(o, tokenizer, log);
    // the tokenizer and generation config every saved folder gets, copied once beside the run: the source folder
    // (last/ or last.old/ when resuming) is replaced while the run goes on
    const runDir = join(o.out, RUN_FILES_DIR);
    await mkdir(runDir, { recursive: true });
    const files: ModelFolderFiles = { spieceModel: join(runDir, SPIECE_FILE), preprocess: preprocessConfig(o.csv) };
    if (resolve(files.spieceModel) !== resolve(join(modelDir, SPIECE_FILE))) {
      await writeFileAtomic(files.spieceModel, await readFile(join(modelDir, SPIECE_FILE)));
    }
    if (existsSync(join(modelDir, GENERATION_CONFIG_FILE))) {
      files.generationConfigFile = join(runDir, GENERATION_CONFIG_FILE);
      if (resolve(files.generationConfigFile) !== resolve(join(modelDir, GENERATION_CONFIG_FILE))) {
        await writeFileAtomic(files.generationConfigFile, await readFile(join(modelDir, GENERATION_CONFIG_FILE)));
      }
    }
    const params = model.parameters().map(([, p]) => p);
    opt = new AdamW(params, { lr: o.lr, betas: o.adamBetas, eps: o.adamEps, weightDecay: o.weightDecay, variant: 'hf' });
    const gen = await generationFor(modelDir, o.evalMaxNewTokens);
    const orderOpts = { batchSize: o.batchSize, shuffle: o.shuffle, seed: o.seed, groupByLength: o.groupByLength };
    const lengths = data.train.map((e) => e.source.length);
    const batchesPerEpoch = Math.ceil(data.train.length / o.batchSize);
    const stepsPerEpoch = Math.ceil(batchesPerEpoch / o.gradAccum);
    const totalSteps = o.maxSteps ?? stepsPerEpoch * o.epochs;
    const epochs = o.maxSteps !== undefined ? Math.ceil(o.maxSteps / stepsPerEpoch) : o.epochs;
    const schedule: LrSchedule = { kind: o.lrSchedule, lr: o.lr, warmupSteps: o.warmupSteps, totalSteps };
    checkSchedule(schedule);
    log(describePadding(paddingStats(data.train, epochBatches(lengths, 0, orderOpts), o.maxSourceLength, o.maxTargetLength)));
    log(`training: ${model.parameters().reduce((n, [, p]) => n + p.size, 0).toLocaleString('en-US')} parameters, ` +
      `${totalSteps} steps (${stepsPerEpoch} per epoch, batch ${o.batchSize}${o.gradAccum > 1 ? ` x ${o.gradAccum} accumulated` : ''}), ` +
      `AdamW lr ${o.lr} (${o.lrSchedule}${o.warmupSteps ? `, warmup ${o.warmupSteps}` : ''}), seed ${o.seed}`);

    const top = new TopKCheckpoints(o.out, o.saveTopK, state?.best ?? []);
    const metricsFile = join(o.out, 'metrics.jsonl');
    const plotFile = join(o.out, 'loss.svg');
    let step = 0;
    let epoch = 0;
    let batchInEpoch = 0;
    let micro = 0;
    let tokensSeen = 0;
    let trainSeconds = 0;
    if (state && resumeDir) {
      opt.loadState(await readOptimizerState(resumeDir, model, state));
      ({ step, epoch, batchInEpoch, microSteps: micro, tokensSeen, trainSeconds } = state);
      await top.sweep();
      await trimMetrics(metricsFile, step);
    } else {
      await rm(metricsFile, { force: true });
      await top.sweep();
    }
    const writeMetric = (line: Record<string, unknown>) => appendFile(metricsFile, `${JSON.stringify(line)}\n`);

    const saveState = async (): Promise<string> => saveLast(o.out, model, opt!, files, {
      version: 1, step, epoch, batchInEpoch, microSteps: micro, seed: o.seed, lr: lrAt(schedule, step), best: top.kept,
      tokensSeen, trainSeconds, options: { ...o, profile: false } as unknown as Record<string, unknown>,
    });
    let lastDir: string | null = resumeDir ? join(o.out, 'last') : null;
    let lastEval: EvalResult | null = null;
    let lastEvalStep = -1;

    /** `epochLabel`: 1-based epoch the evaluation belongs to (the one just finished at an epoch end). */
    const runEval = async (epochLabel: number): Promise<void> => {
      lastEvalStep = step;
      if (data.valid.length === 0) {
        lastDir = await saveState();
        return;
      }
      const t0 = performance.now();
      const r = await evaluate(model, tokenizer, data.valid, {
        batchSize: o.evalBatchSize, limit: o.evalLimit, generation: gen, onProgress: hooks.evalProgress,
      });
      lastEval = r;
      await writeMetric({ type: 'eval', step, epoch: epochLabel, loss: r.loss, exactMatch: r.exactMatch, f1: r.f1, examples: r.examples, generated: r.generated, seconds: Number(((performance.now() - t0) / 1000).toFixed(3)) });
      const entry: CheckpointEntry = { name: checkpointName(epochLabel, step), step, epoch: epochLabel, valLoss: r.loss };
      const saved = Number.isFinite(r.loss) ? await top.offer(model, files, entry) : null;
      log(`eval at step ${step}: val_loss ${r.loss.toFixed(4)}, exact match ${r.exactMatch.toFixed(1)}%, F1 ${r.f1.toFixed(1)}% ` +
        `(${r.examples} examples, ${r.generated} answered, ${((performance.now() - t0) / 1000).toFixed(1)} s)` +
        (saved ? `; saved ${saved}` : o.saveTopK > 0 ? `; not in the best ${o.saveTopK}` : ''));
      lastDir = await saveState();
    };

    let interrupted = false;
    let windowTokens = 0;
    let windowSeconds = 0;
    let profile: ProfileReport | undefined;
    const runStartSteps = step;
    const runStart = performance.now();
    let replaySeconds = 0;
    let order: number[][] = [];
    let orderEpoch = -1;
    while (step < totalSteps && epoch < epochs) {
      if (orderEpoch !== epoch) {
        order = epochBatches(lengths, epoch, orderOpts);
        orderEpoch = epoch;
      }
      if (batchInEpoch >= order.length) {
        epoch++;
        batchInEpoch = 0;
        continue;
      }
      if (hooks.shouldStop?.()) {
        interrupted = true;
        break;
      }
      if (o.timeLimit !== undefined && (performance.now() - runStart) / 1000 >= o.timeLimit) {
        log(`time limit of ${o.timeLimit} s reached after ${step} steps`);
        break;
      }
      const epochSteps = Math.ceil(order.length / o.gradAccum);
      const t0 = performance.now();
      const capture = o.profile && step === runStartSteps + 1 ? captureDispatches() : null;
      const nMicro = Math.min(o.gradAccum, order.length - batchInEpoch);
      let lossSum = 0;
      let tokens = 0;
      const batches = order.slice(batchInEpoch, batchInEpoch + nMicro).map((idx) => collate(idx.map((i) => data.train[i]!), tokenizer.padTokenId));
      const totalLabels = batches.reduce((n, b) => n + b.labelTokens, 0);
      for (const b of batches) {
        const seed = dropoutSeedFor(o.seed, micro);
        const loss = tidy(() => model.forward(b, { training: true, dropoutRate: o.dropout, dropoutSeed: seed }).loss!);
        // micro-batch means weighted by their label tokens give the mean over all label tokens of the step
        const scaled: Tensor = nMicro === 1 ? loss : tidy(() => scale(loss, b.labelTokens / totalLabels));
        backward(scaled);
        if (scaled !== loss) scaled.dispose();
        const v = await loss.item();
        loss.dispose();
        lossSum += v * b.labelTokens;
        tokens += b.tokens;
        micro++;
        if (!Number.isFinite(v)) {
          // nothing is stepped or saved: the checkpoints on disk are the last good ones
          capture?.stop();
          opt.zeroGrad();
          await writeMetric({ type: 'train', step: step + 1, epoch: epoch + 1, loss: String(v), diverged: true });
          throw new TrainingDivergedError(step + 1, v, lastDir);
        }
      }
      if (o.clipGradNorm !== undefined) noGrad(() => clipGradNorm(params, o.clipGradNorm!).dispose());
      const lr = lrAt(schedule, step);
      opt.step(lr);
      opt.zeroGrad();
      step++;
      batchInEpoch += nMicro;
      const loss = lossSum / totalLabels;
      const seconds = (performance.now() - t0) / 1000;
      if (capture) {
        // the replay is not training time: keep it out of tokens/s and s/step
        const r0 = performance.now();
        profile = await replayTimes(capture.stop(), seconds * 1000);
        log(describeProfile(profile));
        replaySeconds += (performance.now() - r0) / 1000;
      }
      trainSeconds += seconds;
      tokensSeen += tokens;
      windowTokens += tokens;
      windowSeconds += seconds;
      const secondsPerStep = ((performance.now() - runStart) / 1000 - replaySeconds) / Math.max(1, step - runStartSteps);
      if (step % o.logEvery === 0 || step === totalSteps) {
        await writeMetric({ type: 'train', step, epoch: epoch + 1, loss, lr, tokens, seconds: Number(seconds.toFixed(4)) });
      }
      hooks.step?.({
        step, epoch: epoch + 1, epochs, epochStep: Math.ceil(batchInEpoch / o.gradAccum), epochSteps, totalSteps, loss, lr,
        tokensPerSecond: windowTokens / Math.max(1e-9, windowSeconds), secondsPerStep,
        eta: Math.min(secondsPerStep * (totalSteps - step), o.timeLimit !== undefined ? Math.max(0, o.timeLimit - (performance.now() - runStart) / 1000) : Infinity),
      });
      if (windowSeconds > 30) {
        windowTokens = 0;
        windowSeconds = 0;
      }
      const epochEnd = batchInEpoch >= order.length;
      const finishedEpoch = epoch + 1;
      if (epochEnd) {
        // the stored position is the start of the next epoch
        epoch++;
        batchInEpoch = 0;
      }
      if (epochEnd || (o.evalEvery !== undefined && step % o.evalEvery === 0)) {
        await runEval(epochEnd ? finishedEpoch : epoch + 1);
      } else if (o.saveEvery !== undefined && step % o.saveEvery === 0) {
        lastDir = await saveState();
      }
    }
    if (!interrupted && lastEvalStep !== step) await runEval(batchInEpoch === 0 ? epoch : epoch + 1);
    else if (interrupted) lastDir = await saveState();
    await writeLossPlot(metricsFile, plotFile, `t5-webgpu: ${o.data}`);
    const wall = trainSeconds - (state?.trainSeconds ?? 0);
    return {
      out: o.out, steps: step, epochsDone: Math.min(epoch, epochs), interrupted, lastDir: lastDir ?? join(o.out, 'last'),
      best: top.best, bestDir: top.best ? top.dirOf(top.best) : null, lastEval, metricsFile, plotFile,
      trainExamples: data.train.length, validExamples: data.valid.length,
      tokensPerSecond: tokensSeen / Math.max(1e-9, trainSeconds), secondsPerStep: wall / Math.max(1, step - runStartSteps),
      peakBytes: memory().peakBytes, profile,
    };
  } finally {
    opt?.dispose();
    model.dispose();
  }
}

/** Drops metrics lines after `step` (written after the checkpoint a resumed run starts from). */
async function trimMetrics(file: string, step: number): Promise<void> {
  if (!existsSync(file)) return;
  const text = await readFile(file, 'utf8');
  const keep: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      if ((JSON.parse(line) as { step: number }).step <= step) keep.push(line);
    } catch {
      // a torn last line
    }
  }
  await truncate(file, 0);
  if (keep.length) await appendFile(file, `${keep.join('\n')}\n`);
}
