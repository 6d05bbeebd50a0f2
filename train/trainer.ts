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
import { resolveGenerationConfig, readGenerationConfigFile, type ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { GENERATION_CONFIG_FILE, SPIECE_FILE } from '../hf/hf-folder.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import {
  checkpointName, findResumeFolder, readOptimizerState, readTrainerState, saveLast, TopKCheckpoints,
  type CheckpointEntry, type ModelFolderFiles, type TrainerState,
} from './checkpoint.ts';
import { preprocessConfig } from '../tasks/csv-data.ts';
import { collate, describePadding, epochBatches, paddingStats } from './dataset.ts';
import { evaluate, type EvalResult } from './evaluate.ts';
import { writeLossPlot } from './loss-plot.ts';
import { checkSchedule, lrAt, type LrSchedule } from '../optim/lr-schedule.ts';
import { captureDispatches, describeProfile, replayTimes, type ProfileReport } from './profile.ts';
import { prepareData } from './prepare-data.ts';
import { resolveTrainOptions, resumedOptions, type ResolvedTrainOptions, type TrainOptions } from './train-options.ts';

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
    const saved = state.options as unknown as ResolvedTrainOptions;
    o = resumedOptions(saved, options);
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
