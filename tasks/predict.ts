// Answers from a trained T5, as the tutorial produces them: a (context, question) pair encoded as
// `tokenizer(context, question, max_length=512, truncation='only_first')`, Hugging Face's generate() (greedy or
// beam search, generate/generate.ts), decoded with special tokens skipped. One input (predictOne), or a whole CSV
// file streamed in batches into a CSV or JSONL file written atomically (predictFile).
//
// Settings, later ones winning: HF's generation defaults, the tutorial's (num_beams 4, no_repeat_ngram_size 2,
// early_stopping true; each only where the model folder's generation_config.json gives no value), the folder's
// file, then the caller's options. The text cleaning stored with a trained model (t5_webgpu.json: lowercasing,
// whitespace collapsing) is applied to every input, so predictions see text as training did.
import { stat } from 'node:fs/promises';
import { basename, dirname, extname } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { csvRecord } from '../util/csv-write.ts';
import { generateIds, padBatch } from '../generate/generate.ts';
import { resolveGenerationConfig, type GenerationOptions, type ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { ProgressBar } from '../util/progress.ts';
import { loadT5WebgpuSettings } from '../hf/hf-folder.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { streamQaCsv, type CsvReport, type QaCsvOptions } from './csv-data.ts';
import { cleanText, type PreprocessConfig } from '../util/text-clean.ts';

/** The tutorial's generate() arguments, used where the model folder sets none. */
export const TUTORIAL_GENERATION_DEFAULTS = { num_beams: 4, no_repeat_ngram_size: 2, early_stopping: true } as const;
/** The tutorial's `max_length=512` for the source, with only_first truncation. */
export const DEFAULT_MAX_INPUT_LENGTH = 512;
export const DEFAULT_BATCH_SIZE = 16;

export type PredictInput = { context: string; question: string } | { input: string };

export interface PredictOptions {
  /** The folder the model came from: its generation_config.json (or config.json) and t5_webgpu.json apply. */
  modelDir?: string;
  /** The folder's generation settings already read (a web page fetches generation_config.json); used instead of
   * reading modelDir's. `file` names them in errors. */
  generationFile?: { config: Record<string, unknown>; file: string };
  /** Generation options with HF's names; they override the folder's and the tutorial's defaults. */
  generation?: GenerationOptions;
  /**
   * Text cleaning for the inputs. Default: the one stored in modelDir's t5_webgpu.json, none without it (text
   * used as given, as HF does); null: none even when the folder has one.
   */
  preprocess?: PreprocessConfig | null;
  /** Source length limit, `</s>` included; the context is cut first (only_first). Default 512. */
  maxInputLength?: number;
  /** HF's generation warnings (a beam option with num_beams 1, the default max_length, ...); default dropped. */
  onWarning?: (message: string) => void;
  /** Seed of the draws when sampling (`do_sample`), so that a run repeats itself; default: a fresh one per call. */
  seed?: number;
}

export interface PredictedSequence {
  /** Decoded with special tokens skipped. */
  text: string;
  /** As HF's generate() returns them: the decoder start token first, up to and including `</s>` (no padding). */
  ids: number[];
  /**
   * Sum of the token log-probabilities (up to and including `</s>`) divided by generated length **
   * length_penalty: HF's `sequences_scores` for beam search; the same formula over the greedy tokens (length_penalty
   * 1 unless given) for greedy search, where HF has no sequence score.
   */
  score: number;
}

export interface Prediction {
  /** num_return_sequences of them: best first from a search, in draw order when sampling. */
  sequences: PredictedSequence[];
}

export interface PredictSettings {
  generation: ResolvedGenerationConfig;
  preprocess?: PreprocessConfig;
  maxInputLength: number;
  /** Sampling's seed (PredictOptions.seed). */
  seed?: number;
}

/** Merges the defaults, the folder's files and the options (see the file comment); throws naming a bad option. */
export async function resolvePredictSettings(
  model: T5ForConditionalGeneration,
  options: PredictOptions = {},
): Promise<PredictSettings> {
  const maxInputLength = options.maxInputLength ?? DEFAULT_MAX_INPUT_LENGTH;
  if (!Number.isSafeInteger(maxInputLength) || maxInputLength < 2) {
    throw new Error(`predict: the maximum input length must be an integer >= 2 (room for the two </s> of a pair), got ${maxInputLength}`);
  }
  const c = model.config;
  const { config: fileConfig, file } = options.generationFile
    ? options.generationFile
    : options.modelDir
    ? await readGenerationConfigFile(options.modelDir)
    : { config: { decoder_start_token_id: c.decoder_start_token_id, eos_token_id: c.eos_token_id, pad_token_id: c.pad_token_id }, file: 'config' };
  const given = options.generation ?? {};
  const has = (key: keyof typeof TUTORIAL_GENERATION_DEFAULTS): boolean =>
    given[key] !== undefined || fileConfig[key] !== undefined;
  const tutorial: GenerationOptions = {};
  // sampling draws from one sequence per row, and contrastive search (penalty_alpha) is a one-beam mode: the
  // tutorial's beams only for neither
  const sampling = (given.do_sample ?? fileConfig.do_sample) === true;
  const alpha = given.penalty_alpha ?? (fileConfig.penalty_alpha as number | null | undefined);
  const contrastive = typeof alpha === 'number' && alpha > 0;
  if (!has('num_beams')) tutorial.num_beams = sampling || contrastive ? 1 : TUTORIAL_GENERATION_DEFAULTS.num_beams;
  if (!has('no_repeat_ngram_size')) tutorial.no_repeat_ngram_size = TUTORIAL_GENERATION_DEFAULTS.no_repeat_ngram_size;
  // early_stopping only means something to beam search: with num_beams 1 HF would warn about it.
  const beams = given.num_beams ?? (fileConfig.num_beams as number | undefined) ?? tutorial.num_beams;
  if (!has('early_stopping') && beams !== 1) tutorial.early_stopping = TUTORIAL_GENERATION_DEFAULTS.early_stopping;
  const generation = resolveGenerationConfig(fileConfig, { ...tutorial, ...given }, file);
  for (const w of generation.warnings) options.onWarning?.(w);

  let preprocess: PreprocessConfig | undefined;
  if (options.preprocess !== undefined) preprocess = options.preprocess ?? undefined;
  else if (options.modelDir) preprocess = loadT5WebgpuSettings(options.modelDir).preprocess;
  return { generation, preprocess, maxInputLength, ...(options.seed !== undefined ? { seed: options.seed } : {}) };
}

/**
 * `bad_words_ids` for words or phrases, as HF's docs make them (`tokenizer(bad_words, add_special_tokens=False)
 * .input_ids`), after the same cleaning as the inputs (a model trained on lowercased text answers in lowercase).
 * SentencePiece marks a word's start, so a word is banned where it starts a word, not inside a longer one.
 */
export function badWordsIds(tokenizer: T5Tokenizer, words: readonly string[], preprocess?: PreprocessConfig | null): number[][] {
  return words.map((word, i) => {
    if (isBlank(word)) throw new Error(`predict: bad word ${i + 1} of ${words.length} is empty`);
    return tokenizer.textToIds(clean(word.trim(), preprocess ?? undefined));
  });
}

/** The text the model sees: the stored cleaning, without `fillNa` (an empty input is refused before). */
function clean(text: string, preprocess: PreprocessConfig | undefined): string {
  return preprocess ? cleanText(text, { ...preprocess, fillNa: false }) : text;
}

const isBlank = (s: unknown): boolean => typeof s !== 'string' || s.trim() === '';

/** Source ids of one input; throws naming the empty field (`--context`, `--question`, `--input`). */
export function encodeInput(tokenizer: T5Tokenizer, input: PredictInput, settings: PredictSettings): number[] {
  const maxLength = settings.maxInputLength;
  if ('input' in input) {
    if (isBlank(input.input)) throw new Error('predict: --input must not be empty');
    return tokenizer.encode(clean(input.input, settings.preprocess), { maxLength });
  }
  if (isBlank(input.context)) throw new Error('predict: --context must not be empty');
  if (isBlank(input.question)) throw new Error('predict: --question must not be empty');
  return tokenizer.encodePair(clean(input.context, settings.preprocess), clean(input.question, settings.preprocess), { maxLength });
}

/** Predictions for already encoded sources, in order. */
export async function predictEncoded(
  model: T5ForConditionalGeneration,
  tokenizer: T5Tokenizer,
  sources: number[][],
  settings: PredictSettings,
): Promise<Prediction[]> {
  if (sources.length === 0) return [];
  const config = settings.generation;
  const out = await generateIds(model, padBatch(sources, config.padTokenId ?? 0), config, { sequenceScores: true, seed: settings.seed });
  // HF pads the sequences to the longest; a prediction ends at its first </s>.
  const eos = new Set(config.eosTokenIds);
  const k = config.numReturnSequences;
  return sources.map((_, b) => ({
    sequences: Array.from({ length: k }, (_, j) => {
      const row = out.sequences[b * k + j]!;
      const end = row.findIndex((id, t) => t > 0 && eos.has(id));
      const ids = end < 0 ? row.slice() : row.slice(0, end + 1);
      return { text: tokenizer.decode(ids, { skipSpecialTokens: true }), ids, score: out.sequencesScores![b * k + j]! };
    }),
  }));
}

/** The answer(s) for one input. */
export async function predictOne(
  model: T5ForConditionalGeneration,
  tokenizer: T5Tokenizer,
  input: PredictInput,
  options: PredictOptions = {},
): Promise<Prediction> {
  const settings = await resolvePredictSettings(model, options);
  const [prediction] = await predictEncoded(model, tokenizer, [encodeInput(tokenizer, input, settings)], settings);
  return prediction!;
}

// ---------------------------------------------------------------------------------------------------------------
// Files

export type OutputFormat = 'csv' | 'jsonl';

/** csv or jsonl from the file name; throws naming --output otherwise. */
export function outputFormatOf(output: string): OutputFormat {
  const ext = extname(output).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  throw new Error(`predict: --output ${output}: the name must end in .csv or .jsonl (the format is chosen by it)`);
}

export interface PredictedRow extends Prediction {
  /** 1-based line of the record in the input file. */
  line: number;
  context: string;
  question: string;
  /** The answer column's cell when the file has one (undefined when that cell is empty). */
  text?: string;
}

export interface PredictFileOptions extends PredictOptions {
  model: T5ForConditionalGeneration;
  tokenizer: T5Tokenizer;
  /** CSV with `context` and `question` columns (names from the stored preprocessing), `text` optional. */
  data: string;
  /** .csv or .jsonl; written atomically (temp file + rename) once every row is done. */
  output: string;
  /** Inputs per generate() call; default 16. */
  batchSize?: number;
  /** Bad CSV rows (wrong cell count, unbalanced quote): 'skip' (default; counted in the result) or 'error'. */
  onBadRow?: 'skip' | 'error';
  /** Only the first `limit` usable rows. */
  limit?: number;
  /** Called once per input, in file order, as predictions are made. */
  onPrediction?: (row: PredictedRow) => void;
  /** A progress bar on stderr when stderr is a terminal (default false). */
  progress?: boolean;
}

export interface PredictFileResult {
  output: string;
  format: OutputFormat;
  rows: number;
  /** The input file's report: header, bad rows skipped. */
  report: CsvReport;
  settings: PredictSettings;
}

function checkPositive(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new Error(`predict: ${name} must be a positive integer, got ${v}`);
}

/** --output's folder exists and the name is not a folder (checked again by predictFile; the CLI checks first, so that a
 * mistyped path does not wait for the model). */
export async function checkOutputPath(output: string): Promise<void> {
  const dir = dirname(output);
  const d = await stat(dir).catch(() => undefined);
  if (!d?.isDirectory()) throw new Error(`predict: --output ${output}: the folder ${dir} does not exist`);
  const o = await stat(output).catch(() => undefined);
  if (o?.isDirectory()) throw new Error(`predict: --output ${output} is a folder; give a file name ending in .csv or .jsonl`);
}

function csvHeader(hasText: boolean, k: number): string[] {
  const cols = ['line', 'context', 'question'];
  if (hasText) cols.push('text');
  for (let j = 1; j <= k; j++) cols.push(j === 1 ? 'prediction' : `prediction_${j}`, j === 1 ? 'score' : `score_${j}`);
  return cols;
}

function formatRow(format: OutputFormat, row: PredictedRow, hasText: boolean): string {
  if (format === 'jsonl') {
    const rec: Record<string, unknown> = { line: row.line, context: row.context, question: row.question };
    if (hasText) rec.text = row.text ?? null;
    rec.prediction = row.sequences[0]!.text;
    rec.sequences = row.sequences;
    return `${JSON.stringify(rec)}\n`;
  }
  const fields: (string | number)[] = [row.line, row.context, row.question];
  if (hasText) fields.push(row.text ?? '');
  for (const s of row.sequences) fields.push(s.text, s.score);
  return csvRecord(fields);
}

/**
 * Predicts every row of a CSV file, `batchSize` rows at a time: the file is read as a stream and only one batch
 * is held, so its size is not limited by memory. Writes CSV (line, context, question, text when the file has
 * it, prediction, score, then prediction_N/score_N for further return sequences) or JSONL (line, context,
 * question, text, prediction, sequences [{text, ids, score}]) in file order; the output appears only when
 * complete (a failure leaves no partial file and no temp file).
 */
export async function predictFile(opts: PredictFileOptions): Promise<PredictFileResult> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  checkPositive('--batch-size', batchSize);
  checkPositive('limit', opts.limit);
  const format = outputFormatOf(opts.output);
  await checkOutputPath(opts.output);
  const settings = await resolvePredictSettings(opts.model, opts);
  const pre = settings.preprocess;
  // Without stored cleaning the text is used as given; a blank cell still becomes "none", as the tutorial's fillna.
  const csvOptions: QaCsvOptions & { requireAnswer: false } = pre
    ? { ...pre, requireAnswer: false, onBadRow: opts.onBadRow, limit: opts.limit }
    : { fillNa: true, collapseWhitespace: false, lowercase: false, requireAnswer: false, onBadRow: opts.onBadRow, limit: opts.limit };

  let bar: ProgressBar | undefined;
  if (opts.progress && process.stderr.isTTY) {
    // A first pass counts the rows for the bar: parsing is cheap next to generation.
    let total = 0;
    for await (const _ of streamQaCsv(opts.data, csvOptions)) total++;
    bar = new ProgressBar({ label: `predict ${basename(opts.data)}`, total, rate: (r) => `${r.toFixed(2)} rows/s` });
    bar.update(0);
  }

  const stream = streamQaCsv(opts.data, csvOptions);
  let rows = 0;
  const k = settings.generation.numReturnSequences;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    let headerDone = false;
    let hasText = false;
    let batch: { line: number; context: string; question: string; text?: string; ids: number[] }[] = [];
    let batches = 0;
    const flush = async (): Promise<Uint8Array> => {
      // a seeded sampling run gives each batch its own stream (the seed mixed with the batch number), so that
      // rows in the same place of two batches do not draw the same numbers
      const seed = settings.seed === undefined ? undefined : (settings.seed ^ Math.imul(++batches, 0x9e3779b1)) >>> 0;
      const preds = await predictEncoded(opts.model, opts.tokenizer, batch.map((r) => r.ids), { ...settings, seed });
      let out = '';
      batch.forEach((r, i) => {
        const row: PredictedRow = { line: r.line, context: r.context, question: r.question, sequences: preds[i]!.sequences };
        if (r.text !== undefined) row.text = r.text;
        opts.onPrediction?.(row);
        out += formatRow(format, row, hasText);
      });
      rows += batch.length;
      batch = [];
      bar?.update(rows);
      return Buffer.from(out, 'utf8');
    };
    for await (const r of stream) {
      if (!headerDone) {
        // The header is known once the first row is read.
        hasText = stream.report.hasAnswers;
        headerDone = true;
        if (format === 'csv') yield Buffer.from(csvRecord(csvHeader(hasText, k)), 'utf8');
      }
      // The reader already cleaned the cells with the stored settings; no second pass here.
      const ids = opts.tokenizer.encodePair(r.context, r.question, { maxLength: settings.maxInputLength });
      batch.push({ line: r.line, context: r.context, question: r.question, text: r.answer, ids });
      if (batch.length >= batchSize) yield await flush();
    }
    if (batch.length > 0) yield await flush();
  }
  try {
    await writeFileAtomic(opts.output, chunks());
  } finally {
    bar?.done();
  }
  return { output: opts.output, format, rows, report: stream.report, settings };
}
