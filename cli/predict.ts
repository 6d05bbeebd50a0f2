// engine-cli predict: answers from a model folder (or Hub id), for one input or a whole CSV file.
//
//   engine-cli predict --model DIR (--context TEXT --question TEXT | --input TEXT | --data FILE.csv --output FILE)
//                      [options]
//
// The work is tasks/predict.ts's; this file parses flags and prints.
import type { GenerationOptions } from '../generate/generation-config.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import {
  badWordsIds,
  DEFAULT_BATCH_SIZE,
  DEFAULT_MAX_INPUT_LENGTH,
  TUTORIAL_GENERATION_DEFAULTS as TUTORIAL,
  checkOutputPath,
  outputFormatOf,
  predictFile,
  predictOne,
  type PredictFileOptions,
  type PredictInput,
} from '../tasks/predict.ts';
import { checkReadable, describeBadRows } from '../tasks/csv-data.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

const USAGE =
  'usage: engine-cli predict --model DIR|HUB_ID (--context TEXT --question TEXT | --input TEXT | --data FILE.csv --output FILE.csv|.jsonl)\n' +
  '         [options]\n' +
  "Generation defaults come from the model folder's generation_config.json, else the tutorial's and HF's;\n" +
  `inputs longer than ${DEFAULT_MAX_INPUT_LENGTH} tokens are truncated (context first).\n`;

const FROM_FOLDER = "the folder's, else";

const PREDICT_FLAGS = {
  model: { type: 'string', arg: 'DIR|HUB_ID', required: true, help: 'model folder or Hugging Face Hub id' },
  context: { type: 'string', arg: 'TEXT', help: 'with --question: one answer' },
  question: { type: 'string', arg: 'TEXT', help: 'with --context' },
  input: { type: 'string', arg: 'TEXT', help: 'one answer for a source given as the model sees it' },
  data: { type: 'string', arg: 'FILE.csv', help: 'with --output: answers for every row of a CSV with context and question columns' },
  output: { type: 'string', arg: 'FILE.csv|.jsonl', help: 'with --data: written when every row is done' },
  'num-beams': { type: 'int', min: 1, help: 'beam search width', libraryDefault: `${FROM_FOLDER} ${TUTORIAL.num_beams}`, to: 'generation.num_beams' },
  'max-length': { type: 'int', min: 1, help: 'answer tokens with the decoder start token', libraryDefault: `${FROM_FOLDER} 20`, to: 'generation.max_length' },
  'max-new-tokens': { type: 'int', min: 1, help: 'answer tokens generated; overrides --max-length', to: 'generation.max_new_tokens' },
  'min-length': { type: 'int', min: 0, help: '</s> is banned before this length', libraryDefault: `${FROM_FOLDER} 0`, to: 'generation.min_length' },
  'no-repeat-ngram-size': { type: 'int', min: 0, help: 'no n-gram of this size twice; 0: off', libraryDefault: `${FROM_FOLDER} ${TUTORIAL.no_repeat_ngram_size}`, to: 'generation.no_repeat_ngram_size' },
  'repetition-penalty': { type: 'number', help: 'scores of tokens already in the answer are divided by X (> 1: fewer repeats)', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.repetition_penalty' },
  'length-penalty': { type: 'number', help: 'beam scores are divided by length^X', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.length_penalty' },
  'early-stopping': {
    type: 'string', choices: ['true', 'false', 'never'], help: 'when beam search stops; bare: true', libraryDefault: `${FROM_FOLDER} ${TUTORIAL.early_stopping} with beams`,
    to: 'generation.early_stopping', as: (v) => (v === 'never' ? 'never' : v === 'true'),
  },
  'num-return-sequences': { type: 'int', min: 1, help: 'answers per input (beam search: best first; sampling: as drawn)', libraryDefault: '1', to: 'generation.num_return_sequences' },
  'penalty-alpha': { type: 'number', help: 'contrastive search with --top-k K candidates (K > 1, 1 beam, no sampling): the weight of the degeneration penalty', libraryDefault: `${FROM_FOLDER} none`, to: 'generation.penalty_alpha' },
  'num-beam-groups': { type: 'int', min: 1, help: 'diverse beam search: the beams in this many groups (needs --diversity-penalty)', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.num_beam_groups' },
  'diversity-penalty': { type: 'number', help: 'diverse beam search: the cost of a token an earlier group chose this step', libraryDefault: `${FROM_FOLDER} 0`, to: 'generation.diversity_penalty' },
  'max-time': { type: 'number', arg: 'SECONDS', help: "seconds each generate call may search (HF's max_time); answers end where they are", to: 'generation.max_time' },
  'bad-words': { type: 'string', arg: 'W1,W2', help: 'words or phrases never generated, comma separated (HF bad_words_ids; replaces the folder\'s)' },
  'do-sample': { type: 'boolean', help: 'draw each token from the distribution instead of searching (1 beam by default; more: beam sampling)', to: 'generation.do_sample' },
  temperature: { type: 'number', help: 'with --do-sample: the logits are divided by X (> 0)', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.temperature' },
  'top-k': { type: 'int', min: 0, help: 'with --do-sample: only the K most likely tokens; 0: no limit (with --penalty-alpha: the candidates)', libraryDefault: `${FROM_FOLDER} 50`, to: 'generation.top_k' },
  'top-p': { type: 'number', help: 'with --do-sample: only the most likely tokens up to probability X (nucleus)', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.top_p' },
  'min-p': { type: 'number', help: 'with --do-sample: tokens less likely than X times the most likely one are dropped (0 <= X <= 1)', libraryDefault: `${FROM_FOLDER} off`, to: 'generation.min_p' },
  'typical-p': { type: 'number', help: 'with --do-sample: locally typical sampling, the most typical tokens up to probability X', libraryDefault: `${FROM_FOLDER} 1`, to: 'generation.typical_p' },
  'epsilon-cutoff': { type: 'number', help: 'with --do-sample: tokens less likely than X are dropped (0 < X < 1)', libraryDefault: `${FROM_FOLDER} 0`, to: 'generation.epsilon_cutoff' },
  'eta-cutoff': { type: 'number', help: 'with --do-sample: eta sampling with cutoff X (0 < X < 1)', libraryDefault: `${FROM_FOLDER} 0`, to: 'generation.eta_cutoff' },
  seed: { type: 'int', min: 0, help: 'with --do-sample: seed of the draws, so that a run repeats', libraryDefault: 'a fresh one each run', to: 'seed' },
  'batch-size': { type: 'int', min: 1, help: 'inputs per generate call with --data', libraryDefault: String(DEFAULT_BATCH_SIZE), to: 'batchSize' },
  json: { type: 'boolean', help: 'one JSON object per input: sequences [{text, ids, score}], and line with --data' },
  quiet: { type: 'boolean', short: 'q', help: 'no warnings, no progress bars' },
  ...DEVICE_FLAGS,
} satisfies Flags<PredictFileOptions>;

/** The generation flags as HF option names; --num-return-sequences checked against --num-beams here to name both. */
function generationOptions(opts: Partial<PredictFileOptions>): GenerationOptions {
  const g = opts.generation ?? {};
  if (!g.do_sample && g.num_return_sequences !== undefined && g.num_beams !== undefined && g.num_return_sequences > g.num_beams) {
    throw new Error(`predict: --num-return-sequences ${g.num_return_sequences} is more than --num-beams ${g.num_beams}`);
  }
  return g;
}

/** Generation errors use HF's option names (`num_return_sequences`); the user typed --num-return-sequences. An
 * option with no flag (`stop_strings` from a generation_config.json) keeps its HF name. */
function withFlagNames(e: unknown): Error {
  const err = e as Error;
  const msg = (err.message ?? String(e)).replace(/`([a-z_]+)`/g, (all, name: string) => {
    const flag = name.replace(/_/g, '-');
    return flag in PREDICT_FLAGS ? `--${flag}` : all;
  });
  return new Error(msg.startsWith('predict:') ? msg : `predict: ${msg}`);
}

/** A bare `--early-stopping` (the issue's spelling of the tutorial's default) means `--early-stopping true`. */
function bareEarlyStopping(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--early-stopping' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('-')) ? `${a}=true` : a));
}

export async function predictCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('predict', USAGE, PREDICT_FLAGS, bareEarlyStopping(argv));
  if (!parsed) return;
  const { values } = parsed;
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
  const mapped = flagOptions<PredictFileOptions>(PREDICT_FLAGS, values);
  const generation = generationOptions(mapped);
  const quiet = values.quiet;
  const warn = (m: string): void => {
    if (!quiet) process.stderr.write(`${withFlagNames(new Error(`warning: ${m}`)).message}\n`);
  };

  // before the model, which may be a download from the Hub: a mistyped path should not wait for it
  if (values.data !== undefined) {
    await checkReadable(values.data);
    outputFormatOf(values.output!);
    await checkOutputPath(values.output!);
  }
  await openDevice(values);
  let loaded;
  try {
    loaded = await loadModelForCli(values.model, { quiet });
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    throw new Error(msg.startsWith('--model') ? `predict: ${msg}` : `predict: --model ${values.model}: ${msg}`);
  }
  const { model, tokenizer, dir, preprocess } = loaded;
  if (values['bad-words'] !== undefined) {
    try {
      generation.bad_words_ids = badWordsIds(tokenizer, values['bad-words'].split(','), preprocess);
    } catch (e) {
      model.dispose();
      throw new Error(`${(e as Error).message.replace(/^predict: bad word/, 'predict: --bad-words: word')}`);
    }
  }
  const common = { modelDir: dir, generation, preprocess: preprocess ?? null, onWarning: warn, seed: mapped.seed };
  try {
    if (values.data !== undefined) {
      const result = await predictFile({
        ...common,
        model,
        tokenizer,
        data: values.data,
        output: values.output!,
        batchSize: mapped.batchSize,
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
