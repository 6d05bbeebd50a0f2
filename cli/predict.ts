// engine-cli predict: answers from a model folder (or Hub id), for one input or a whole CSV file.
//
//   engine-cli predict --model DIR (--context TEXT --question TEXT | --input TEXT | --data FILE.csv --output FILE)
//                      [--num-beams N] [--max-length N] [--max-new-tokens N] [--min-length N]
//                      [--no-repeat-ngram-size N] [--length-penalty X] [--early-stopping true|false|never]
//                      [--num-return-sequences N] [--batch-size N] [--json] [--quiet]
//
// The work is tasks/predict.ts's; this file parses flags and prints.
import { parseArgs } from 'node:util';
import type { EarlyStopping, GenerationOptions } from '../generate/generation-config.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import { predictFile, predictOne, type PredictInput } from '../tasks/predict.ts';
import { describeBadRows } from '../tasks/csv-data.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';

const USAGE =
  'usage: engine-cli predict --model DIR|HUB_ID (--context TEXT --question TEXT | --input TEXT | --data FILE.csv --output FILE.csv|.jsonl)\n' +
  '         [--num-beams N] [--max-length N] [--max-new-tokens N] [--min-length N] [--no-repeat-ngram-size N]\n' +
  '         [--length-penalty X] [--early-stopping true|false|never] [--num-return-sequences N] [--batch-size N]\n' +
  '         [--json] [--quiet]\n' +
  'Defaults where the model folder sets none: --num-beams 4 --no-repeat-ngram-size 2 --early-stopping true;\n' +
  'inputs longer than 512 tokens are truncated (context first).\n';

const OPTIONS = {
  ...DEVICE_FLAGS,
  model: { type: 'string' },
  context: { type: 'string' },
  question: { type: 'string' },
  input: { type: 'string' },
  data: { type: 'string' },
  output: { type: 'string' },
  'num-beams': { type: 'string' },
  'max-length': { type: 'string' },
  'max-new-tokens': { type: 'string' },
  'min-length': { type: 'string' },
  'no-repeat-ngram-size': { type: 'string' },
  'length-penalty': { type: 'string' },
  'early-stopping': { type: 'string' },
  'num-return-sequences': { type: 'string' },
  'batch-size': { type: 'string' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const;

function intFlag(name: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (!/^\s*[+-]?\d+\s*$/.test(text) || !Number.isSafeInteger(v) || v < min) {
    throw new Error(`predict: --${name} must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}, got '${text}'`);
  }
  return v;
}

function earlyStoppingFlag(text: string | undefined): EarlyStopping | undefined {
  if (text === undefined) return undefined;
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text === 'never') return 'never';
  throw new Error(`predict: --early-stopping must be true, false or never, got '${text}'`);
}

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

/** The generation flags as HF option names; lengths checked to be positive here so the message names the flag. */
export function generationOptionsFromFlags(values: Values): GenerationOptions {
  const opts: GenerationOptions = {
    num_beams: intFlag('num-beams', values['num-beams'], 1),
    max_length: intFlag('max-length', values['max-length'], 1),
    max_new_tokens: intFlag('max-new-tokens', values['max-new-tokens'], 1),
    min_length: intFlag('min-length', values['min-length'], 0),
    no_repeat_ngram_size: intFlag('no-repeat-ngram-size', values['no-repeat-ngram-size'], 0),
    early_stopping: earlyStoppingFlag(values['early-stopping']),
    num_return_sequences: intFlag('num-return-sequences', values['num-return-sequences'], 1),
  };
  const lp = values['length-penalty'];
  if (lp !== undefined) {
    const v = Number(lp);
    if (lp.trim() === '' || !Number.isFinite(v)) throw new Error(`predict: --length-penalty must be a number, got '${lp}'`);
    opts.length_penalty = v;
  }
  const beams = opts.num_beams;
  if (opts.num_return_sequences !== undefined && beams !== undefined && opts.num_return_sequences > beams) {
    throw new Error(`predict: --num-return-sequences ${opts.num_return_sequences} is more than --num-beams ${beams}`);
  }
  for (const k of Object.keys(opts) as (keyof GenerationOptions)[]) if (opts[k] === undefined) delete opts[k];
  return opts;
}

/** Generation errors use HF's option names (`num_return_sequences`); the user typed --num-return-sequences. */
function withFlagNames(e: unknown): Error {
  const err = e as Error;
  const msg = (err.message ?? String(e)).replace(/`([a-z_]+)`/g, (_, name: string) => `--${name.replace(/_/g, '-')}`);
  return new Error(msg.startsWith('predict:') ? msg : `predict: ${msg}`);
}

/**
 * Two spellings node:util's parseArgs refuses on its own: a negative number after a string flag
 * (`--length-penalty -0.5`, joined into `--length-penalty=-0.5`), and a bare `--early-stopping` (the issue's
 * spelling of the tutorial's default) at the end or before another flag, which means `--early-stopping true`.
 */
function normalizeArgv(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2) : '';
    const next = argv[i + 1];
    const opt = (OPTIONS as Record<string, { type: string }>)[name];
    if (opt?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else if (name === 'early-stopping' && (next === undefined || next.startsWith('-'))) {
      out.push(`${a}=true`);
    } else {
      out.push(a);
    }
  }
  return out;
}

export async function predictCommand(argv: string[]): Promise<void> {
  let values: Values;
  try {
    ({ values } = parseArgs({ args: normalizeArgv(argv), options: OPTIONS }));
  } catch (err) {
    throw new Error(`predict: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values.model) throw new Error('predict: --model is required (engine-cli predict --help)');
  const pair = values.context !== undefined || values.question !== undefined;
  const modes = [pair, values.input !== undefined, values.data !== undefined].filter(Boolean).length;
  if (modes !== 1) throw new Error('predict: give exactly one of --context with --question, --input, or --data with --output');
  if (pair && values.context === undefined) throw new Error('predict: --context is required with --question');
  if (pair && values.question === undefined) throw new Error('predict: --question is required with --context');
  if (values.data !== undefined && !values.output) throw new Error('predict: --output is required with --data');
  if (values.output !== undefined && values.data === undefined) throw new Error('predict: --output needs --data');
  for (const [flag, v] of [['context', values.context], ['question', values.question], ['input', values.input]] as const) {
    if (v !== undefined && v.trim() === '') throw new Error(`predict: --${flag} must not be empty`);
  }
  const generation = generationOptionsFromFlags(values);
  const batchSize = intFlag('batch-size', values['batch-size'], 1);
  const quiet = values.quiet ?? false;
  const warn = (m: string): void => {
    if (!quiet) process.stderr.write(`${withFlagNames(new Error(`warning: ${m}`)).message}\n`);
  };

  await openDevice(values);
  let loaded;
  try {
    loaded = await loadModelForCli(values.model, { quiet });
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    throw new Error(msg.startsWith('--model') ? `predict: ${msg}` : `predict: --model ${values.model}: ${msg}`);
  }
  const { model, tokenizer, dir, preprocess } = loaded;
  const common = { modelDir: dir, generation, preprocess: preprocess ?? null, onWarning: warn };
  try {
    if (values.data !== undefined) {
      const result = await predictFile({
        ...common,
        model,
        tokenizer,
        data: values.data,
        output: values.output!,
        batchSize,
        progress: !quiet,
        onPrediction: values.json
          ? (row) => process.stdout.write(`${JSON.stringify({ line: row.line, sequences: row.sequences })}\n`)
          : undefined,
      });
      if (result.report.badRowCount > 0) process.stderr.write(`predict: ${describeBadRows(result.report)}\n`);
      if (!values.json) process.stdout.write(`wrote ${result.output}: ${result.rows} prediction${result.rows === 1 ? '' : 's'} (${result.format})\n`);
      return;
    }
    const input: PredictInput = values.input !== undefined
      ? { input: values.input }
      : { context: values.context!, question: values.question! };
    const prediction = await predictOne(model, tokenizer, input, common);
    if (values.json) process.stdout.write(`${JSON.stringify({ sequences: prediction.sequences })}\n`);
    else process.stdout.write(prediction.sequences.map((s) => `${s.text}\n`).join(''));
  } catch (e) {
    throw withFlagNames(e);
  } finally {
    model.dispose();
  }
}
