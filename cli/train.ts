// engine-cli train: fine-tune a T5 folder (or Hub id) on a question-answering CSV; the work is train/trainer.ts.
//
//   engine-cli train --data FILE.csv --model DIR|HUB_ID --out OUT [options]
//   engine-cli train --resume OUT [--max-steps N | --epochs N | --time-limit S]
//
// Log lines and the progress bar go to stderr (the bar only on a TTY, never with --quiet); the summary to stdout
// (one JSON object with --json). Ctrl-C stops at the next step boundary and saves OUT/last/ for --resume;
// a second Ctrl-C quits at once.
import { formatSeconds, ProgressBar, progressText } from '../util/progress.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';
import { train, type StepInfo, type TrainOptions } from '../train/trainer.ts';
import { OPTIMIZERS } from '../train/train-options.ts';
import { SCHEDULES } from '../optim/lr-schedule.ts';
import { describeAnswerScores } from '../train/evaluate.ts';
import { describeProfile, type ProfileReport } from '../train/profile.ts';

const USAGE = `usage: engine-cli train --data FILE.csv --model DIR|HUB_ID --out OUT [options]
       engine-cli train --resume OUT [--max-steps N | --epochs N | --time-limit S]
`;

// Defaults shown as libraryDefault are resolveTrainOptions' (train/trainer.ts): left to it, a resumed run keeps
// its own and --eval-max-new-tokens follows --max-target-length.
const TRAIN_FLAGS = {
  data: { type: 'string', arg: 'FILE.csv', help: 'training CSV with context, question and text columns (required)', to: 'data' },
  model: { type: 'string', arg: 'DIR|HUB_ID', help: 'model folder or Hugging Face Hub id to start from (required)', to: 'model' },
  out: { type: 'string', arg: 'OUT', help: 'output folder: best/, last/, metrics.jsonl, loss.svg (required)', to: 'out' },
  resume: { type: 'string', arg: 'OUT', help: 'continue the run in OUT from OUT/last/ with its own options' },
  // data
  valid: { type: 'string', arg: 'FILE.csv', help: 'validation CSV', libraryDefault: '--valid-split of the training rows', to: 'valid' },
  'valid-split': { type: 'number', help: 'share of the training rows held out for validation', libraryDefault: '0.2', to: 'validSplit' },
  'split-seed': { type: 'int', help: 'seed of the split', libraryDefault: '101', to: 'splitSeed' },
  limit: { type: 'int', help: 'the first N usable rows', libraryDefault: 'all', to: 'limit' },
  'context-column': { type: 'string', arg: 'NAME', help: 'CSV column of the passages', libraryDefault: 'context', to: 'csv.contextColumn' },
  'question-column': { type: 'string', arg: 'NAME', help: 'CSV column of the questions', libraryDefault: 'question', to: 'csv.questionColumn' },
  'answer-column': { type: 'string', arg: 'NAME', help: 'CSV column of the answers', libraryDefault: 'text', to: 'csv.answerColumn' },
  'no-fillna': { type: 'boolean', help: 'keep empty cells empty instead of "none" (pandas fillna)', to: 'csv.fillNa', as: () => false },
  'no-collapse-whitespace': { type: 'boolean', help: 'keep runs of whitespace', to: 'csv.collapseWhitespace', as: () => false },
  'no-lowercase': { type: 'boolean', help: 'keep the case', to: 'csv.lowercase', as: () => false },
  'bad-rows': { type: 'string', choices: ['skip', 'error'], help: 'a malformed or too long row is skipped and counted, or an error', libraryDefault: 'skip', to: 'onBadRow' },
  'max-source-length': { type: 'int', help: 'source tokens; the context is cut first', libraryDefault: '512', to: 'maxSourceLength' },
  'max-target-length': { type: 'int', help: 'answer tokens; longer answers are cut', libraryDefault: '128', to: 'maxTargetLength' },
  'group-by-length': { type: 'boolean', help: 'batch examples of similar length together (less padding)', to: 'groupByLength' },
  'no-cache': { type: 'boolean', help: 'do not cache the tokenized data in OUT/.cache', to: 'cacheDir', as: () => null },
  // training
  epochs: { type: 'int', help: 'passes over the training rows', libraryDefault: '5', to: 'epochs' },
  'max-steps': { type: 'int', help: 'stop after N optimizer steps (overrides --epochs)', to: 'maxSteps' },
  'batch-size': { type: 'int', help: 'examples per micro-batch', libraryDefault: '8', to: 'batchSize' },
  'grad-accum': { type: 'int', help: 'micro-batches per optimizer step', libraryDefault: '1', to: 'gradAccum' },
  optim: { type: 'string', choices: OPTIMIZERS, help: "the tutorial's transformers AdamW; HF Trainer's adamw_torch (torch AdamW, eps 1e-8, no decay for norms and biases); or adafactor as HF Trainer's (factored moments: far less memory)", libraryDefault: 'adamw', to: 'optim' },
  lr: { type: 'number', help: 'learning rate', libraryDefault: '1e-4', to: 'lr' },
  'lr-schedule': { type: 'string', choices: SCHEDULES, help: "Hugging Face's lr_scheduler_type ('constant' has no warm-up)", libraryDefault: 'constant', to: 'lrSchedule' },
  'warmup-steps': { type: 'int', help: 'linear warm-up steps', libraryDefault: '0', to: 'warmupSteps' },
  'warmup-ratio': { type: 'number', help: "with no --warmup-steps: warm up for this share of the steps, rounded up (HF's warmup_ratio)", libraryDefault: '0', to: 'warmupRatio' },
  'weight-decay': { type: 'number', help: 'decoupled weight decay', libraryDefault: '0', to: 'weightDecay' },
  'adam-eps': { type: 'number', help: 'AdamW epsilon', libraryDefault: '1e-6; 1e-8 with --optim adamw_torch', to: 'adamEps' },
  'adam-betas': { type: 'list', of: 'number', length: 2, arg: 'B1,B2', help: 'AdamW betas', libraryDefault: '0.9,0.999', to: 'adamBetas' },
  'clip-grad-norm': { type: 'number', help: 'largest global gradient norm', libraryDefault: 'none', to: 'clipGradNorm' },
  'label-smoothing': { type: 'number', help: "label smoothing of the training and validation loss (HF's label_smoothing_factor)", libraryDefault: '0', to: 'labelSmoothing' },
  dropout: { type: 'number', help: 'dropout rate while training', libraryDefault: "the config's", to: 'dropout' },
  'gradient-checkpointing': { type: 'boolean', help: 'recompute activations in the backward: less memory, ~1/3 more time', to: 'gradientCheckpointing' },
  seed: { type: 'int', help: 'seed of the shuffle and dropout', libraryDefault: '100', to: 'seed' },
  'no-shuffle': { type: 'boolean', help: 'keep the rows in file order', to: 'shuffle', as: () => false },
  // evaluation
  'eval-batch-size': { type: 'int', help: 'examples per evaluation batch', libraryDefault: '2', to: 'evalBatchSize' },
  'eval-every': { type: 'int', help: 'also evaluate every N steps', libraryDefault: 'at each epoch end only', to: 'evalEvery' },
  'eval-limit': { type: 'int', help: 'answers generated for exact match and F1', libraryDefault: '100', to: 'evalLimit' },
  'valid-limit': { type: 'int', help: 'validation examples in the loss', libraryDefault: 'all', to: 'validLimit' },
  'eval-max-new-tokens': { type: 'int', help: 'tokens generated per answer', libraryDefault: '--max-target-length', to: 'evalMaxNewTokens' },
  'time-limit': { type: 'number', arg: 'SECONDS', help: 'then evaluate and save as at the end', to: 'timeLimit' },
  // saving and output
  'early-stopping-patience': { type: 'int', help: "stop after N evaluations without a better validation loss (HF's EarlyStoppingCallback)", libraryDefault: 'never', to: 'earlyStoppingPatience' },
  'early-stopping-threshold': { type: 'number', help: 'the improvement of the validation loss that counts', libraryDefault: '0', to: 'earlyStoppingThreshold' },
  'save-top-k': { type: 'int', help: 'best checkpoints kept', libraryDefault: '2', to: 'saveTopK' },
  'save-every': { type: 'int', help: 'save last/ every N steps', libraryDefault: 'at evaluations and the end', to: 'saveEvery' },
  'log-every': { type: 'int', help: 'a train line in metrics.jsonl every N steps', libraryDefault: '1', to: 'logEvery' },
  quiet: { type: 'boolean', short: 'q', help: 'no log lines, no progress bar' },
  json: { type: 'boolean', help: 'the summary as one JSON object' },
  profile: { type: 'boolean', help: 'GPU time in matmul / attention / other and per matmul call site, on the second step', to: 'profile' },
  ...DEVICE_FLAGS,
} satisfies Flags<TrainOptions>;

/** The status line: this epoch's bar, then the step, loss, rate and the whole run's ETA (the trainer's). */
function stepLine(i: StepInfo) {
  return {
    label: `epoch ${i.epoch}/${i.epochs}`,
    total: i.epochSteps,
    extra: `step ${i.step}/${i.totalSteps} loss ${i.loss.toFixed(4)} lr ${i.lr.toExponential(2)} ${i.tokensPerSecond.toFixed(0)} tok/s ` +
      `${i.secondsPerStep.toFixed(2)} s/step ETA ${formatSeconds(i.eta)}`,
  };
}

export async function trainCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('train', USAGE, TRAIN_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
  const resume = values.resume !== undefined;
  if (resume && values.out && values.out !== values.resume) throw new Error('train: --resume OUT continues the run in OUT; do not give another --out');
  if (!resume) {
    for (const flag of ['data', 'model', 'out'] as const) {
      if (!values[flag]) throw new Error(`train: --${flag} is required (engine-cli train --help)`);
    }
  }
  const opts: TrainOptions & { resume?: boolean } = {
    ...flagOptions<TrainOptions>(TRAIN_FLAGS, values),
    data: values.data ?? '', model: values.model ?? '', out: values.out ?? values.resume!, resume,
  };

  await openDevice(values);
  const quiet = values.quiet;
  const bar = new ProgressBar({ quiet });
  const log = (line: string) => {
    if (quiet) return;
    bar.clear();
    process.stderr.write(`${line}\n`);
  };
  // Without a terminal the bar's line is logged every 5% of the steps instead.
  let lastLogged = 0;
  const onStep = (i: StepInfo) => {
    if (bar.enabled) bar.update(i.epochStep, stepLine(i));
    else if (!quiet && (i.step - lastLogged >= Math.max(1, Math.round(i.totalSteps / 20)) || i.step === i.totalSteps)) {
      lastLogged = i.step;
      process.stderr.write(`${progressText({ done: i.epochStep, ...stepLine(i) })}\n`);
    }
  };
  const onEval = (phase: string, done: number, total: number) =>
    bar.update(done, { label: `evaluating: ${phase === 'loss' ? 'validation loss' : 'answers'}`, total, extra: '' });
  // Ctrl-C, and SIGTERM (kill, docker stop, a batch scheduler's time limit): finish the step, save last/, exit 0;
  // the same signal again exits at once (130 / 143, as a shell reports them)
  let stop = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop) process.exit(signal === 'SIGINT' ? 130 : 143);
    stop = true;
    log(`${signal}: stopping at the end of this step and saving last/ (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again to quit now)`);
  };
  const onSigint = () => onSignal('SIGINT');
  const onSigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  try {
    const r = await train(opts, { log, step: onStep, evalProgress: onEval, shouldStop: () => stop });
    bar.clear();
    if (values.json) {
      process.stdout.write(`${JSON.stringify({
        out: r.out, steps: r.steps, interrupted: r.interrupted, stoppedEarly: r.stoppedEarly, best: r.bestDir, bestValLoss: r.best?.valLoss ?? null, last: r.lastDir,
        metrics: r.metricsFile, plot: r.plotFile, loss: r.lastEval?.loss ?? null, exactMatch: r.lastEval?.exactMatch ?? null,
        f1: r.lastEval?.f1 ?? null, tokensPerSecond: r.tokensPerSecond, secondsPerStep: r.secondsPerStep, peakBytes: r.peakBytes,
        profile: r.profile ?? null,
      })}\n`);
      return;
    }
    const e = r.lastEval;
    process.stdout.write(
      `${r.interrupted ? 'interrupted' : r.stoppedEarly ? 'stopped early' : 'finished'} after ${r.steps} steps: ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.secondsPerStep.toFixed(2)} s/step, ` +
        `peak GPU memory ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB\n` +
        (e ? `validation: loss ${e.loss.toFixed(4)}, ${describeAnswerScores(e)} (${e.examples} examples, ${e.generated} answered)\n` : '') +
        (r.bestDir ? `best model:   ${r.bestDir} (val_loss ${r.best!.valLoss.toFixed(4)})\n` : '') +
        `last state:   ${r.lastDir}${r.interrupted ? ` (continue with: engine-cli train --resume ${r.out})` : ''}\n` +
        `metrics:      ${r.metricsFile}\nloss plot:    ${r.plotFile}\n` +
        profileSummary(values.profile === true, quiet === true, r.profile),
    );
  } finally {
    bar.clear();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
}

/** --profile in the summary: logged when it was taken, so here only when --quiet hid the log, or to say why none
 * was taken (the second step is the one profiled: the first compiles the kernels). */
export function profileSummary(asked: boolean, quiet: boolean, profile: ProfileReport | undefined): string {
  if (!asked) return '';
  if (!profile) return 'profile: none taken (the run ended before its second step, the one --profile times)\n';
  return quiet ? `${describeProfile(profile)}\n` : '';
}
