// engine-cli eval: validation loss, exact match and F1 of a model folder on a CSV (train/evaluate.ts does it).
//
//   engine-cli eval --model DIR|HUB_ID --data FILE.csv [options]
//
// --json prints {"loss": number, "exactMatch": number, "f1": number, "examples": number} (exact match and F1 in
// percent, as SQuAD's script prints them).
import { ProgressBar } from '../util/progress.ts';
import { describeAnswerScores, evaluateFile, type EvaluateFileOptions } from '../train/evaluate.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

const USAGE = 'usage: engine-cli eval --model DIR|HUB_ID --data FILE.csv [options]\n';

const EVAL_FLAGS = {
  model: { type: 'string', arg: 'DIR|HUB_ID', required: true, help: 'model folder or Hugging Face Hub id', to: 'model' },
  data: { type: 'string', arg: 'FILE.csv', required: true, help: 'CSV with context, question and text columns', to: 'data' },
  'num-beams': { type: 'int', min: 1, help: 'beams for the answers', libraryDefault: '1, greedy', to: 'numBeams' },
  'batch-size': { type: 'int', min: 1, help: 'examples per batch', libraryDefault: '8', to: 'batchSize' },
  limit: { type: 'int', min: 1, help: 'the first N usable rows', libraryDefault: 'all', to: 'limit' },
  'generate-limit': { type: 'int', min: 0, help: 'answers generated for exact match and F1', libraryDefault: 'all', to: 'generateLimit' },
  'max-source-length': { type: 'int', min: 3, help: 'source tokens; the context is cut first', libraryDefault: '512', to: 'maxSourceLength' },
  'max-target-length': { type: 'int', min: 2, help: 'answer tokens; longer answers are cut', libraryDefault: '128', to: 'maxTargetLength' },
  'max-new-tokens': { type: 'int', min: 1, help: 'tokens generated per answer', libraryDefault: '--max-target-length', to: 'maxNewTokens' },
  'label-smoothing': { type: 'number', help: "the loss's label smoothing, as a run trained with --label-smoothing reports it", libraryDefault: '0', to: 'labelSmoothing' },
  'bad-rows': { type: 'string', choices: ['skip', 'error'], help: 'a malformed CSV row is skipped and counted, or an error', libraryDefault: 'skip', to: 'onBadRow' },
  json: { type: 'boolean', help: 'one JSON object: loss, exactMatch and f1 in percent, examples' },
  quiet: { type: 'boolean', short: 'q', help: 'no log lines, no progress bar' },
  ...DEVICE_FLAGS,
} satisfies Flags<EvaluateFileOptions>;

export async function evalCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('eval', USAGE, EVAL_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
  await openDevice(values);
  const quiet = values.quiet;
  const bar = new ProgressBar({ quiet });
  const r = await evaluateFile({
    ...flagOptions<EvaluateFileOptions>(EVAL_FLAGS, values),
    model: values.model,
    data: values.data,
    log: (line) => {
      if (quiet) return;
      bar.clear();
      process.stderr.write(`${line}\n`);
    },
    onProgress: (phase, done, total) => bar.update(done, { label: phase === 'loss' ? 'loss' : 'answers', total }),
  });
  bar.clear();
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ loss: r.loss, exactMatch: r.exactMatch, f1: r.f1, examples: r.examples })}\n`);
    return;
  }
  process.stdout.write(
    `loss ${r.loss.toFixed(4)} (mean over ${r.tokens} answer tokens)\n` +
      (r.generated === 0 ? `${describeAnswerScores(r)}\n` : `exact match ${r.exactMatch.toFixed(2)}%\nF1 ${r.f1.toFixed(2)}%\n`) +
      `examples ${r.examples}${r.generated !== r.examples ? ` (${r.generated} answered)` : ''}\n`,
  );
}
