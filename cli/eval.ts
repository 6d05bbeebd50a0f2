// engine-cli eval: validation loss, exact match and F1 of a model folder on a CSV (train/evaluate.ts does it).
//
//   engine-cli eval --model DIR|HUB_ID --data FILE.csv [--num-beams N] [--json]
//
// --json prints {"loss": number, "exactMatch": number, "f1": number, "examples": number} (exact match and F1 in
// percent, as SQuAD's script prints them).
import { parseArgs } from 'node:util';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { evaluateFile } from '../train/evaluate.ts';

export const EVAL_USAGE = `usage: engine-cli eval --model DIR|HUB_ID --data FILE.csv [--num-beams N] [--json]
  [--batch-size 8] [--limit N (rows)] [--generate-limit N (answers generated)] [--max-source-length 512]
  [--max-target-length 128] [--max-new-tokens N] [--bad-rows skip|error] [--quiet]
`;

export async function evalCommand(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' }, data: { type: 'string' }, 'num-beams': { type: 'string' }, json: { type: 'boolean' },
        'batch-size': { type: 'string' }, limit: { type: 'string' }, 'generate-limit': { type: 'string' },
        'max-source-length': { type: 'string' }, 'max-target-length': { type: 'string' }, 'max-new-tokens': { type: 'string' },
        'bad-rows': { type: 'string' }, quiet: { type: 'boolean', short: 'q' }, help: { type: 'boolean', short: 'h' },
        ...DEVICE_FLAGS,
      },
    }));
  } catch (err) {
    throw new Error(`eval: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  if (values.help) {
    process.stdout.write(EVAL_USAGE);
    return;
  }
  for (const flag of ['model', 'data'] as const) {
    if (!values[flag]) throw new Error(`eval: --${flag} is required (engine-cli eval --help)`);
  }
  const int = (flag: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!/^\d+$/.test(v) || x < min) throw new Error(`eval: --${flag} must be an integer >= ${min}, got '${v}'`);
    return x;
  };
  const badRows = values['bad-rows'];
  if (badRows !== undefined && badRows !== 'skip' && badRows !== 'error') throw new Error(`eval: --bad-rows must be skip or error, got '${badRows}'`);
  await openDevice(values);
  const quiet = values.quiet ?? false;
  const tty = process.stderr.isTTY && !quiet;
  const r = await evaluateFile({
    model: values.model!, data: values.data!, numBeams: int('num-beams', values['num-beams'], 1),
    batchSize: int('batch-size', values['batch-size'], 1), limit: int('limit', values.limit, 1),
    generateLimit: int('generate-limit', values['generate-limit'], 0),
    maxSourceLength: int('max-source-length', values['max-source-length'], 3),
    maxTargetLength: int('max-target-length', values['max-target-length'], 2),
    maxNewTokens: int('max-new-tokens', values['max-new-tokens'], 1),
    onBadRow: badRows as 'skip' | 'error' | undefined,
    log: (line) => { if (!quiet) process.stderr.write(`${line}\n`); },
    onProgress: tty ? (phase, done, total) => process.stderr.write(`\r\x1b[K${phase === 'loss' ? 'loss' : 'answers'} ${done}/${total}`) : undefined,
  });
  if (tty) process.stderr.write('\r\x1b[K');
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ loss: r.loss, exactMatch: r.exactMatch, f1: r.f1, examples: r.examples })}\n`);
    return;
  }
  process.stdout.write(
    `loss ${r.loss.toFixed(4)} (mean over ${r.tokens} answer tokens)\n` +
      `exact match ${r.exactMatch.toFixed(2)}%\nF1 ${r.f1.toFixed(2)}%\n` +
      `examples ${r.examples}${r.generated !== r.examples ? ` (${r.generated} answered)` : ''}\n`,
  );
}
