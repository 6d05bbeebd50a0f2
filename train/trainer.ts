// Fine-tuning T5 on a question-answering CSV: the Hugging Face + Lightning tutorial's loop, laid out as nanoGPT's
// train.py (one flat loop; the step, evaluation, checkpoints and logging are the helpers below it):
//
//   for each epoch: for each gradAccum batches of the epoch's order:
//     trainStep: forward with dropout, backward, accumulate; clip (optional); AdamW step with the schedule's lr
//     log the step (metrics.jsonl, the caller's step hook)
//     every evalEvery steps and at each epoch end: validation loss, exact match, F1; top-k checkpoints; last/
//
// Everything random is a function of the seed and counters that `last/trainer_state.json` stores: the data order
// of an epoch is seeded by (seed, epoch), the dropout masks of a micro-batch by (seed, micro-batch counter). So a
// run resumed from `last/` draws the same batches and masks as one that never stopped.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { emptyCache, memory } from '../engine/tensor.ts';
import type { AdamW } from '../optim/adamw.ts';
import { Adafactor } from '../optim/adafactor.ts';
import { createOptimizer } from './optimizer-setup.ts';
import { checkSchedule, lrAt, type LrSchedule } from '../optim/lr-schedule.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { resolveGenerationConfig, type ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { GENERATION_CONFIG_FILE, readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { SPIECE_FILE } from '../hf/hf-folder.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import { checkReadable } from '../tasks/csv-data.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { preprocessConfig } from '../util/text-clean.ts';
import {
  checkpointName, findResumeFolder, readAdafactorState, readOptimizerState, readTrainerState, saveLast, TopKCheckpoints,
  type CheckpointEntry, type ModelFolderFiles, type TrainerState,
} from './checkpoint.ts';
import { collate, describePadding, epochBatches, paddingStats, type OrderOptions } from './dataset.ts';
import { describeAnswerScores, evaluate, type EvalResult } from './evaluate.ts';
import { hfTrainerState } from './hf-trainer-state.ts';
import { parseMetrics, writeLossPlot } from './loss-plot.ts';
import { appendMetric, trimMetrics } from './metrics-file.ts';
import { prepareData, type PreparedData } from './prepare-data.ts';
import { captureDispatches, describeProfile, replayTimes, type DispatchCapture, type ProfileReport } from './profile.ts';
import { Throughput } from './throughput.ts';
import { resolveTrainOptions, resumedOptions, type ResolvedTrainOptions, type TrainOptions } from './train-options.ts';
import { trainStep } from './train-step.ts';

export type { TrainOptions } from './train-options.ts';

/** OUT/run-files/: the tokenizer and generation config copied from the starting model, for every saved folder */
export const RUN_FILES_DIR = 'run-files';

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
  /** the validation loss stopped improving (earlyStoppingPatience) */
  stoppedEarly: boolean;
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

/** How the run is cut into epochs and optimizer steps, and the learning rate of each step. */
interface RunPlan {
  orderOptions: OrderOptions;
  /** source lengths of the training examples (for --group-by-length) */
  lengths: number[];
  stepsPerEpoch: number;
  totalSteps: number;
  epochs: number;
  schedule: LrSchedule;
}

/** What the helpers of a run share; fixed once the loop starts. */
interface Run {
  o: ResolvedTrainOptions;
  model: T5ForConditionalGeneration;
  tokenizer: T5Tokenizer;
  opt: AdamW | Adafactor;
  data: PreparedData;
  files: ModelFolderFiles;
  generation: ResolvedGenerationConfig;
  plan: RunPlan;
  top: TopKCheckpoints;
  metricsFile: string;
  hooks: TrainHooks;
  log: (line: string) => void;
}

/** The counters `last/trainer_state.json` stores: where the run is and what it has done. */
type Position = Pick<TrainerState, 'step' | 'epoch' | 'batchInEpoch' | 'microSteps' | 'tokensSeen' | 'trainSeconds'> &
  { earlyStopping: NonNullable<TrainerState['earlyStopping']> };

/** What the loop leaves for the result besides the position. */
interface Outcome {
  interrupted: boolean;
  /** the validation loss stopped improving (--early-stopping-patience) */
  stoppedEarly: boolean;
  /** the last/ folder saved (or resumed from), the last good checkpoint if the loss diverges */
  lastDir: string | null;
  lastEval: EvalResult | null;
  lastEvalStep: number;
  profile?: ProfileReport;
}

/** Trains as the options say; `--resume`: pass `resume: true` with the same `out`. */
export async function train(options: TrainOptions & { resume?: boolean }, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.log ?? (() => {});
  const { o, resume } = await openRun(options, log);
  // before the model, which may be a download from the Hub: a mistyped CSV path should not wait for it
  for (const file of [o.data, o.valid]) if (file) await checkReadable(file);
  await mkdir(o.out, { recursive: true });
  const { model, tokenizer, dir: modelDir } = await loadModelForCli(resume?.dir ?? o.model, { requiresGrad: true });
  let opt: AdamW | Adafactor | null = null;
  try {
    const data = await prepareData(o, tokenizer, log);
    const files = await copyRunFiles(o, modelDir);
    opt = createOptimizer(model, o);
    const generation = await generationFor(modelDir, o.evalMaxNewTokens);
    const plan = planRun(o, data);
    const top = new TopKCheckpoints(o.out, o.saveTopK, resume?.state.best ?? []);
    const run: Run = { o, model, tokenizer, opt, data, files, generation, plan, top, metricsFile: join(o.out, 'metrics.jsonl'), hooks, log };
    logPlan(run);
    const pos = await startPosition(run, resume);
    return await trainLoop(run, pos, resume ? join(o.out, 'last') : null);
  } finally {
    opt?.dispose();
    model.dispose();
    // as Lightning's CUDA teardown empties PyTorch's cache after fit: otherwise the pool would keep the training
    // steps' buffers (t5-small at batch 8: 1.7 GB at source 256, 3.9 GB on the tutorial's batches) for whatever
    // the process does next
    emptyCache();
  }
}

/** The loop: steps until the plan, --max-steps, --time-limit or the caller's shouldStop ends it; then the final
 * evaluation (or, when stopped, last/) and the loss plot. */
async function trainLoop(run: Run, pos: Position, resumedDir: string | null): Promise<TrainResult> {
  const { o, plan, hooks, log } = run;
  const startTrainSeconds = pos.trainSeconds;
  const meter = new Throughput(pos.step, o.timeLimit);
  const done: Outcome = { interrupted: false, stoppedEarly: false, lastDir: resumedDir, lastEval: null, lastEvalStep: -1 };
  let order: number[][] = [];
  let orderEpoch = -1;
  while (pos.step < plan.totalSteps && pos.epoch < plan.epochs && !done.stoppedEarly) {
    if (orderEpoch !== pos.epoch) {
      order = epochBatches(plan.lengths, pos.epoch, plan.orderOptions);
      orderEpoch = pos.epoch;
    }
    if (pos.batchInEpoch >= order.length) {
      pos.epoch++;
      pos.batchInEpoch = 0;
      continue;
    }
    if (hooks.shouldStop?.()) {
      done.interrupted = true;
      break;
    }
    if (meter.timeUp()) {
      log(`time limit of ${o.timeLimit} s reached after ${pos.step} steps`);
      break;
    }
    const t0 = performance.now();
    const capture = o.profile && pos.step === meter.startStep + 1 ? captureDispatches() : null;
    const batches = order.slice(pos.batchInEpoch, pos.batchInEpoch + o.gradAccum)
      .map((idx) => collate(idx.map((i) => run.data.train[i]!), run.tokenizer.padTokenId));
    const lr = lrAt(plan.schedule, pos.step);
    const r = await trainStep(run.model, run.opt, batches, { seed: o.seed, firstMicro: pos.microSteps, dropout: o.dropout, gradientCheckpointing: o.gradientCheckpointing, clipGradNorm: o.clipGradNorm, labelSmoothing: o.labelSmoothing, lr });
    if (!r.finite) {
      // nothing was stepped or saved: the checkpoints on disk are the last good ones
      capture?.stop();
      await appendMetric(run.metricsFile, { type: 'train', step: pos.step + 1, epoch: pos.epoch + 1, loss: String(r.loss), diverged: true });
      throw new TrainingDivergedError(pos.step + 1, r.loss, done.lastDir);
    }
    pos.step++;
    pos.batchInEpoch += batches.length;
    pos.microSteps += batches.length;
    const seconds = (performance.now() - t0) / 1000;
    if (capture) done.profile = await profileStep(capture, seconds, meter, log);
    pos.trainSeconds += seconds;
    pos.tokensSeen += r.tokens;
    await logStep(run, pos, meter, { loss: r.loss, lr, tokens: r.tokens, seconds, epochSteps: Math.ceil(order.length / o.gradAccum) });
    const epochEnd = pos.batchInEpoch >= order.length;
    const finishedEpoch = pos.epoch + 1;
    if (epochEnd) {
      // the stored position is the start of the next epoch
      pos.epoch++;
      pos.batchInEpoch = 0;
    }
    if (epochEnd || (o.evalEvery !== undefined && pos.step % o.evalEvery === 0)) {
      await evaluateAndSave(run, pos, done, epochEnd ? finishedEpoch : pos.epoch + 1);
    } else if (o.saveEvery !== undefined && pos.step % o.saveEvery === 0) {
      done.lastDir = await saveLastCheckpoint(run, pos);
    }
  }
  if (!done.interrupted && done.lastEvalStep !== pos.step) await evaluateAndSave(run, pos, done, pos.batchInEpoch === 0 ? pos.epoch : pos.epoch + 1);
  else if (done.interrupted) done.lastDir = await saveLastCheckpoint(run, pos);
  await writeLossPlot(run.metricsFile, join(o.out, 'loss.svg'), `t5-webgpu: ${o.data}`);
  return summarize(run, pos, done, meter, startTrainSeconds);
}

/** The resolved options and, with `resume`, the folder and state the run continues from. */
async function openRun(
  options: TrainOptions & { resume?: boolean }, log: (line: string) => void,
): Promise<{ o: ResolvedTrainOptions; resume: { dir: string; state: TrainerState } | null }> {
  if (!options.resume) {
    const o = resolveTrainOptions(options);
    if (findResumeFolder(o.out)) throw new Error(`--out ${o.out} already holds a training run (last/); pass --resume ${o.out} to continue it, or choose another folder`);
    return { o, resume: null };
  }
  const dir = findResumeFolder(options.out);
  if (!dir) throw new Error(`--resume ${options.out}: no last/ checkpoint there to resume from`);
  const state = await readTrainerState(dir);
  const o = resumedOptions(state.options as unknown as ResolvedTrainOptions, options);
  log(`resuming from ${dir} at step ${state.step} (epoch ${state.epoch + 1}, batch ${state.batchInEpoch})`);
  return { o, resume: { dir, state } };
}

/** The tokenizer and generation config every saved folder gets, copied once into OUT/run-files/: the source
 * folder (last/ or last.old/ when resuming) is replaced while the run goes on. */
async function copyRunFiles(o: ResolvedTrainOptions, modelDir: string): Promise<ModelFolderFiles> {
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
  return files;
}

async function generationFor(modelDir: string, maxNewTokens: number, numBeams = 1): Promise<ResolvedGenerationConfig> {
  const { config, file } = await readGenerationConfigFile(modelDir);
  // the run's exact match and F1 come from a search, never from samples (see evaluateFile)
  return resolveGenerationConfig(config, { max_new_tokens: maxNewTokens, num_beams: numBeams, max_length: undefined, do_sample: false }, file);
}

function planRun(o: ResolvedTrainOptions, data: PreparedData): RunPlan {
  const orderOptions: OrderOptions = { batchSize: o.batchSize, shuffle: o.shuffle, seed: o.seed, groupByLength: o.groupByLength };
  const lengths = data.train.map((e) => e.source.length);
  const batchesPerEpoch = Math.ceil(data.train.length / o.batchSize);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / o.gradAccum);
  const totalSteps = o.maxSteps ?? stepsPerEpoch * o.epochs;
  const epochs = o.maxSteps !== undefined ? Math.ceil(o.maxSteps / stepsPerEpoch) : o.epochs;
  // HF's TrainingArguments.get_warmup_steps: warmup_steps when set, else ceil(total x warmup_ratio)
  const warmupSteps = o.warmupSteps > 0 ? o.warmupSteps : Math.ceil(totalSteps * o.warmupRatio);
  const schedule: LrSchedule = { kind: o.lrSchedule, lr: o.lr, warmupSteps, totalSteps };
  checkSchedule(schedule);
  return { orderOptions, lengths, stepsPerEpoch, totalSteps, epochs, schedule };
}

function logPlan({ o, model, data, plan, log }: Run): void {
  log(describePadding(paddingStats(data.train, epochBatches(plan.lengths, 0, plan.orderOptions), o.maxSourceLength, o.maxTargetLength)));
  log(`training: ${model.parameters().reduce((n, [, p]) => n + p.size, 0).toLocaleString('en-US')} parameters, ` +
    `${plan.totalSteps} steps (${plan.stepsPerEpoch} per epoch, batch ${o.batchSize}${o.gradAccum > 1 ? ` x ${o.gradAccum} accumulated` : ''}), ` +
    `${o.optim === 'adafactor' ? 'Adafactor' : o.optim === 'adamw_torch' ? 'AdamW (torch)' : 'AdamW'} lr ${o.lr} (${o.lrSchedule}${plan.schedule.warmupSteps ? `, warmup ${plan.schedule.warmupSteps}` : ''}), seed ${o.seed}`);
}

/** The counters to start from: zeros, or the resumed checkpoint's (its moments loaded, the metrics lines written
 * after it dropped); checkpoints/ is swept of folders its index does not name. */
async function startPosition(run: Run, resume: { dir: string; state: TrainerState } | null): Promise<Position> {
  if (!resume) {
    await rm(run.metricsFile, { force: true });
    await run.top.sweep();
    return { step: 0, epoch: 0, batchInEpoch: 0, microSteps: 0, tokensSeen: 0, trainSeconds: 0, earlyStopping: { bestValLoss: null, evalsWithoutImprovement: 0 } };
  }
  const { state } = resume;
  if (run.opt instanceof Adafactor) run.opt.loadState(await readAdafactorState(resume.dir, run.model, state));
  else run.opt.loadState(await readOptimizerState(resume.dir, run.model, state));
  await run.top.sweep();
  await trimMetrics(run.metricsFile, state.step);
  return {
    step: state.step, epoch: state.epoch, batchInEpoch: state.batchInEpoch, microSteps: state.microSteps, tokensSeen: state.tokensSeen,
    trainSeconds: state.trainSeconds, earlyStopping: state.earlyStopping ?? { bestValLoss: null, evalsWithoutImprovement: 0 },
  };
}

/** --profile: times the captured step's kernels. The replay is not training time: it stays out of tokens/s and
 * s/step. */
async function profileStep(capture: DispatchCapture, stepSeconds: number, meter: Throughput, log: (line: string) => void): Promise<ProfileReport> {
  const r0 = performance.now();
  const profile = await replayTimes(capture.stop(), stepSeconds * 1000);
  log(describeProfile(profile));
  meter.addReplay((performance.now() - r0) / 1000);
  return profile;
}

/** A step's train line in metrics.jsonl (every logEvery steps and the last) and the caller's step hook. */
async function logStep(
  { o, plan, metricsFile, hooks }: Run, pos: Position, meter: Throughput,
  s: { loss: number; lr: number; tokens: number; seconds: number; epochSteps: number },
): Promise<void> {
  meter.addStep(s.tokens, s.seconds);
  const secondsPerStep = meter.secondsPerStep(pos.step);
  if (pos.step % o.logEvery === 0 || pos.step === plan.totalSteps) {
    await appendMetric(metricsFile, { type: 'train', step: pos.step, epoch: pos.epoch + 1, loss: s.loss, lr: s.lr, tokens: s.tokens, seconds: Number(s.seconds.toFixed(4)) });
  }
  hooks.step?.({
    step: pos.step, epoch: pos.epoch + 1, epochs: plan.epochs, epochStep: Math.ceil(pos.batchInEpoch / o.gradAccum), epochSteps: s.epochSteps,
    totalSteps: plan.totalSteps, loss: s.loss, lr: s.lr, tokensPerSecond: meter.tokensPerSecond(), secondsPerStep,
    eta: meter.eta(secondsPerStep, plan.totalSteps - pos.step),
  });
  meter.rollWindow();
}

/** An evaluation (when there is validation data) and last/. `epochLabel`: the 1-based epoch the evaluation
 * belongs to (the one just finished at an epoch end). */
async function evaluateAndSave(run: Run, pos: Position, done: Outcome, epochLabel: number): Promise<void> {
  done.lastEvalStep = pos.step;
  if (run.data.valid.length > 0) {
    done.lastEval = await validate(run, pos.step, epochLabel);
    done.stoppedEarly = checkEarlyStopping(run, pos.earlyStopping, done.lastEval.loss);
  }
  done.lastDir = await saveLastCheckpoint(run, pos);
}

/**
 * HF's EarlyStoppingCallback on one evaluation: the count of evaluations without improvement restarts when the loss
 * beats the best so far by more than the threshold (or is the first), and training stops once it reaches the
 * patience. As HF's Trainer, the best loss follows every improvement, however small. True: stop now.
 */
function checkEarlyStopping({ o, log }: Run, s: Position['earlyStopping'], loss: number): boolean {
  const improved = s.bestValLoss === null || (loss < s.bestValLoss && Math.abs(loss - s.bestValLoss) > o.earlyStoppingThreshold);
  s.evalsWithoutImprovement = improved ? 0 : s.evalsWithoutImprovement + 1;
  if (s.bestValLoss === null || loss < s.bestValLoss) s.bestValLoss = loss;
  if (o.earlyStoppingPatience === undefined || s.evalsWithoutImprovement < o.earlyStoppingPatience) return false;
  log(`early stopping: val_loss has not improved${o.earlyStoppingThreshold > 0 ? ` by more than ${o.earlyStoppingThreshold}` : ''} ` +
    `for ${s.evalsWithoutImprovement} evaluation${s.evalsWithoutImprovement === 1 ? '' : 's'} (best ${s.bestValLoss.toFixed(4)})`);
  return true;
}

/** Validation loss, exact match and F1: their eval line in metrics.jsonl, a top-k checkpoint when the loss ranks. */
async function validate({ o, model, tokenizer, data, files, generation, top, metricsFile, hooks, log }: Run, step: number, epochLabel: number): Promise<EvalResult> {
  const t0 = performance.now();
  const r = await evaluate(model, tokenizer, data.valid, {
    batchSize: o.evalBatchSize, limit: o.evalLimit, generation, labelSmoothing: o.labelSmoothing, onProgress: hooks.evalProgress,
  });
  await appendMetric(metricsFile, { type: 'eval', step, epoch: epochLabel, loss: r.loss, exactMatch: r.exactMatch, f1: r.f1, examples: r.examples, generated: r.generated, seconds: Number(((performance.now() - t0) / 1000).toFixed(3)) });
  const entry: CheckpointEntry = { name: checkpointName(epochLabel, step), step, epoch: epochLabel, valLoss: r.loss };
  const saved = Number.isFinite(r.loss) ? await top.offer(model, files, entry) : null;
  log(`eval at step ${step}: val_loss ${r.loss.toFixed(4)}, ${describeAnswerScores(r)} ` +
    `(${r.examples} examples, ${r.generated} answered, ${((performance.now() - t0) / 1000).toFixed(1)} s)` +
    (saved ? `; saved ${saved}` : o.saveTopK > 0 ? `; not in the best ${o.saveTopK}` : ''));
  return r;
}

/** OUT/last/: weights, moments and the counters to resume from `pos`, with the options (less --profile). */
async function saveLastCheckpoint({ o, model, opt, files, plan, top, metricsFile, log }: Run, pos: Position): Promise<string> {
  const metrics = existsSync(metricsFile) ? parseMetrics(await readFile(metricsFile, 'utf8')) : [];
  const hf = hfTrainerState({
    step: pos.step, stepsPerEpoch: plan.stepsPerEpoch, maxSteps: plan.totalSteps, numTrainEpochs: plan.epochs, batchSize: o.batchSize,
    logEvery: o.logEvery, evalEvery: o.evalEvery, saveEvery: o.saveEvery, tokensSeen: pos.tokensSeen, metrics,
    best: top.best ? { entry: top.best, dir: top.dirOf(top.best) } : null,
  });
  return saveLast(o.out, model, opt, files, {
    version: 1, step: pos.step, epoch: pos.epoch, batchInEpoch: pos.batchInEpoch, microSteps: pos.microSteps, seed: o.seed,
    earlyStopping: pos.earlyStopping,
    lr: lrAt(plan.schedule, pos.step), best: top.kept, tokensSeen: pos.tokensSeen, trainSeconds: pos.trainSeconds,
    options: { ...o, profile: false } as unknown as Record<string, unknown>,
  }, { trainerState: hf, baseLr: o.lr, log });
}

function summarize({ o, data, plan, top, metricsFile }: Run, pos: Position, done: Outcome, meter: Throughput, startTrainSeconds: number): TrainResult {
  const wall = pos.trainSeconds - startTrainSeconds;
  return {
    out: o.out, steps: pos.step, epochsDone: Math.min(pos.epoch, plan.epochs), interrupted: done.interrupted, stoppedEarly: done.stoppedEarly,
    lastDir: done.lastDir ?? join(o.out, 'last'), best: top.best, bestDir: top.best ? top.dirOf(top.best) : null,
    lastEval: done.lastEval, metricsFile, plotFile: join(o.out, 'loss.svg'),
    trainExamples: data.train.length, validExamples: data.valid.length,
    tokensPerSecond: pos.tokensSeen / Math.max(1e-9, pos.trainSeconds), secondsPerStep: wall / Math.max(1, pos.step - meter.startStep),
    peakBytes: memory().peakBytes, profile: done.profile,
  };
}
