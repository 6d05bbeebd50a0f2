// engine-cli train: fine-tune a T5 folder (or Hub id) on a question-answering CSV; the work is train/trainer.ts.
//
//   engine-cli train --data FILE.csv --model DIR|HUB_ID --out OUT [options]
//   engine-cli train --resume OUT [--max-steps N | --epochs N | --time-limit S]
//
// Log lines and the progress bar go to stderr (the bar only on a TTY, never with --quiet); the summary to stdout
// (one JSON object with --json). Ctrl-C stops at the next step boundary and saves OUT/last/ for --resume;
// a second Ctrl-C quits at once.
import { parseArgs } from 'node:util';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { train, type StepInfo, type TrainOptions } from '../train/trainer.ts';

export const TRAIN_USAGE = `usage: engine-cli train --data FILE.csv --model DIR|HUB_ID --out OUT [options]
       engine-cli train --resume OUT [--max-steps N | --epochs N | --time-limit S]

data:      --valid FILE | --valid-split 0.2 [--split-seed 101]   --limit N (first N rows)
           --context-column context --question-column question --answer-column text
           --no-fillna --no-collapse-whitespace --no-lowercase   --bad-rows skip|error
           --max-source-length 512 --max-target-length 128 --group-by-length --no-cache
training:  --epochs 5 --max-steps N --batch-size 8 --grad-accum 1 --lr 1e-4 --lr-schedule constant|linear
           --warmup-steps 0 --weight-decay 0 --adam-eps 1e-6 --adam-betas 0.9,0.999 --clip-grad-norm X
           --dropout X (default: the config's) --seed 100 --no-shuffle
eval:      --eval-batch-size 2 --eval-every N (steps; also at each epoch end) --eval-limit 100 (answers generated)
           --valid-limit N (examples in the loss) --eval-max-new-tokens N
           --time-limit SECONDS (then evaluate and save as at the end)
saving:    --save-top-k 2 --save-every N (last/ every N steps) --log-every 1
output:    --quiet --json --profile (share of time in matmul / attention / other, one step)
`;

const num = (flag: string, v: string | undefined, int = false): number | undefined => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) {
    throw new Error(`train: --${flag} must be ${int ? 'an integer' : 'a number'}, got '${v}'`);
  }
  return x;
};

function bar(i: StepInfo, width = 24): string {
  const frac = i.epochSteps > 0 ? Math.min(1, i.epochStep / i.epochSteps) : 0;
  const full = Math.round(frac * width);
  const eta = Math.max(0, Math.round(i.eta));
  const etaText = `${Math.floor(eta / 60)}:${String(eta % 60).padStart(2, '0')}`;
  return `epoch ${i.epoch}/${i.epochs} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${i.epochStep}/${i.epochSteps} ` +
    `step ${i.step}/${i.totalSteps} loss ${i.loss.toFixed(4)} lr ${i.lr.toExponential(2)} ${i.tokensPerSecond.toFixed(0)} tok/s ` +
    `${i.secondsPerStep.toFixed(2)} s/step ETA ${etaText}`;
}

export async function trainCommand(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        data: { type: 'string' }, model: { type: 'string' }, out: { type: 'string' }, resume: { type: 'string' },
        valid: { type: 'string' }, 'valid-split': { type: 'string' }, 'split-seed': { type: 'string' }, limit: { type: 'string' },
        'context-column': { type: 'string' }, 'question-column': { type: 'string' }, 'answer-column': { type: 'string' },
        'no-fillna': { type: 'boolean' }, 'no-collapse-whitespace': { type: 'boolean' }, 'no-lowercase': { type: 'boolean' },
        'bad-rows': { type: 'string' }, 'max-source-length': { type: 'string' }, 'max-target-length': { type: 'string' },
        'group-by-length': { type: 'boolean' }, 'no-cache': { type: 'boolean' },
        epochs: { type: 'string' }, 'max-steps': { type: 'string' }, 'batch-size': { type: 'string' }, 'grad-accum': { type: 'string' },
        lr: { type: 'string' }, 'lr-schedule': { type: 'string' }, 'warmup-steps': { type: 'string' }, 'weight-decay': { type: 'string' },
        'adam-eps': { type: 'string' }, 'adam-betas': { type: 'string' }, 'clip-grad-norm': { type: 'string' }, dropout: { type: 'string' },
        seed: { type: 'string' }, 'no-shuffle': { type: 'boolean' },
        'eval-batch-size': { type: 'string' }, 'eval-every': { type: 'string' }, 'eval-limit': { type: 'string' },
        'valid-limit': { type: 'string' }, 'eval-max-new-tokens': { type: 'string' },
        'save-top-k': { type: 'string' }, 'save-every': { type: 'string' }, 'log-every': { type: 'string' }, 'time-limit': { type: 'string' },
        quiet: { type: 'boolean', short: 'q' }, json: { type: 'boolean' }, profile: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...DEVICE_FLAGS,
      },
    }));
  } catch (err) {
    throw new Error(`train: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  if (values.help) {
    process.stdout.write(TRAIN_USAGE);
    return;
  }
  const resume = values.resume !== undefined;
  if (resume && values.out && values.out !== values.resume) throw new Error('train: --resume OUT continues the run in OUT; do not give another --out');
  if (!resume) {
    for (const flag of ['data', 'model', 'out'] as const) {
      if (!values[flag]) throw new Error(`train: --${flag} is required (engine-cli train --help)`);
    }
  }
  let betas: [number, number] | undefined;
  if (values['adam-betas'] !== undefined) {
    const parts = values['adam-betas'].split(',').map((s) => Number(s));
    if (parts.length !== 2 || !parts.every(Number.isFinite)) throw new Error(`train: --adam-betas must be two numbers like 0.9,0.999, got '${values['adam-betas']}'`);
    betas = [parts[0]!, parts[1]!];
  }
  const badRows = values['bad-rows'];
  if (badRows !== undefined && badRows !== 'skip' && badRows !== 'error') throw new Error(`train: --bad-rows must be skip or error, got '${badRows}'`);
  const schedule = values['lr-schedule'];
  if (schedule !== undefined && schedule !== 'constant' && schedule !== 'linear') throw new Error(`train: --lr-schedule must be constant or linear, got '${schedule}'`);

  const opts: TrainOptions & { resume?: boolean } = {
    data: values.data ?? '', model: values.model ?? '', out: values.out ?? values.resume!, resume,
    valid: values.valid, validSplit: num('valid-split', values['valid-split']), splitSeed: num('split-seed', values['split-seed'], true),
    limit: num('limit', values.limit, true),
    csv: {
      contextColumn: values['context-column'], questionColumn: values['question-column'], answerColumn: values['answer-column'],
      fillNa: values['no-fillna'] ? false : undefined, collapseWhitespace: values['no-collapse-whitespace'] ? false : undefined,
      lowercase: values['no-lowercase'] ? false : undefined,
    },
    onBadRow: badRows as 'skip' | 'error' | undefined,
    maxSourceLength: num('max-source-length', values['max-source-length'], true),
    maxTargetLength: num('max-target-length', values['max-target-length'], true),
    groupByLength: values['group-by-length'], cacheDir: values['no-cache'] ? null : undefined,
    epochs: num('epochs', values.epochs, true), maxSteps: num('max-steps', values['max-steps'], true),
    batchSize: num('batch-size', values['batch-size'], true), gradAccum: num('grad-accum', values['grad-accum'], true),
    lr: num('lr', values.lr), lrSchedule: schedule as 'constant' | 'linear' | undefined, warmupSteps: num('warmup-steps', values['warmup-steps'], true),
    weightDecay: num('weight-decay', values['weight-decay']), adamEps: num('adam-eps', values['adam-eps']), adamBetas: betas,
    clipGradNorm: num('clip-grad-norm', values['clip-grad-norm']), dropout: num('dropout', values.dropout),
    seed: num('seed', values.seed, true), shuffle: values['no-shuffle'] ? false : undefined,
    evalBatchSize: num('eval-batch-size', values['eval-batch-size'], true), evalEvery: num('eval-every', values['eval-every'], true),
    evalLimit: num('eval-limit', values['eval-limit'], true), validLimit: num('valid-limit', values['valid-limit'], true),
    evalMaxNewTokens: num('eval-max-new-tokens', values['eval-max-new-tokens'], true),
    saveTopK: num('save-top-k', values['save-top-k'], true), saveEvery: num('save-every', values['save-every'], true),
    logEvery: num('log-every', values['log-every'], true), timeLimit: num('time-limit', values['time-limit']), profile: values.profile,
  };
  // undefined means "default": drop them so resolveTrainOptions applies its defaults
  for (const k of Object.keys(opts) as (keyof typeof opts)[]) if (opts[k] === undefined) delete opts[k];
  for (const k of Object.keys(opts.csv!) as (keyof NonNullable<TrainOptions['csv']>)[]) if (opts.csv![k] === undefined) delete opts.csv![k];

  await openDevice(values);
  const quiet = values.quiet ?? false;
  const tty = process.stderr.isTTY && !quiet;
  let barShown = false;
  const clearBar = () => {
    if (barShown) process.stderr.write('\r\x1b[K');
    barShown = false;
  };
  const log = (line: string) => {
    if (quiet) return;
    clearBar();
    process.stderr.write(`${line}\n`);
  };
  let lastLogged = 0;
  const onStep = (i: StepInfo) => {
    if (quiet) return;
    if (tty) {
      process.stderr.write(`\r\x1b[K${bar(i)}`);
      barShown = true;
    } else if (i.step - lastLogged >= Math.max(1, Math.round(i.totalSteps / 20)) || i.step === i.totalSteps) {
      lastLogged = i.step;
      process.stderr.write(`${bar(i)}\n`);
    }
  };
  const onEval = (phase: string, done: number, total: number) => {
    if (!tty) return;
    process.stderr.write(`\r\x1b[Kevaluating: ${phase === 'loss' ? 'validation loss' : 'answers'} ${done}/${total}`);
    barShown = true;
  };
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    log('stopping at the end of this step and saving last/ (Ctrl-C again to quit now)');
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await train(opts, { log, step: onStep, evalProgress: onEval, shouldStop: () => stop });
    clearBar();
    if (values.json) {
      process.stdout.write(`${JSON.stringify({
        out: r.out, steps: r.steps, interrupted: r.interrupted, best: r.bestDir, bestValLoss: r.best?.valLoss ?? null, last: r.lastDir,
        metrics: r.metricsFile, plot: r.plotFile, loss: r.lastEval?.loss ?? null, exactMatch: r.lastEval?.exactMatch ?? null,
        f1: r.lastEval?.f1 ?? null, tokensPerSecond: r.tokensPerSecond, secondsPerStep: r.secondsPerStep, peakBytes: r.peakBytes,
        profile: r.profile ?? null,
      })}\n`);
      return;
    }
    const e = r.lastEval;
    process.stdout.write(
      `${r.interrupted ? 'interrupted' : 'finished'} after ${r.steps} steps: ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.secondsPerStep.toFixed(2)} s/step, ` +
        `peak GPU memory ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB\n` +
        (e ? `validation: loss ${e.loss.toFixed(4)}, exact match ${e.exactMatch.toFixed(1)}%, F1 ${e.f1.toFixed(1)}% (${e.examples} examples, ${e.generated} answered)\n` : '') +
        (r.bestDir ? `best model:   ${r.bestDir} (val_loss ${r.best!.valLoss.toFixed(4)})\n` : '') +
        `last state:   ${r.lastDir}${r.interrupted ? ` (continue with: engine-cli train --resume ${r.out})` : ''}\n` +
        `metrics:      ${r.metricsFile}\nloss plot:    ${r.plotFile}\n`,
    );
  } finally {
    clearBar();
    process.off('SIGINT', onSigint);
  }
}
