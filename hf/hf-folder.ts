// A Hugging Face model folder, apart from the weights: the files `T5ForConditionalGeneration.save_pretrained`
// and the slow `T5Tokenizer.save_pretrained` (transformers 4.36) write, written byte for byte as they do, so that
// `from_pretrained` loads our folders without warnings. HF's parameter names are model/parameters.ts's, the rules
// for matching a checkpoint against them hf/checkpoint-match.ts's.
//
// A folder holds:
//   config.json               model shape (config.ts)
//   generation_config.json    generate() defaults: token ids, plus any beam options given (generate/generation-config-file.ts)
//   tokenizer_config.json     T5Tokenizer's init arguments (legacy: true, extra_ids, added_tokens_decoder, ...)
//   special_tokens_map.json   eos/unk/pad and the <extra_id_N> list
//   spiece.model              the SentencePiece model, copied
//   model.safetensors         weights (written by the caller with writeSafetensors)
//   t5_webgpu.json            ours, not HF's: the text cleaning the model was trained with (see below). HF never
//                             opens it, so HF's own files stay exactly as HF writes them.
import { readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { CONFIG_FILE, describeValue, isPlainObject, pythonJsonDumps, readJsonFile, serializeT5Config, type T5Config } from '../model/config.ts';
import type { GenerationOptions } from '../generate/generation-config.ts';
import { GENERATION_CONFIG_FILE, generationConfigFromModel, serializeGenerationConfig } from '../generate/generation-config-file.ts';
import { parseSentencePieceModel } from './spiece-model-proto.ts';
import { parsePreprocessConfig, type PreprocessConfig } from '../util/text-clean.ts';

export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const SPECIAL_TOKENS_MAP_FILE = 'special_tokens_map.json';
export const SPIECE_FILE = 'spiece.model';
export const T5_WEBGPU_FILE = 't5_webgpu.json';

// ---------------------------------------------------------------------------------------------------------------
// tokenizer_config.json and special_tokens_map.json

export interface TokenizerFiles {
  /** Pieces in spiece.model; the sentinels take ids pieceCount .. pieceCount + extraIds - 1. */
  pieceCount: number;
  /** The texts of pieces 0, 1, 2 (T5: <pad>, </s>, <unk>). */
  padToken: string;
  eosToken: string;
  unkToken: string;
  extraIds: number;
  modelMaxLength: number;
}

/** What tokenizer_config.json needs, from the SentencePiece model file. */
export function tokenizerFilesFor(spieceModel: string, opts: { extraIds?: number; modelMaxLength?: number } = {}): TokenizerFiles {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(spieceModel);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${spieceModel}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  return tokenizerFilesFromBytes(bytes, spieceModel, opts);
}

/** tokenizerFilesFor on the model's bytes; `spieceModel` names them in errors. */
export function tokenizerFilesFromBytes(bytes: Uint8Array, spieceModel: string, opts: { extraIds?: number; modelMaxLength?: number } = {}): TokenizerFiles {
  const { pieces } = parseSentencePieceModel(bytes, spieceModel);
  if (pieces.length < 3) throw new Error(`${spieceModel}: ${pieces.length} pieces; a T5 model has at least <pad>, </s>, <unk>`);
  const extraIds = opts.extraIds ?? 100;
  const modelMaxLength = opts.modelMaxLength ?? 512;
  if (!Number.isSafeInteger(extraIds) || extraIds < 0) throw new Error(`extraIds must be a non-negative integer, got ${extraIds}`);
  if (!Number.isSafeInteger(modelMaxLength) || modelMaxLength < 1) throw new Error(`modelMaxLength must be a positive integer, got ${modelMaxLength}`);
  return {
    pieceCount: pieces.length,
    padToken: pieces[0]!.piece,
    eosToken: pieces[1]!.piece,
    unkToken: pieces[2]!.piece,
    extraIds,
    modelMaxLength,
  };
}

const addedToken = (content: string, strip: boolean): Record<string, unknown> => ({
  content,
  lstrip: strip,
  normalized: false,
  rstrip: strip,
  single_word: false,
  special: true,
});

/**
 * tokenizer_config.json as the slow T5Tokenizer(vocab_file, legacy=True, model_max_length=512).save_pretrained
 * writes it in 4.36: its init kwargs (eos/unk/pad as strings, extra_ids, the sentinel list, sp_model_kwargs,
 * legacy), model_max_length, clean_up_tokenization_spaces, tokenizer_class, and added_tokens_decoder (ids sorted
 * as ints): pad/eos/unk from the vocabulary, and the sentinels with lstrip/rstrip true as T5Tokenizer makes them.
 * `legacy: true` is stated so that HF does not warn, and because it is the behaviour hf/tokenizer.ts has.
 */
export function serializeTokenizerConfig(t: TokenizerFiles): string {
  const decoder = new Map<number, Record<string, unknown>>([
    [0, addedToken(t.padToken, false)],
    [1, addedToken(t.eosToken, false)],
    [2, addedToken(t.unkToken, false)],
  ]);
  for (let n = 0; n < t.extraIds; n++) decoder.set(t.pieceCount + t.extraIds - 1 - n, addedToken(`<extra_id_${n}>`, true));
  return pythonJsonDumps({
    added_tokens_decoder: decoder,
    additional_special_tokens: sentinels(t.extraIds),
    clean_up_tokenization_spaces: true,
    eos_token: t.eosToken,
    extra_ids: t.extraIds,
    legacy: true,
    model_max_length: t.modelMaxLength,
    pad_token: t.padToken,
    sp_model_kwargs: {},
    tokenizer_class: 'T5Tokenizer',
    unk_token: t.unkToken,
  }, { ensureAscii: false });
}

/** special_tokens_map.json: the sentinels as strings, eos/unk/pad as AddedToken states without "special". */
export function serializeSpecialTokensMap(t: TokenizerFiles): string {
  const tok = (content: string): Record<string, unknown> => {
    const { special: _, ...rest } = addedToken(content, false);
    return rest;
  };
  return pythonJsonDumps({
    additional_special_tokens: sentinels(t.extraIds),
    eos_token: tok(t.eosToken),
    pad_token: tok(t.padToken),
    unk_token: tok(t.unkToken),
  }, { ensureAscii: false });
}

const sentinels = (n: number): string[] => Array.from({ length: n }, (_, i) => `<extra_id_${i}>`);

export interface TokenizerConfig {
  extraIds: number;
  /** HF's default when absent is VERY_LARGE_INTEGER; we report null. */
  modelMaxLength: number | null;
  /** HF's default when absent is true (with a warning). hf/tokenizer.ts implements legacy behaviour only. */
  legacy: boolean;
  tokenizerClass: string | null;
  /** clean_up_tokenization_spaces; absent: false (transformers >= 4.45; our own folders say true, as 4.36 wrote) */
  cleanUpTokenizationSpaces: boolean;
}

/** The parts of tokenizer_config.json our tokenizer uses; a missing file gives T5Tokenizer's defaults. */
export function loadTokenizerConfig(dir: string): TokenizerConfig {
  const file = join(dir, TOKENIZER_CONFIG_FILE);
  const out: TokenizerConfig = { extraIds: 100, modelMaxLength: null, legacy: true, tokenizerClass: null, cleanUpTokenizationSpaces: false };
  if (!isFile(file)) return out;
  const json = readJsonFile(file);
  const fail = (key: string, what: string): never => {
    throw new Error(`${file}: "${key}" ${what}`);
  };
  if (!isPlainObject(json)) throw new Error(`${file}: expected a JSON object, got ${describeValue(json)}`);
  if (json.extra_ids !== undefined) {
    if (typeof json.extra_ids !== 'number' || !Number.isSafeInteger(json.extra_ids) || json.extra_ids < 0) fail('extra_ids', `must be a non-negative integer, got ${describeValue(json.extra_ids)}`);
    out.extraIds = json.extra_ids as number;
  }
  if (json.model_max_length !== undefined && json.model_max_length !== null) {
    if (typeof json.model_max_length !== 'number' || json.model_max_length < 1) fail('model_max_length', `must be a positive integer, got ${describeValue(json.model_max_length)}`);
    // HF writes int(1e30) when unset; anything past 2^53 means "no limit".
    out.modelMaxLength = Number.isSafeInteger(json.model_max_length) ? (json.model_max_length as number) : null;
  }
  if (json.legacy !== undefined && json.legacy !== null) {
    if (typeof json.legacy !== 'boolean') fail('legacy', `must be true or false, got ${describeValue(json.legacy)}`);
    out.legacy = json.legacy as boolean;
  }
  if (typeof json.tokenizer_class === 'string') out.tokenizerClass = json.tokenizer_class;
  if (json.clean_up_tokenization_spaces !== undefined && json.clean_up_tokenization_spaces !== null) {
    if (typeof json.clean_up_tokenization_spaces !== 'boolean') fail('clean_up_tokenization_spaces', `must be true or false, got ${describeValue(json.clean_up_tokenization_spaces)}`);
    out.cleanUpTokenizationSpaces = json.clean_up_tokenization_spaces as boolean;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// t5_webgpu.json: our own settings, kept out of HF's files
//
// {
//   "format": "t5-webgpu",
//   "version": 1,
//   "preprocess": { "version": 1, "fillNa": true, "collapseWhitespace": true, "lowercase": true,
//                   "contextColumn": "context", "questionColumn": "question", "answerColumn": "text" }
// }
// `preprocess` is tasks/csv-data.ts's PreprocessConfig, validated by its parsePreprocessConfig: predict and
// score must clean their input exactly as training did. A folder without the file (any HF checkpoint) has no
// recorded cleaning: callers then use raw text (HF's behaviour). Unknown keys are kept and written back.

export interface T5WebgpuSettings {
  preprocess?: PreprocessConfig;
  extra: Record<string, unknown>;
}

export function parseT5WebgpuSettings(json: unknown, fileName: string): T5WebgpuSettings {
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object, got ${describeValue(json)}`);
  if (json.format !== 't5-webgpu') throw new Error(`${fileName}: "format" must be "t5-webgpu", got ${describeValue(json.format)}`);
  if (json.version !== 1) throw new Error(`${fileName}: "version" ${describeValue(json.version)} is not supported (expected 1; written by a newer t5-webgpu?)`);
  const out: T5WebgpuSettings = { extra: {} };
  for (const [k, v] of Object.entries(json)) {
    if (k === 'format' || k === 'version') continue;
    if (k === 'preprocess') {
      // parsePreprocessConfig's messages name the source; say which key too.
      out.preprocess = parsePreprocessConfig(v, `${fileName}: "preprocess"`);
    } else {
      out.extra[k] = v;
    }
  }
  return out;
}

export function serializeT5WebgpuSettings(s: T5WebgpuSettings): string {
  return pythonJsonDumps({ ...s.extra, format: 't5-webgpu', version: 1, preprocess: s.preprocess }, { ensureAscii: false });
}

/** Write (atomically) t5_webgpu.json into an existing folder. */
export async function writeT5WebgpuSettings(dir: string, settings: T5WebgpuSettings): Promise<string> {
  const file = join(dir, T5_WEBGPU_FILE);
  await writeFileAtomic(file, serializeT5WebgpuSettings(settings));
  return file;
}

/** t5_webgpu.json of a folder; a missing file (any folder HF wrote) gives no settings. */
export function loadT5WebgpuSettings(dir: string): T5WebgpuSettings {
  const file = join(dir, T5_WEBGPU_FILE);
  if (!isFile(file)) return { extra: {} };
  return parseT5WebgpuSettings(readJsonFile(file), file);
}

// ---------------------------------------------------------------------------------------------------------------
// Writing a folder

export interface WriteFolderOptions {
  config: T5Config;
  /** The SentencePiece model to copy in as spiece.model. */
  spieceModel: string;
  generation?: GenerationOptions;
  /** Written to t5_webgpu.json; without it no t5_webgpu.json is written. */
  preprocess?: PreprocessConfig;
  /** Default 100. */
  extraIds?: number;
  /** Default 512 (t5-small's). */
  modelMaxLength?: number;
}

/**
 * Writes every file of the folder except the weights (each atomically), creating the folder. Checks first that
 * the tokenizer fits the model: pieces + extraIds <= vocab_size. Returns the paths written.
 */
export async function writeHfFolderFiles(dir: string, opts: WriteFolderOptions): Promise<string[]> {
  const tok = tokenizerFilesFor(opts.spieceModel, { extraIds: opts.extraIds, modelMaxLength: opts.modelMaxLength });
  const files = hfFolderTextFiles(opts, tok, opts.spieceModel);
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, data] of files) {
    await writeFileAtomic(join(dir, name), data);
    written.push(join(dir, name));
  }
  const spiece = join(dir, SPIECE_FILE);
  if (resolve(opts.spieceModel) !== resolve(spiece)) {
    await writeFileAtomic(spiece, readFileSync(opts.spieceModel));
  }
  written.push(spiece);
  return written;
}

/** The folder's JSON files (names and texts), after checking that the tokenizer fits the model. */
export function hfFolderTextFiles(opts: Omit<WriteFolderOptions, 'spieceModel'>, tok: TokenizerFiles, spieceModel: string): [string, string][] {
  checkTokenizerFits(opts.config, tok, spieceModel);
  const gen = generationConfigFromModel(opts.config, opts.generation);
  const files: [string, string][] = [
    [CONFIG_FILE, serializeT5Config(opts.config)],
    [GENERATION_CONFIG_FILE, serializeGenerationConfig(gen)],
    [TOKENIZER_CONFIG_FILE, serializeTokenizerConfig(tok)],
    [SPECIAL_TOKENS_MAP_FILE, serializeSpecialTokensMap(tok)],
  ];
  if (opts.preprocess) files.push([T5_WEBGPU_FILE, serializeT5WebgpuSettings({ preprocess: opts.preprocess, extra: {} })]);
  return files;
}

/** The pieces and sentinels must have embedding rows; HF would index past the table otherwise. */
export function checkTokenizerFits(cfg: T5Config, tok: { pieceCount: number; extraIds: number }, spieceModel: string): void {
  const need = tok.pieceCount + tok.extraIds;
  if (need > cfg.vocab_size) {
    throw new Error(`${spieceModel}: ${tok.pieceCount} pieces + ${tok.extraIds} <extra_id_N> = ${need} token ids, more than the model's vocab_size ${cfg.vocab_size}`);
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
