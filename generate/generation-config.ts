// Generation options with Hugging Face's names and meaning (transformers 4.36 `GenerationConfig`), resolved into
// what the searches need as HF's `generate` does for an encoder-decoder model whose decoder prompt is the single
// decoder start token.
//
// Searches: greedy (num_beams 1), beam search (num_beams > 1), sampling (do_sample, num_beams 1, with HF's
// temperature, top_k, top_p, min_p (4.39's), typical_p, epsilon_cutoff and eta_cutoff warpers), beam sampling
// (both), group beam search (num_beam_groups) and contrastive search (penalty_alpha with top_k); HF's logits
// processors (logits-processors.ts) and its max_time stop apply to every one of them.
//
// Sources of options, later ones winning: HF's defaults, the model folder's generation_config.json (or, when that
// file is missing, the generation keys of config.json: HF's `GenerationConfig.from_model_config`; reading and
// writing the file is generation-config-file.ts's), then the options passed explicitly. Options HF has but we do
// not implement are refused when they would change the result (a message naming the option), never silently
// ignored; unknown explicit options are refused too.

export type EarlyStopping = boolean | 'never';

/**
 * HF's GenerationConfig as generation_config.json holds it: HF's names, a key left out having HF's default. As
 * read from a file, so values are unchecked and keys we do not implement are kept (resolveGenerationConfig
 * refuses the ones that would change the result).
 */
export type GenerationConfig = Readonly<Record<string, unknown>>;

/** Options passed explicitly, as HF spells them (snake_case); every one optional. */
export interface GenerationOptions {
  /** Total length including the decoder start token (HF's meaning); default 20. */
  max_length?: number;
  /** Tokens to generate after the decoder start token; overrides max_length (HF: max_new_tokens + 1). */
  max_new_tokens?: number | null;
  /** `</s>` is banned while the sequence, decoder start token included, is shorter than this. */
  min_length?: number;
  /** `</s>` is banned until this many tokens were generated after the decoder start token. */
  min_new_tokens?: number | null;
  num_beams?: number;
  num_return_sequences?: number;
  no_repeat_ngram_size?: number;
  /** Scores of tokens already generated are divided by this (multiplied when negative); 1: off. */
  repetition_penalty?: number;
  length_penalty?: number;
  early_stopping?: EarlyStopping;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  decoder_start_token_id?: number | null;
  /** Also return the per-step processed scores (`scores`); transition scores are always returned. */
  output_scores?: boolean;
  /** Accepted for HF compatibility: the result is always the full object. */
  return_dict_in_generate?: boolean;
  /** Accepted for HF compatibility: the decoder always uses its cache, which gives the same result. */
  use_cache?: boolean;
  /** Sample each token from the (warped) distribution instead of taking the best (beam sampling with num_beams > 1). */
  do_sample?: boolean;
  /** Sampling: the logits are divided by this (> 0) before drawing; default 1. */
  temperature?: number;
  /** Sampling: only the k most likely tokens can be drawn; 0 or null: no limit. Default 50 (HF's). */
  top_k?: number | null;
  /** Sampling: only the smallest set of most likely tokens whose probability reaches top_p; default 1 (off). */
  top_p?: number | null;
  /** Sampling: tokens less likely than min_p times the most likely one are dropped (HF's MinPLogitsWarper, from
   * transformers 4.39), in [0, 1]; null: off (the default). */
  min_p?: number | null;
  /** Sampling: locally typical sampling's mass (HF's TypicalLogitsWarper) below 1; default 1 (off). */
  typical_p?: number | null;
  /** Sampling: tokens less likely than this are dropped (HF's EpsilonLogitsWarper) when in (0, 1); default 0. */
  epsilon_cutoff?: number | null;
  /** Sampling: eta sampling's cutoff (HF's EtaLogitsWarper) when in (0, 1); default 0. */
  eta_cutoff?: number | null;
  /** Scores of tokens in the source are multiplied by this when positive (divided when negative): > 1 favours
   * copying from the source. One row per input only (greedy search, or sampling one sequence): HF 4.36 applies it
   * to the batch's first rows whatever input they belong to when there are more. */
  encoder_repetition_penalty?: number;
  /** No n-gram of the source of this size is generated; 0: off. */
  encoder_no_repeat_ngram_size?: number;
  /** Seconds the search may take (HF's MaxTimeCriteria: checked after each step, the encoder not counted); the
   * sequences end where they are. Results then depend on the machine's speed. null: no limit. */
  max_time?: number | null;
  /** Token sequences never generated (HF's NoBadWordsLogitsProcessor): the last token of each is banned where the
   * row ends with the rest. A sequence that is just an eos token is ignored, as in HF. */
  bad_words_ids?: number[][] | null;
  /** [tokens, bias] pairs (HF's list form): bias is added to the last token's score where the row ends with the
   * others (always, for one token). */
  sequence_bias?: Array<[number[], number]> | null;
  /** The first generated token (HF's ForcedBOSTokenLogitsProcessor). */
  forced_bos_token_id?: number | null;
  /** The token(s) allowed at the last position max_length allows (HF's ForcedEOSTokenLogitsProcessor). */
  forced_eos_token_id?: number | number[] | null;
  /** nan scores become 0 and ±inf the largest finite float32 (HF's InfNanRemoveLogitsProcessor). */
  remove_invalid_values?: boolean;
  /** [start_index, decay_factor]: from start_index generated tokens on, eos scores grow by |score|·(factor^n - 1). */
  exponential_decay_length_penalty?: [number, number] | null;
  /** Tokens never generated. */
  suppress_tokens?: number[] | null;
  /** Tokens not generated first (second when forced_bos_token_id is set). */
  begin_suppress_tokens?: number[] | null;
  /** [[position, token], ...]: the token forced at that position of the sequence (the decoder start token is
   * position 0), as HF's ForceTokensLogitsProcessor. */
  forced_decoder_ids?: Array<[number, number]> | null;
  /** log_softmax of the processed scores (HF's LogitNormalization, the last processor, and the last warper). */
  renormalize_logits?: boolean;
  /** Contrastive search (with top_k > 1, num_beams 1, no sampling): each step's top_k candidates ranked by
   * (1 − α)·probability − α·(their decoder state's largest cosine similarity with the earlier ones). */
  penalty_alpha?: number | null;
  /** Diverse (group) beam search: the beams split into this many groups, searched one after the other each step. */
  num_beam_groups?: number;
  /** Group beam search: a token chosen by an earlier group at this step costs this much (HF's Hamming diversity). */
  diversity_penalty?: number;
}

/** Everything a search needs, resolved and checked. */
export interface ResolvedGenerationConfig {
  /** Including the decoder start token. */
  maxLength: number;
  minLength: number;
  /** null: no MinNewTokensLengthLogitsProcessor. */
  minNewTokens: number | null;
  numBeams: number;
  numReturnSequences: number;
  noRepeatNgramSize: number;
  /** 1: no RepetitionPenaltyLogitsProcessor. */
  repetitionPenalty: number;
  lengthPenalty: number;
  earlyStopping: EarlyStopping;
  /** Empty: no end-of-sequence token, every row runs to maxLength. */
  eosTokenIds: number[];
  padTokenId: number | null;
  decoderStartTokenId: number;
  outputScores: boolean;
  /** Sampling instead of greedy search, or beam sampling instead of beam search when numBeams > 1. */
  doSample: boolean;
  /** 1: no TemperatureLogitsWarper. */
  temperature: number;
  /** 0: no TopKLogitsWarper. */
  topK: number;
  /** 1: no TopPLogitsWarper. */
  topP: number;
  /** null: no MinPLogitsWarper. */
  minP: number | null;
  /** 1: no TypicalLogitsWarper. */
  typicalP: number;
  /** 0: no EpsilonLogitsWarper. */
  epsilonCutoff: number;
  /** 0: no EtaLogitsWarper. */
  etaCutoff: number;
  /** Seconds after which the search stops (after the step in progress); null: no limit. */
  maxTime: number | null;
  /** Contrastive search's α and its candidate count (HF's top_k); 0 and 0 when not contrastive search. */
  penaltyAlpha: number;
  contrastiveTopK: number;
  /** Group beam search when > 1 (num_beams divisible by it), with this diversity penalty (> 0). */
  numBeamGroups: number;
  diversityPenalty: number;
  /** 1: off. */
  encoderRepetitionPenalty: number;
  /** 0: off. */
  encoderNoRepeatNgramSize: number;
  /** The processors of HF's that are off by default; null / false: off. */
  badWordsIds: number[][] | null;
  sequenceBias: Array<[number[], number]> | null;
  forcedBosTokenId: number | null;
  forcedEosTokenIds: number[] | null;
  removeInvalidValues: boolean;
  exponentialDecayLengthPenalty: [number, number] | null;
  suppressTokens: number[] | null;
  beginSuppressTokens: number[] | null;
  forcedDecoderIds: Array<[number, number]> | null;
  renormalizeLogits: boolean;
  /** What HF would log as a warning (beam-only options with num_beams 1, unreachable min_length, ...). */
  warnings: string[];
}

/** HF 4.36 GenerationConfig defaults for the options we implement. */
export const GENERATION_DEFAULTS = {
  max_length: 20,
  max_new_tokens: null,
  min_length: 0,
  min_new_tokens: null,
  num_beams: 1,
  num_return_sequences: 1,
  no_repeat_ngram_size: 0,
  repetition_penalty: 1.0,
  length_penalty: 1.0,
  early_stopping: false,
  eos_token_id: null,
  pad_token_id: null,
  bos_token_id: null,
  decoder_start_token_id: null,
  output_scores: false,
  return_dict_in_generate: false,
  use_cache: true,
  do_sample: false,
  temperature: 1.0,
  top_k: 50,
  top_p: 1.0,
  min_p: null,
  typical_p: 1.0,
  epsilon_cutoff: 0.0,
  eta_cutoff: 0.0,
  encoder_repetition_penalty: 1.0,
  encoder_no_repeat_ngram_size: 0,
  max_time: null,
  bad_words_ids: null,
  sequence_bias: null,
  forced_bos_token_id: null,
  forced_eos_token_id: null,
  remove_invalid_values: false,
  exponential_decay_length_penalty: null,
  suppress_tokens: null,
  begin_suppress_tokens: null,
  forced_decoder_ids: null,
  renormalize_logits: false,
  penalty_alpha: null,
  num_beam_groups: 1,
  diversity_penalty: 0.0,
} as const satisfies Required<GenerationOptions>;

const OPTION_NAMES = new Set(Object.keys(GENERATION_DEFAULTS));

/**
 * HF options that change the result and that we do not implement, with the value that leaves them off (HF's
 * default). Any other value is refused wherever it comes from.
 */
const UNSUPPORTED_OFF: Readonly<Record<string, unknown>> = {
  force_words_ids: null,
  constraints: null,
  guidance_scale: null,
  low_memory: null,
  // later transformers' options that change what generate returns (a generation_config.json saved by a recent
  // version may hold them): stop strings need the tokenizer inside the search; DoLa and token healing are for
  // decoder-only models; a watermark changes the scores
  stop_strings: null,
  dola_layers: null,
  token_healing: false,
  watermarking_config: null,
  output_attentions: false,
  output_hidden_states: false,
};

/** Keys of HF's own bookkeeping or of assisted generation, harmless in a file. */
const IGNORED_FILE_KEYS = new Set([
  '_from_model_config', 'transformers_version', '_commit_hash', 'num_assistant_tokens',
  'num_assistant_tokens_schedule', 'generation_kwargs',
]);

/** A GenerationConfig attribute of HF's that we know (implemented, or refused unless off). */
export function isGenerationKey(key: string): boolean {
  return OPTION_NAMES.has(key) || key in UNSUPPORTED_OFF;
}

/** Whether `value` is HF's default for `key` (false for a key isGenerationKey refuses). */
export function isGenerationDefault(key: string, value: unknown): boolean {
  if (OPTION_NAMES.has(key)) return sameValue(value, GENERATION_DEFAULTS[key as keyof typeof GENERATION_DEFAULTS]);
  return key in UNSUPPORTED_OFF && sameValue(value, UNSUPPORTED_OFF[key]);
}

const sameValue = (a: unknown, b: unknown): boolean =>
  a === b || (a === undefined && b === null) || JSON.stringify(a) === JSON.stringify(b);

function show(v: unknown): string {
  return v === undefined ? 'undefined' : typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v);
}

function fail(option: string, what: string, source?: string): never {
  throw new Error(`generate: \`${option}\` ${what}${source ? ` (from ${source})` : ''}`);
}

function checkInt(option: string, v: unknown, min: number, source?: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    fail(option, `must be an integer >= ${min}, got ${show(v)}`, source);
  }
  return v;
}

function checkTokenId(option: string, v: unknown, source?: string): number | null {
  if (v === null || v === undefined) return null;
  return checkInt(option, v, 0, source);
}

/** HF NoBadWordsLogitsProcessor's checks, and a sequence must have a token (HF fails on an empty one later). */
function checkTokenLists(key: string, v: unknown, source?: string): number[][] {
  if (!Array.isArray(v) || v.length === 0) fail(key, `has to be a non-empty list, but is ${show(v)}.`, source);
  if (v.some((seq) => !Array.isArray(seq))) fail(key, `has to be a list of lists, but is ${show(v)}.`, source);
  const lists = v as unknown[][];
  if (lists.some((seq) => seq.length === 0 || seq.some((id) => !Number.isSafeInteger(id) || (id as number) < 0))) {
    fail(key, `has to be a list of non-empty lists of token ids (integers >= 0), but is ${show(v)}.`, source);
  }
  return lists.map((seq) => [...(seq as number[])]);
}

/** HF's list form of sequence_bias, [[tokens, bias], ...], checked as SequenceBiasLogitsProcessor checks its dict. */
function checkSequenceBias(v: unknown, source?: string): Array<[number[], number]> {
  const key = 'sequence_bias';
  const pairs = Array.isArray(v) && v.length > 0 && v.every((pair) => Array.isArray(pair) && pair.length === 2);
  if (!pairs) fail(key, `has to be a non-empty list of [tokens, bias] pairs, but is ${show(v)}.`, source);
  const list = v as Array<[unknown, unknown]>;
  const tokens = checkTokenLists(key, list.map(([ids]) => ids), source);
  if (list.some(([, bias]) => typeof bias !== 'number' || Number.isNaN(bias))) {
    fail(key, `has to pair each token list with a number (its bias), but is ${show(v)}.`, source);
  }
  return list.map(([, bias], i) => [tokens[i]!, bias as number]);
}

/**
 * Check one option's value and return it; throws naming the option. `source` (a file name) goes into the
 * message for values read from a folder.
 */
function checkOption(key: string, v: unknown, source?: string): unknown {
  if (key in UNSUPPORTED_OFF) {
    if (!sameValue(v, UNSUPPORTED_OFF[key])) {
      fail(key, `is not supported, got ${show(v)}`, source);
    }
    return v;
  }
  switch (key) {
    case 'max_length':
    case 'num_beams':
    case 'num_return_sequences':
      return checkInt(key, v, 1, source);
    case 'min_length':
    case 'no_repeat_ngram_size':
    case 'encoder_no_repeat_ngram_size':
      return checkInt(key, v, 0, source);
    case 'max_new_tokens':
      return v === null ? null : checkInt(key, v, 1, source);
    case 'min_new_tokens':
      return v === null ? null : checkInt(key, v, 0, source);
    case 'length_penalty':
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number, got ${show(v)}`, source);
      return v;
    case 'repetition_penalty':
    case 'encoder_repetition_penalty':
      if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) fail(key, `has to be a strictly positive float, but is ${show(v)}`, source);
      return v;
    case 'early_stopping':
      if (typeof v !== 'boolean' && v !== 'never') fail(key, `must be true, false or "never", got ${show(v)}`, source);
      return v;
    case 'eos_token_id':
      if (Array.isArray(v)) {
        if (v.length === 0) fail(key, 'must not be an empty list', source);
        v.forEach((id) => checkTokenId(key, id, source));
        return [...v];
      }
      return checkTokenId(key, v, source);
    case 'pad_token_id':
    case 'bos_token_id':
    case 'decoder_start_token_id':
      return checkTokenId(key, v, source);
    case 'output_scores':
    case 'return_dict_in_generate':
    case 'use_cache':
      if (typeof v !== 'boolean') fail(key, `must be true or false, got ${show(v)}`, source);
      return v;
    case 'do_sample':
      if (typeof v !== 'boolean') fail(key, `must be true or false, got ${show(v)}`, source);
      return v;
    case 'temperature':
      // the range (> 0) is checked when sampling uses it (checkSampling): HF ignores it otherwise
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number, got ${show(v)}`, source);
      return v;
    case 'top_k':
      return v === null ? 0 : checkInt(key, v, 0, source);
    case 'min_p':
      // the warper's range [0, 1] is checked when sampling uses it (checkSampling)
      if (v === null) return null;
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number or null, got ${show(v)}`, source);
      return v;
    case 'typical_p':
      // the warper's range (0, 1) is checked when sampling uses it (checkSampling)
      if (v === null) return 1.0;
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number, got ${show(v)}`, source);
      return v;
    case 'epsilon_cutoff':
    case 'eta_cutoff':
      // HF builds these warpers only for values in (0, 1) and ignores the others
      if (v === null) return 0.0;
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number, got ${show(v)}`, source);
      return v;
    case 'top_p':
      if (v === null) return 1.0;
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(key, `has to be a float > 0 and < 1, but is ${show(v)}`, source);
      return v;
    case 'bad_words_ids':
      return v === null ? null : checkTokenLists(key, v, source);
    case 'suppress_tokens':
    case 'begin_suppress_tokens':
      if (v === null) return null;
      if (!Array.isArray(v)) fail(key, `has to be a list of token ids, but is ${show(v)}`, source);
      return v.map((id) => checkInt(key, id, 0, source));
    case 'sequence_bias':
      return v === null ? null : checkSequenceBias(v, source);
    case 'max_time':
      if (v === null) return null;
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) fail(key, `must be a number of seconds >= 0, got ${show(v)}`, source);
      return v;
    case 'forced_bos_token_id':
      return checkTokenId(key, v, source);
    case 'forced_eos_token_id':
      if (Array.isArray(v)) {
        if (v.length === 0) fail(key, 'must not be an empty list', source);
        return v.map((id) => checkInt(key, id, 0, source));
      }
      return checkTokenId(key, v, source);
    case 'forced_decoder_ids': {
      if (v === null) return null;
      const ok = Array.isArray(v) && v.every((pair) => Array.isArray(pair) && pair.length === 2 && pair.every((x) => Number.isSafeInteger(x) && (x as number) >= 0));
      if (!ok) fail(key, `has to be a list of [position, token id] pairs of integers >= 0, but is ${show(v)}`, source);
      return (v as number[][]).map(([i, t]) => [i!, t!]);
    }
    case 'remove_invalid_values':
    case 'renormalize_logits':
      if (typeof v !== 'boolean') fail(key, `must be true or false, got ${show(v)}`, source);
      return v;
    case 'exponential_decay_length_penalty': {
      if (v === null) return null;
      const ok = Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && v[0] >= 0 && typeof v[1] === 'number' && Number.isFinite(v[1]);
      if (!ok) fail(key, `has to be [start_index, decay_factor] (an integer >= 0 and a number), but is ${show(v)}`, source);
      return [v[0], v[1]];
    }
    case 'penalty_alpha':
      if (v === null) return null;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) fail(key, `must be a number in [0, 1], got ${show(v)}`, source);
      return v;
    case 'num_beam_groups':
      return checkInt(key, v, 1, source);
    case 'diversity_penalty':
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `must be a finite number, got ${show(v)}`, source);
      return v;
    default:
      return fail(key, `is not a generation option we know (known: ${[...OPTION_NAMES].join(', ')})`, source);
  }
}

/** The decoder prompt of an encoder-decoder model: the decoder start token alone. */
const DECODER_PROMPT_LENGTH = 1;

/**
 * Merge HF's defaults, a folder's generation config (as readGenerationConfigFile reads it) and explicit options, check them and resolve lengths as HF's generate() does for an
 * encoder-decoder model (decoder prompt = the decoder start token, so max_new_tokens n gives max_length n + 1).
 */
export function resolveGenerationConfig(
  fileConfig: GenerationConfig = {},
  options: Readonly<GenerationOptions> = {},
  fileName = 'generation_config.json',
): ResolvedGenerationConfig {
  const merged = mergeOptions(fileConfig, options, fileName);
  const warnings: string[] = [];
  const tokens = resolveSpecialTokens(merged, warnings);
  const explicitMaxLength = options.max_length !== undefined && options.max_length !== null;
  const lengths = resolveLengths(merged, explicitMaxLength, fileConfig.max_length !== undefined, warnings);
  const doSample = merged.do_sample as boolean;
  const beams = checkBeamOptions(merged, doSample, warnings);
  // a value read from the file is named with it in a refusal; an explicit one is the caller's
  const sourceOf = (key: string) => ((options as Record<string, unknown>)[key] === undefined && fileConfig[key] !== undefined ? fileName : undefined);
  const sampling = checkSampling(merged, doSample, sourceOf, warnings);
  const forcedEos = merged.forced_eos_token_id as number | number[] | null;
  return {
    ...lengths,
    numBeams: beams.numBeams,
    numReturnSequences: beams.numReturnSequences,
    noRepeatNgramSize: merged.no_repeat_ngram_size as number,
    repetitionPenalty: merged.repetition_penalty as number,
    lengthPenalty: beams.lengthPenalty,
    earlyStopping: beams.earlyStopping,
    ...tokens,
    outputScores: merged.output_scores as boolean,
    doSample,
    ...sampling,
    ...checkGroups(merged, doSample),
    ...contrastive(merged, doSample),
    encoderRepetitionPenalty: checkEncoderPenalty(merged, doSample ? beams.numReturnSequences : beams.numBeams),
    encoderNoRepeatNgramSize: merged.encoder_no_repeat_ngram_size as number,
    maxTime: merged.max_time as number | null,
    badWordsIds: merged.bad_words_ids as number[][] | null,
    sequenceBias: merged.sequence_bias as Array<[number[], number]> | null,
    forcedBosTokenId: merged.forced_bos_token_id as number | null,
    forcedEosTokenIds: forcedEos === null ? null : Array.isArray(forcedEos) ? forcedEos : [forcedEos],
    removeInvalidValues: merged.remove_invalid_values as boolean,
    exponentialDecayLengthPenalty: merged.exponential_decay_length_penalty as [number, number] | null,
    suppressTokens: merged.suppress_tokens as number[] | null,
    beginSuppressTokens: merged.begin_suppress_tokens as number[] | null,
    forcedDecoderIds: merged.forced_decoder_ids as Array<[number, number]> | null,
    renormalizeLogits: merged.renormalize_logits as boolean,
    warnings,
  };
}

/** HF's defaults, then the file's known keys, then the explicit options, each value checked. */
function mergeOptions(fileConfig: GenerationConfig, options: Readonly<GenerationOptions>, fileName: string): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...GENERATION_DEFAULTS };
  for (const [key, v] of Object.entries(fileConfig)) {
    if (IGNORED_FILE_KEYS.has(key)) continue;
    // HF keeps unknown keys of a file as plain attributes that generate() never reads.
    if (!isGenerationKey(key)) continue;
    merged[key] = checkOption(key, v, fileName);
  }
  for (const [key, v] of Object.entries(options)) {
    if (v === undefined) continue;
    merged[key] = checkOption(key, v);
  }
  return merged;
}

/** generate(): pad_token_id falls back to the (first) eos token, decoder_start_token_id to bos_token_id. */
function resolveSpecialTokens(
  merged: Record<string, unknown>,
  warnings: string[],
): Pick<ResolvedGenerationConfig, 'eosTokenIds' | 'padTokenId' | 'decoderStartTokenId'> {
  const eosRaw = merged.eos_token_id as number | number[] | null;
  const eosTokenIds = eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  let padTokenId = merged.pad_token_id as number | null;
  if (padTokenId === null && eosTokenIds.length > 0) {
    padTokenId = eosTokenIds[0]!;
    warnings.push(`Setting \`pad_token_id\` to \`eos_token_id\`:${padTokenId} for open-end generation.`);
  }
  const start = (merged.decoder_start_token_id ?? merged.bos_token_id) as number | null;
  if (start === null) {
    fail('decoder_start_token_id', 'or `bos_token_id` has to be defined for encoder-decoder generation');
  }
  return { eosTokenIds, padTokenId, decoderStartTokenId: start };
}

/** max_new_tokens wins over max_length; HF's warnings about the default and unfeasible lengths. */
function resolveLengths(
  merged: Record<string, unknown>,
  explicitMaxLength: boolean,
  fileHasMaxLength: boolean,
  warnings: string[],
): Pick<ResolvedGenerationConfig, 'maxLength' | 'minLength' | 'minNewTokens'> {
  let maxLength = merged.max_length as number;
  const maxNewTokens = merged.max_new_tokens as number | null;
  if (maxNewTokens !== null) {
    if (explicitMaxLength) {
      warnings.push(`Both \`max_new_tokens\` (=${maxNewTokens}) and \`max_length\`(=${maxLength}) seem to have been set. \`max_new_tokens\` will take precedence.`);
    }
    maxLength = maxNewTokens + DECODER_PROMPT_LENGTH;
  }
  if (maxNewTokens === null && !explicitMaxLength && !fileHasMaxLength && maxLength === 20) {
    warnings.push('Using the model-agnostic default `max_length` (=20) to control the generation length: set `max_new_tokens` to control the maximum length of the generation.');
  }
  if (DECODER_PROMPT_LENGTH >= maxLength) {
    warnings.push(`Input length of decoder_input_ids is ${DECODER_PROMPT_LENGTH}, but \`max_length\` is set to ${maxLength}: one token is generated.`);
  }
  const minLength = merged.min_length as number;
  const minNewTokens = merged.min_new_tokens as number | null;
  if (minLength > maxLength) {
    warnings.push(`Unfeasible length constraints: \`min_length\` (${minLength}) is larger than the maximum possible length (${maxLength}).`);
  }
  if (minNewTokens !== null && minNewTokens + DECODER_PROMPT_LENGTH > maxLength) {
    warnings.push(`Unfeasible length constraints: \`min_new_tokens\` (${minNewTokens}) + decoder prompt length (${DECODER_PROMPT_LENGTH}) is larger than the maximum possible length (${maxLength}).`);
  }
  return { maxLength, minLength, minNewTokens };
}

/** Greedy search refuses several sequences and warns about beam-only flags; beam search (and beam sampling) caps
 * the sequences at the beams; sampling without beams takes any number of sequences. */
function checkBeamOptions(
  merged: Record<string, unknown>,
  doSample: boolean,
  warnings: string[],
): Pick<ResolvedGenerationConfig, 'numBeams' | 'numReturnSequences' | 'earlyStopping' | 'lengthPenalty'> {
  const numBeams = merged.num_beams as number;
  const numReturnSequences = merged.num_return_sequences as number;
  const earlyStopping = merged.early_stopping as EarlyStopping;
  const lengthPenalty = merged.length_penalty as number;
  if (numBeams === 1) {
    // HF raises in greedy mode; GenerationConfig.validate() only warns about the beam-only flags.
    if (numReturnSequences > 1 && !doSample) {
      fail('num_return_sequences', `has to be 1 when doing greedy search (num_beams 1), but is ${numReturnSequences}`);
    }
    if (earlyStopping !== false) warnings.push('`num_beams` is set to 1. However, `early_stopping` is set: it is only used in beam-based generation modes.');
    if (lengthPenalty !== 1) warnings.push('`num_beams` is set to 1. However, `length_penalty` is set: it is only used in beam-based generation modes.');
  } else if (numReturnSequences > numBeams) {
    fail('num_return_sequences', `has to be smaller or equal to \`num_beams\` (${numBeams}), but is ${numReturnSequences}`);
  }
  return { numBeams, numReturnSequences, earlyStopping, lengthPenalty };
}

/** HF's generation mode rule: contrastive search when num_beams is 1, no sampling, top_k > 1 and penalty_alpha > 0. */
function contrastive(merged: Record<string, unknown>, doSample: boolean): Pick<ResolvedGenerationConfig, 'penaltyAlpha' | 'contrastiveTopK'> {
  const alpha = merged.penalty_alpha as number | null;
  const topK = merged.top_k as number;
  const on = merged.num_beams === 1 && !doSample && alpha !== null && alpha > 0 && topK > 1;
  return on ? { penaltyAlpha: alpha, contrastiveTopK: topK } : { penaltyAlpha: 0, contrastiveTopK: 0 };
}

/** Group beam search's conditions, with HF's messages (validate() and generate()). */
function checkGroups(merged: Record<string, unknown>, doSample: boolean): Pick<ResolvedGenerationConfig, 'numBeamGroups' | 'diversityPenalty'> {
  const numBeams = merged.num_beams as number;
  const numBeamGroups = merged.num_beam_groups as number;
  const diversityPenalty = merged.diversity_penalty as number;
  if (numBeamGroups > 1) {
    if (numBeamGroups > numBeams) fail('num_beam_groups', `has to be smaller or equal to \`num_beams\` (${numBeams}), but is ${numBeamGroups}`);
    if (numBeams % numBeamGroups !== 0) fail('num_beams', `should be divisible by \`num_beam_groups\` for group beam search (${numBeams} and ${numBeamGroups})`);
    if (doSample) fail('do_sample', 'Diverse beam search cannot be used in sampling mode. Make sure that `do_sample` is set to `False`.');
    if (diversityPenalty === 0) fail('diversity_penalty', 'should be greater than `0.0`, otherwise your beam groups will be identical.');
  } else if (diversityPenalty !== 0) {
    // HF builds its Hamming processor for any positive penalty, and other searches then fail calling it
    fail('diversity_penalty', `is ${diversityPenalty} but \`num_beam_groups\` is 1: it only applies to group beam search`);
  }
  return { numBeamGroups, diversityPenalty };
}

/** encoder_repetition_penalty with one decoder row per input only: HF 4.36 gathers the scores of the batch's first
 * rows with the (unexpanded) source ids, so with beams or several samples per input it penalises the wrong rows. */
function checkEncoderPenalty(merged: Record<string, unknown>, rowsPerInput: number): number {
  const penalty = merged.encoder_repetition_penalty as number;
  if (penalty !== 1 && rowsPerInput > 1) {
    fail('encoder_repetition_penalty', `with ${rowsPerInput} decoder rows per input (beams or samples) is not supported: HF 4.36 applies it to the batch's first rows, not to each input's; use it with greedy search or one sample per input`);
  }
  return penalty;
}

/** Sampling options that HF's GenerationConfig.validate() warns about when do_sample is false (and
 * save_pretrained then refuses), with the value that leaves each off. */
export const SAMPLING_WARNED: Readonly<Record<string, number | null>> = {
  temperature: 1, top_p: 1, min_p: null, typical_p: 1, epsilon_cutoff: 0, eta_cutoff: 0,
};

/**
 * The warpers' settings. With do_sample false HF ignores them and GenerationConfig.validate() warns about each
 * SAMPLING_WARNED option that is set; with do_sample true they are checked as the warpers check them (a
 * typical_p out of range names the file it came from).
 */
function checkSampling(
  merged: Record<string, unknown>,
  doSample: boolean,
  sourceOf: (key: string) => string | undefined,
  warnings: string[],
): Pick<ResolvedGenerationConfig, 'temperature' | 'topK' | 'topP' | 'minP' | 'typicalP' | 'epsilonCutoff' | 'etaCutoff'> {
  const temperature = merged.temperature as number;
  const topK = merged.top_k as number;
  const topP = merged.top_p as number;
  const typicalP = merged.typical_p as number;
  if (!doSample) {
    const unused = (flag: string, value: unknown) =>
      warnings.push(`\`do_sample\` is false, but \`${flag}\` is ${value}: it is only used when sampling (HF warns the same). Set \`do_sample\` or unset \`${flag}\`.`);
    for (const [key, off] of Object.entries(SAMPLING_WARNED)) if (merged[key] !== off) unused(key, merged[key]);
    return { temperature: 1, topK: 0, topP: 1, minP: null, typicalP: 1, epsilonCutoff: 0, etaCutoff: 0 };
  }
  if (!(temperature > 0)) fail('temperature', `(=${temperature}) has to be a strictly positive float, otherwise your next token scores will be invalid.`);
  if (typicalP < 1 && !(typicalP > 0)) fail('typical_p', `has to be a float > 0 and < 1, but is ${typicalP}`, sourceOf('typical_p'));
  const minP = merged.min_p as number | null;
  if (minP !== null && !(minP >= 0 && minP <= 1)) fail('min_p', `has to be a float in the [0, 1] interval, but is ${minP}`, sourceOf('min_p'));
  // HF adds the epsilon and eta warpers only for cutoffs in (0, 1)
  const cutoff = (key: string) => {
    const v = merged[key] as number;
    return v > 0 && v < 1 ? v : 0;
  };
  return { temperature, topK, topP, minP, typicalP: Math.min(typicalP, 1), epsilonCutoff: cutoff('epsilon_cutoff'), etaCutoff: cutoff('eta_cutoff') };
}
