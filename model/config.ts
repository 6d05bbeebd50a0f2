// T5Config: the model's shape and options as Hugging Face `config.json` holds them (transformers 4.36
// `T5Config`), validated once at load so that a bad file fails here, in one line naming the file and the key,
// instead of as a shape mismatch deep inside a kernel. Field names are the config.json keys (snake_case), so
// a reader of HF's code and of ours sees the same names.
//
// Writing: serializeT5Config() produces the bytes `T5ForConditionalGeneration.save_pretrained` writes for the
// same values (PretrainedConfig.to_json_string(use_diff=True): sorted keys, indent 2, Python float spelling
// such as 1e-06 and 1.0, non-ASCII escaped). pythonJsonDumps() is that writer, shared with hf-folder.ts.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The transformers version our files claim to come from (the one whose behaviour we reproduce). */
export const TRANSFORMERS_VERSION = '4.36.2';

export const CONFIG_FILE = 'config.json';

/** The activations the model code implements, as HF's (dense_act_fn, is_gated_act) pair. */
export type DenseActFn = 'relu' | 'gelu_new' | 'silu';

/** HF's T5 (T5ForConditionalGeneration) and mT5 (MT5ForConditionalGeneration: the same model, other defaults). */
export type T5ModelType = 't5' | 'mt5';

export interface T5Config {
  model_type: T5ModelType;
  vocab_size: number;
  d_model: number;
  /** Size of one head; num_heads * d_kv need not equal d_model (t5-v1_1-xl/flan-t5 variants differ). */
  d_kv: number;
  d_ff: number;
  num_layers: number;
  /** Defaults to num_layers, as in HF. */
  num_decoder_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  dropout_rate: number;
  classifier_dropout: number;
  layer_norm_epsilon: number;
  initializer_factor: number;
  /** `relu` (T5 v1.0) or `gated-gelu` (T5 v1.1, Flan-T5); dense_act_fn and is_gated_act are derived from it. */
  feed_forward_proj: string;
  /** `relu`, or `gelu_new` (tanh approximation) for gated-gelu, as HF maps it for backward compatibility. */
  dense_act_fn: DenseActFn;
  /** true: wi_0 (activated) * wi_1 (linear) -> wo; false: wi -> act -> wo. */
  is_gated_act: boolean;
  /** Default true: lm_head shares shared.weight, and the decoder output is scaled by d_model^-0.5 first. */
  tie_word_embeddings: boolean;
  /** HF leaves it unset when absent; we default it to pad_token_id, T5's convention (the decoder starts at <pad>). */
  decoder_start_token_id: number;
  pad_token_id: number;
  eos_token_id: number;
  use_cache: boolean;
  /** Every other key of config.json (n_positions, task_specific_params, _name_or_path, ...), kept as read. */
  extra: Record<string, unknown>;
}

export type PresetName = 't5-tiny' | 't5-small' | 't5-base';
export const PRESET_NAMES: readonly PresetName[] = ['t5-tiny', 't5-small', 't5-base'];

/** HF T5Config's defaults (t5-small's architecture), used for keys a file leaves out. */
const HF_DEFAULTS = {
  vocab_size: 32128,
  d_model: 512,
  d_kv: 64,
  d_ff: 2048,
  num_layers: 6,
  num_heads: 8,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  dropout_rate: 0.1,
  classifier_dropout: 0.0,
  layer_norm_epsilon: 1e-6,
  initializer_factor: 1.0,
  feed_forward_proj: 'relu',
  use_cache: true,
  pad_token_id: 0,
  eos_token_id: 1,
  tie_word_embeddings: true,
} as const;

/** MT5Config's defaults where they differ from T5Config's (mt5-small's architecture). */
const MT5_DEFAULTS: Readonly<Record<string, unknown>> = {
  vocab_size: 250112, d_ff: 1024, num_layers: 8, num_heads: 6, feed_forward_proj: 'gated-gelu', tie_word_embeddings: false,
};

/** (feed_forward_proj parse result) -> supported? Each has kernels and a golden test against transformers behind it. */
const SUPPORTED_ACTS: ReadonlyArray<{ proj: string; act: DenseActFn; gated: boolean; what: string }> = [
  { proj: 'relu', act: 'relu', gated: false, what: 'T5 v1.0' },
  { proj: 'gated-gelu', act: 'gelu_new', gated: true, what: 'T5 v1.1 / Flan-T5' },
  { proj: 'gated-silu', act: 'silu', gated: true, what: 'UL2-style' },
  { proj: 'silu', act: 'silu', gated: false, what: 'ungated SiLU' },
  { proj: 'gated-relu', act: 'relu', gated: true, what: 'gated ReLU' },
];

/** HF's attribute_map: a config.json may spell these keys with the generic names. */
const ALIASES: Readonly<Record<string, string>> = {
  hidden_size: 'd_model',
  num_attention_heads: 'num_heads',
  num_hidden_layers: 'num_layers',
};

/** Keys we interpret (typed fields) or regenerate on save; everything else goes to `extra`. */
const KNOWN_KEYS = new Set<string>([
  'model_type', 'vocab_size', 'd_model', 'd_kv', 'd_ff', 'num_layers', 'num_decoder_layers', 'num_heads',
  'relative_attention_num_buckets', 'relative_attention_max_distance', 'dropout_rate', 'classifier_dropout',
  'layer_norm_epsilon', 'initializer_factor', 'feed_forward_proj', 'dense_act_fn', 'is_gated_act',
  'tie_word_embeddings', 'decoder_start_token_id', 'pad_token_id', 'eos_token_id', 'use_cache',
  'architectures', 'torch_dtype', 'transformers_version', 'is_encoder_decoder', ...Object.keys(ALIASES),
]);

// ---------------------------------------------------------------------------------------------------------------
// Parsing

/**
 * Validate a parsed config.json. `fileName` goes into every error: `<file>: "<key>" must be ..., got ...`.
 * Missing keys take HF's T5Config defaults; unknown keys are kept in `extra`.
 */
export function parseT5Config(json: unknown, fileName: string): T5Config {
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object, got ${describeValue(json)}`);
  const r = keyReader({ ...json }, fileName);
  applyAliases(r);
  const model_type = checkModelType(r);
  // a key an mT5 file leaves out takes MT5Config's default (every other default is T5Config's)
  if (model_type === 'mt5') for (const [k, v] of Object.entries(MT5_DEFAULTS)) if (!r.has(k)) r.o[k] = v;
  const sizes = readSizes(r);
  const rates = readRates(r);
  const feedForward = readFeedForward(r, fileName);
  const tokenIds = readTokenIds(r, sizes.vocab_size);
  const tie_word_embeddings = r.bool('tie_word_embeddings', HF_DEFAULTS.tie_word_embeddings);
  const use_cache = r.bool('use_cache', HF_DEFAULTS.use_cache);
  checkSaveKeys(r);
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) if (!KNOWN_KEYS.has(k)) extra[k] = v;
  return { model_type, ...sizes, ...rates, ...feedForward, tie_word_embeddings, ...tokenIds, use_cache, extra };
}

/** Typed reads of one config.json's keys (`o`, aliases resolved; HF's default where a key is absent or null). */
type KeyReader = ReturnType<typeof keyReader>;

function keyReader(o: Record<string, unknown>, fileName: string) {
  const fail = (key: string, what: string): never => {
    throw new Error(`${fileName}: "${key}" ${what}`);
  };
  const has = (key: string): boolean => o[key] !== undefined && o[key] !== null;
  return {
    o,
    fail,
    has,
    int(key: string, dflt: number | undefined, min: number): number {
      const v = has(key) ? o[key] : dflt;
      if (v === undefined) return fail(key, 'is missing');
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) return fail(key, `must be an integer, got ${describeValue(v)}`);
      if (v < min) return fail(key, `must be ${min === 1 ? 'positive' : `>= ${min}`}, got ${v}`);
      return v;
    },
    real(key: string, dflt: number, ok: (x: number) => boolean, range: string): number {
      const v = has(key) ? o[key] : dflt;
      if (typeof v !== 'number' || !Number.isFinite(v)) return fail(key, `must be a number, got ${describeValue(v)}`);
      if (!ok(v)) return fail(key, `must be ${range}, got ${v}`);
      return v;
    },
    bool(key: string, dflt: boolean): boolean {
      const v = has(key) ? o[key] : dflt;
      if (typeof v !== 'boolean') return fail(key, `must be true or false, got ${describeValue(v)}`);
      return v;
    },
  };
}

function applyAliases({ o, fail }: KeyReader): void {
  for (const [alias, key] of Object.entries(ALIASES)) {
    if (!(alias in o)) continue;
    // HF sets the alias after the named key, so the alias wins; two different values are surely a mistake.
    if (key in o && o[key] !== o[alias]) {
      fail(alias, `(HF's name for "${key}") is ${describeValue(o[alias])} but "${key}" is ${describeValue(o[key])}; keep one`);
    }
    o[key] = o[alias];
  }
}

function checkModelType({ o, fail }: KeyReader): T5ModelType {
  if (o.model_type !== 't5' && o.model_type !== 'mt5') {
    return fail('model_type', o.model_type === undefined
      ? 'is missing; a T5 config.json has "model_type": "t5"'
      : `must be "t5" or "mt5", got ${describeValue(o.model_type)} (only T5ForConditionalGeneration and MT5ForConditionalGeneration checkpoints are supported)`);
  }
  return o.model_type;
}

type T5Sizes = Pick<T5Config, 'vocab_size' | 'd_model' | 'd_kv' | 'd_ff' | 'num_layers' | 'num_decoder_layers' | 'num_heads'
  | 'relative_attention_num_buckets' | 'relative_attention_max_distance'>;

function readSizes({ int, fail }: KeyReader): T5Sizes {
  const vocab_size = int('vocab_size', HF_DEFAULTS.vocab_size, 1);
  const d_model = int('d_model', HF_DEFAULTS.d_model, 1);
  const d_kv = int('d_kv', HF_DEFAULTS.d_kv, 1);
  const d_ff = int('d_ff', HF_DEFAULTS.d_ff, 1);
  const num_layers = int('num_layers', HF_DEFAULTS.num_layers, 1);
  const num_decoder_layers = int('num_decoder_layers', num_layers, 1);
  const num_heads = int('num_heads', HF_DEFAULTS.num_heads, 1);
  const relative_attention_num_buckets = int('relative_attention_num_buckets', HF_DEFAULTS.relative_attention_num_buckets, 1);
  const relative_attention_max_distance = int('relative_attention_max_distance', HF_DEFAULTS.relative_attention_max_distance, 1);
  // The encoder splits the buckets in two halves and each half in exact and log buckets: it needs at least one
  // exact bucket per direction (num_buckets >= 4). The decoder's log buckets divide by
  // log(max_distance / (num_buckets // 2)), which must be positive.
  if (relative_attention_num_buckets < 4) {
    fail('relative_attention_num_buckets', `must be at least 4 (T5's bidirectional buckets need one exact bucket per direction), got ${relative_attention_num_buckets}`);
  }
  const maxExact = Math.floor(relative_attention_num_buckets / 2);
  if (relative_attention_max_distance <= maxExact) {
    fail('relative_attention_max_distance', `must exceed relative_attention_num_buckets // 2 = ${maxExact} (the log buckets divide by log(max_distance / ${maxExact})), got ${relative_attention_max_distance}`);
  }
  return {
    vocab_size, d_model, d_kv, d_ff, num_layers, num_decoder_layers, num_heads,
    relative_attention_num_buckets, relative_attention_max_distance,
  };
}

function readRates({ real }: KeyReader): Pick<T5Config, 'dropout_rate' | 'classifier_dropout' | 'layer_norm_epsilon' | 'initializer_factor'> {
  return {
    dropout_rate: real('dropout_rate', HF_DEFAULTS.dropout_rate, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    classifier_dropout: real('classifier_dropout', HF_DEFAULTS.classifier_dropout, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    layer_norm_epsilon: real('layer_norm_epsilon', HF_DEFAULTS.layer_norm_epsilon, (x) => x > 0 && x < 1, 'in (0, 1)'),
    initializer_factor: real('initializer_factor', HF_DEFAULTS.initializer_factor, (x) => x > 0, 'positive'),
  };
}

function readFeedForward({ o, has, fail, bool }: KeyReader, fileName: string): Pick<T5Config, 'feed_forward_proj' | 'dense_act_fn' | 'is_gated_act'> {
  const feed_forward_proj = has('feed_forward_proj') ? o.feed_forward_proj : HF_DEFAULTS.feed_forward_proj;
  if (typeof feed_forward_proj !== 'string') fail('feed_forward_proj', `must be a string such as "relu" or "gated-gelu", got ${describeValue(feed_forward_proj)}`);
  const { act, gated } = parseFeedForwardProj(feed_forward_proj as string, fileName);
  // HF's T5Config derives dense_act_fn/is_gated_act from feed_forward_proj, then PretrainedConfig sets every
  // remaining config.json key as an attribute: values stored in the file win. Flan-T5 files store both.
  let dense_act_fn: string = act;
  let is_gated_act = gated;
  if (has('dense_act_fn')) {
    if (typeof o.dense_act_fn !== 'string') fail('dense_act_fn', `must be a string, got ${describeValue(o.dense_act_fn)}`);
    dense_act_fn = o.dense_act_fn as string;
  }
  if (has('is_gated_act')) is_gated_act = bool('is_gated_act', gated);
  const supported = SUPPORTED_ACTS.find((s) => s.act === dense_act_fn && s.gated === is_gated_act);
  if (!supported) {
    const key = dense_act_fn !== act ? 'dense_act_fn' : 'is_gated_act';
    fail(key, `is ${describeValue(o[key])}, which with "feed_forward_proj": ${describeValue(feed_forward_proj)} gives ${is_gated_act ? 'a gated' : 'an ungated'} ${dense_act_fn} feed-forward; supported: ${SUPPORTED_ACTS.map((s) => `${s.gated ? 'gated' : 'ungated'} ${s.act} (${s.proj})`).join(', ')}`);
  }
  return { feed_forward_proj: feed_forward_proj as string, dense_act_fn: dense_act_fn as DenseActFn, is_gated_act };
}

function readTokenIds({ o, int, fail }: KeyReader, vocab_size: number): Pick<T5Config, 'decoder_start_token_id' | 'pad_token_id' | 'eos_token_id'> {
  const pad_token_id = int('pad_token_id', HF_DEFAULTS.pad_token_id, 0);
  if (Array.isArray(o.eos_token_id)) fail('eos_token_id', `must be one integer (T5 has one </s>), got a list ${JSON.stringify(o.eos_token_id)}`);
  const eos_token_id = int('eos_token_id', HF_DEFAULTS.eos_token_id, 0);
  const decoder_start_token_id = int('decoder_start_token_id', pad_token_id, 0);
  for (const [key, id] of [['pad_token_id', pad_token_id], ['eos_token_id', eos_token_id], ['decoder_start_token_id', decoder_start_token_id]] as const) {
    if (id >= vocab_size) fail(key, `is ${id}, outside the vocabulary (vocab_size ${vocab_size})`);
  }
  return { decoder_start_token_id, pad_token_id, eos_token_id }; // T5Config's key order
}

/** Keys we do not keep but save_pretrained regenerates: refused when they cannot be what HF writes. */
function checkSaveKeys({ o, has, fail }: KeyReader): void {
  if (has('is_encoder_decoder') && o.is_encoder_decoder !== true) {
    fail('is_encoder_decoder', `must be true for T5ForConditionalGeneration, got ${describeValue(o.is_encoder_decoder)}`);
  }
  for (const key of ['architectures', 'torch_dtype', 'transformers_version']) {
    if (key === 'architectures' && has(key) && !(Array.isArray(o[key]) && (o[key] as unknown[]).every((a) => typeof a === 'string'))) {
      fail(key, `must be a list of class names, got ${describeValue(o[key])}`);
    }
    if (key !== 'architectures' && has(key) && typeof o[key] !== 'string') fail(key, `must be a string, got ${describeValue(o[key])}`);
  }
}

/**
 * HF's parse of feed_forward_proj: `ACT` or `gated-ACT`; anything else is HF's ValueError. `gated-gelu` maps to
 * gelu_new (HF's backward-compatibility rule). Unsupported activations are refused naming the key and value.
 */
export function parseFeedForwardProj(value: string, fileName: string): { act: DenseActFn; gated: boolean } {
  const parts = value.split('-');
  if ((parts.length > 1 && parts[0] !== 'gated') || parts.length > 2) {
    throw new Error(`${fileName}: "feed_forward_proj" is "${value}", not of the form "ACT" or "gated-ACT" (e.g. "relu", "gated-gelu")`);
  }
  const gated = parts[0] === 'gated';
  const act = value === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1]!;
  const s = SUPPORTED_ACTS.find((x) => x.act === act && x.gated === gated);
  if (!s) {
    throw new Error(`${fileName}: "feed_forward_proj" is "${value}", which this engine does not implement; supported: ${SUPPORTED_ACTS.map((x) => `"${x.proj}" (${x.what})`).join(', ')}`);
  }
  return { act: s.act, gated };
}

/** Read and validate `config.json` in a model folder (or a config file given directly). Synchronous: it is small. */
export function loadT5Config(dirOrFile: string): T5Config {
  let file = dirOrFile;
  try {
    if (statSync(dirOrFile).isDirectory()) file = join(dirOrFile, CONFIG_FILE);
  } catch {
    // reported below as a missing file
  }
  return parseT5Config(readJsonFile(file), file);
}

/** JSON.parse of a file, with one-line errors naming it. */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a folder, expected a JSON file' : e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Presets

/**
 * Architectures to train from scratch. t5-small and t5-base are HF's configs for those checkpoints (vocab 32128);
 * t5-tiny is the shipped demo's model (the golden fixture's shape but 32 buckets / max distance 128 as t5-small),
 * whose vocab_size must come from the tokenizer (see t5VocabSize).
 */
export function presetConfig(name: string, opts: { vocabSize?: number } = {}): T5Config {
  const arch: Record<PresetName, Partial<T5Config>> = {
    't5-tiny': { d_model: 64, d_kv: 16, num_heads: 4, d_ff: 128, num_layers: 2, num_decoder_layers: 2 },
    't5-small': { d_model: 512, d_kv: 64, num_heads: 8, d_ff: 2048, num_layers: 6, num_decoder_layers: 6 },
    't5-base': { d_model: 768, d_kv: 64, num_heads: 12, d_ff: 3072, num_layers: 12, num_decoder_layers: 12 },
  };
  if (!(PRESET_NAMES as readonly string[]).includes(name)) {
    throw new Error(`unknown preset "${name}" (known: ${PRESET_NAMES.join(', ')}; or give a config.json)`);
  }
  const preset = name as PresetName;
  if (preset === 't5-tiny' && opts.vocabSize === undefined) {
    throw new Error('preset t5-tiny: vocabSize is required (it comes from the tokenizer: see t5VocabSize)');
  }
  const vocab_size = opts.vocabSize ?? HF_DEFAULTS.vocab_size;
  if (!Number.isSafeInteger(vocab_size) || vocab_size < 3) {
    throw new Error(`preset ${preset}: vocabSize must be an integer >= 3 (pad, eos, unk), got ${vocab_size}`);
  }
  const cfg: T5Config = {
    model_type: 't5',
    vocab_size,
    d_model: 0, d_kv: 0, d_ff: 0, num_layers: 0, num_decoder_layers: 0, num_heads: 0,
    relative_attention_num_buckets: HF_DEFAULTS.relative_attention_num_buckets,
    relative_attention_max_distance: HF_DEFAULTS.relative_attention_max_distance,
    dropout_rate: HF_DEFAULTS.dropout_rate,
    classifier_dropout: HF_DEFAULTS.classifier_dropout,
    layer_norm_epsilon: HF_DEFAULTS.layer_norm_epsilon,
    initializer_factor: HF_DEFAULTS.initializer_factor,
    feed_forward_proj: 'relu',
    dense_act_fn: 'relu',
    is_gated_act: false,
    tie_word_embeddings: true,
    decoder_start_token_id: 0,
    pad_token_id: 0,
    eos_token_id: 1,
    use_cache: true,
    extra: {},
    ...arch[preset],
  };
  return cfg;
}

/**
 * Embedding rows for a SentencePiece vocabulary: the pieces, HF's `<extra_id_N>` sentinels after them, then
 * unused rows up to a multiple of `multiple` (t5-small: 32000 + 100 = 32100, padded to 32128 = 251 * 128).
 * The padding rows make the [vocab, d_model] matmuls tile evenly on the GPU; they are valid output ids without text.
 */
export function t5VocabSize(pieceCount: number, extraIds = 100, multiple = 128): number {
  for (const [what, v] of [['pieceCount', pieceCount], ['extraIds', extraIds], ['multiple', multiple]] as const) {
    if (!Number.isSafeInteger(v) || v < (what === 'extraIds' ? 0 : 1)) throw new Error(`t5VocabSize: ${what} must be a ${what === 'extraIds' ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
  return Math.ceil((pieceCount + extraIds) / multiple) * multiple;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/**
 * config.json as HF 4.36 `save_pretrained` writes it for a float32 T5ForConditionalGeneration: the keys
 * PretrainedConfig.to_diff_dict keeps (every T5-specific key, the ones that differ from PretrainedConfig's
 * defaults: tie_word_embeddings only when false), architectures, torch_dtype "float32", transformers_version,
 * and the file's other keys as they were read.
 */
export function serializeT5Config(cfg: T5Config): string {
  const mt5 = cfg.model_type === 'mt5';
  const out: Record<string, unknown> = {
    // MT5Config's tokenizer_class differs from PretrainedConfig's (None), so HF writes it
    ...(mt5 ? { tokenizer_class: 'T5Tokenizer' } : {}),
    ...cfg.extra,
    architectures: [mt5 ? 'MT5ForConditionalGeneration' : 'T5ForConditionalGeneration'],
    classifier_dropout: pyFloat(cfg.classifier_dropout),
    d_ff: cfg.d_ff,
    d_kv: cfg.d_kv,
    d_model: cfg.d_model,
    decoder_start_token_id: cfg.decoder_start_token_id,
    dense_act_fn: cfg.dense_act_fn,
    dropout_rate: pyFloat(cfg.dropout_rate),
    eos_token_id: cfg.eos_token_id,
    feed_forward_proj: cfg.feed_forward_proj,
    initializer_factor: pyFloat(cfg.initializer_factor),
    is_encoder_decoder: true,
    is_gated_act: cfg.is_gated_act,
    layer_norm_epsilon: pyFloat(cfg.layer_norm_epsilon),
    model_type: cfg.model_type,
    num_decoder_layers: cfg.num_decoder_layers,
    num_heads: cfg.num_heads,
    num_layers: cfg.num_layers,
    pad_token_id: cfg.pad_token_id,
    relative_attention_max_distance: cfg.relative_attention_max_distance,
    relative_attention_num_buckets: cfg.relative_attention_num_buckets,
    torch_dtype: 'float32',
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: cfg.use_cache,
    vocab_size: cfg.vocab_size,
  };
  // written where it differs from PretrainedConfig's default (true) or from the class's (MT5Config: false)
  if (!cfg.tie_word_embeddings || mt5) out.tie_word_embeddings = cfg.tie_word_embeddings;
  return pythonJsonDumps(out, { ensureAscii: true });
}

// ---------------------------------------------------------------------------------------------------------------
// Python's json.dumps(obj, indent=2, sort_keys=True) + "\n", byte for byte

/** A number Python holds as a float (written 1.0, 1e-06), where JS would write 1 and 0.000001. */
export class PyFloat {
  constructor(readonly value: number) {}
}
export const pyFloat = (x: number): PyFloat => new PyFloat(x);

/**
 * Python's repr(float): the shortest digits that round-trip (JS finds the same ones), written in positional
 * notation when the decimal exponent is in [-4, 16), else as d.ddde±XX (at least two exponent digits).
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expText] = x.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  const sign = x < 0 ? '-' : '';
  const digits = mant.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/**
 * `json.dumps(value, indent=2, sort_keys=True, ensure_ascii=...) + "\n"`. Plain objects: keys sorted (ASCII keys
 * sort alike in Python and JS); a Map stands for a Python dict with int keys, sorted numerically as Python does
 * before turning them into strings. Integral numbers are written as Python ints, others and PyFloat as floats.
 * Undefined values are dropped (they have no JSON form).
 */
export function pythonJsonDumps(value: unknown, opts: { ensureAscii: boolean }): string {
  const str = (s: string): string => {
    const j = JSON.stringify(s);
    return opts.ensureAscii ? j.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : j;
  };
  const num = (n: number): string => {
    if (Number.isInteger(n) && !Object.is(n, -0)) return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
    return pythonFloatRepr(n);
  };
  const walk = (v: unknown, indent: string): string => {
    if (v === null) return 'null';
    if (v instanceof PyFloat) return pythonFloatRepr(v.value);
    switch (typeof v) {
      case 'boolean': return v ? 'true' : 'false';
      case 'number': return num(v);
      case 'string': return str(v);
      case 'object': break;
      default: throw new Error(`pythonJsonDumps: cannot write a ${typeof v}`);
    }
    const inner = `${indent}  `;
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return `[\n${v.map((x) => inner + walk(x, inner)).join(',\n')}\n${indent}]`;
    }
    let entries: [string, unknown][];
    if (v instanceof Map) {
      entries = [...v.entries()]
        .sort((a, b) => Number(a[0]) - Number(b[0]))
        .map(([k, x]) => [String(k), x]);
    } else {
      entries = Object.entries(v as object).filter(([, x]) => x !== undefined);
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    }
    if (entries.length === 0) return '{}';
    return `{\n${entries.map(([k, x]) => `${inner}${str(k)}: ${walk(x, inner)}`).join(',\n')}\n${indent}}`;
  };
  return `${walk(value, '')}\n`;
}

// ---------------------------------------------------------------------------------------------------------------

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list ${truncate(JSON.stringify(v))}`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${truncate(JSON.stringify(v))}`;
  return String(v);
}

function truncate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
