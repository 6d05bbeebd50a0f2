// engine-cli score: mean cross-entropy of a target given a source, and the number of target tokens.
//
//   engine-cli score --model DIR|HUB_ID (--input TEXT | --context TEXT --question TEXT) --target TEXT [options]
import { loadModelForCli } from '../hf/load-model.ts';
import { scoreTarget, type ScoreInput, type ScoreOptions } from '../tasks/score.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

const USAGE = 'usage: engine-cli score --model DIR|HUB_ID (--input TEXT | --context TEXT --question TEXT) --target TEXT [options]\n';

const SCORE_FLAGS = {
  model: { type: 'string', arg: 'DIR|HUB_ID', required: true, help: 'model folder or Hugging Face Hub id' },
  input: { type: 'string', arg: 'TEXT', help: 'the source as the model sees it' },
  context: { type: 'string', arg: 'TEXT', help: 'with --question: the source as training builds it' },
  question: { type: 'string', arg: 'TEXT', help: 'with --context' },
  target: { type: 'string', arg: 'TEXT', help: 'the text scored; required, empty scores </s> alone' },
  'max-source-length': { type: 'int', min: 3, default: 512, help: 'source tokens; the context is cut first', to: 'maxSourceLength' },
  json: { type: 'boolean', help: 'one JSON object: loss, tokens' },
  quiet: { type: 'boolean', short: 'q', help: 'no download progress' },
  ...DEVICE_FLAGS,
} satisfies Flags<ScoreOptions>;

export async function scoreCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('score', USAGE, SCORE_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
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

  await openDevice(values);
  const loaded = await loadModelForCli(values.model, { quiet: values.quiet || !process.stderr.isTTY });
  try {
    const r = await scoreTarget(loaded, inp, flagOptions<ScoreOptions>(SCORE_FLAGS, values));
    if (values.json) process.stdout.write(`${JSON.stringify({ loss: r.loss, tokens: r.tokens })}\n`);
    else process.stdout.write(`loss ${r.loss.toPrecision(7)} over ${r.tokens} target tokens (</s> included)\n`);
  } finally {
    loaded.model.dispose();
  }
}
