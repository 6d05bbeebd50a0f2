// engine-cli score: mean cross-entropy of a target given a source, and the number of target tokens.
//
//   engine-cli score --model DIR|HUB_ID (--input TEXT | --context TEXT --question TEXT) --target TEXT [--json]
//                    [--max-source-length N] [--quiet]
import { parseArgs } from 'node:util';
import { loadModelForCli } from '../hf/load-model.ts';
import { scoreTarget, type ScoreInput } from '../tasks/score.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';

const USAGE =
  'usage: engine-cli score --model DIR|HUB_ID (--input TEXT | --context TEXT --question TEXT) --target TEXT ' +
  '[--json] [--max-source-length N] [--quiet]\n';

export async function scoreCommand(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...DEVICE_FLAGS,
        model: { type: 'string' },
        input: { type: 'string' },
        context: { type: 'string' },
        question: { type: 'string' },
        target: { type: 'string' },
        json: { type: 'boolean', default: false },
        'max-source-length': { type: 'string', default: '512' },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new Error(`score: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values.model) throw new Error('score: --model is required (engine-cli score --help)');
  if (values.target === undefined) throw new Error('score: --target is required (engine-cli score --help)');
  const pair = values.context !== undefined || values.question !== undefined;
  if (values.input !== undefined && pair) throw new Error('score: give either --input or --context with --question, not both');
  let inp: ScoreInput;
  if (values.input !== undefined) {
    inp = { input: values.input, target: values.target };
  } else if (pair) {
    if (values.context === undefined) throw new Error('score: --question needs --context');
    if (values.question === undefined) throw new Error('score: --context needs --question');
    inp = { context: values.context, question: values.question, target: values.target };
  } else {
    throw new Error('score: give --input TEXT, or --context TEXT with --question TEXT');
  }
  const lenText = values['max-source-length']!;
  const maxSourceLength = Number(lenText);
  if (!/^\d+$/.test(lenText) || !Number.isSafeInteger(maxSourceLength) || maxSourceLength < 3) {
    throw new Error(`score: --max-source-length must be an integer >= 3, got '${lenText}'`);
  }

  await openDevice(values);
  const loaded = await loadModelForCli(values.model, { quiet: values.quiet || !process.stderr.isTTY });
  try {
    const r = await scoreTarget(loaded, inp, { maxSourceLength });
    if (values.json) process.stdout.write(`${JSON.stringify({ loss: r.loss, tokens: r.tokens })}\n`);
    else process.stdout.write(`loss ${r.loss.toPrecision(7)} over ${r.tokens} target tokens (</s> included)\n`);
  } finally {
    loaded.model.dispose();
  }
}
