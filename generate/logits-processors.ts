// The logits processors HF 4.36's `_get_logits_processor` builds for greedy and beam search from the options we
// implement, in HF's order (SequenceBias, [HammingDiversity: group-beam-search.ts], EncoderRepetitionPenalty,
// RepetitionPenalty, NoRepeatNGram, EncoderNoRepeatNGram, NoBadWords, MinLength, MinNewTokensLength,
// ForcedBOSToken, ForcedEOSToken, InfNanRemove, ExponentialDecayLengthPenalty, SuppressTokens,
// SuppressTokensAtBegin, ForceTokens, then LogitNormalization last), plus the float32 log-softmax beam search
// applies first. Each works in place on scores [rows, vocab] given each row's token history, decoder start token included (HF's
// `input_ids` of the decoder), in float32 as torch computes it.
import type { ResolvedGenerationConfig } from './generation-config.ts';

/** Modifies `scores` ([rows, vocab], row-major) in place; `inputIds[r]` is row r's tokens so far. */
export type LogitsProcessor = (inputIds: readonly (readonly number[])[], scores: Float32Array, vocab: number) => void;

/** scores holds one row of `vocab` values per row of inputIds; throws naming the processor otherwise. */
export function checkShape(name: string, inputIds: readonly (readonly number[])[], scores: Float32Array, vocab: number): void {
  if (!Number.isSafeInteger(vocab) || vocab <= 0 || scores.length !== inputIds.length * vocab) {
    throw new RangeError(`${name}: scores of length ${scores.length} do not match ${inputIds.length} rows x vocab ${vocab}`);
  }
}

function banEos(scores: Float32Array, rows: number, vocab: number, eosTokenIds: readonly number[]): void {
  for (let r = 0; r < rows; r++) for (const id of eosTokenIds) if (id < vocab) scores[r * vocab + id] = -Infinity;
}

/**
 * HF MinLengthLogitsProcessor: every eos token gets -inf while the sequence (decoder start token included) is
 * shorter than `minLength`. HF reads the length from the whole batch (all rows have the same length).
 */
export function minLengthProcessor(minLength: number, eosTokenIds: readonly number[]): LogitsProcessor {
  if (!Number.isSafeInteger(minLength) || minLength < 0) throw new RangeError(`min_length must be an integer >= 0, got ${minLength}`);
  return (inputIds, scores, vocab) => {
    checkShape('MinLengthLogitsProcessor', inputIds, scores, vocab);
    const curLen = inputIds[0]?.length ?? 0;
    if (curLen < minLength) banEos(scores, inputIds.length, vocab, eosTokenIds);
  };
}

/** HF MinNewTokensLengthLogitsProcessor: as min length, counting only tokens after the first `promptLength`. */
export function minNewTokensProcessor(promptLength: number, minNewTokens: number, eosTokenIds: readonly number[]): LogitsProcessor {
  if (!Number.isSafeInteger(minNewTokens) || minNewTokens < 0) throw new RangeError(`min_new_tokens must be an integer >= 0, got ${minNewTokens}`);
  return (inputIds, scores, vocab) => {
    checkShape('MinNewTokensLengthLogitsProcessor', inputIds, scores, vocab);
    const newTokens = (inputIds[0]?.length ?? 0) - promptLength;
    if (newTokens < minNewTokens) banEos(scores, inputIds.length, vocab, eosTokenIds);
  };
}

/**
 * HF RepetitionPenaltyLogitsProcessor: every token already in the row (the decoder start token included) has its
 * score divided by `penalty` when positive and multiplied by it when negative (float32), once however often it
 * occurs (torch's gather, then scatter of the same values). penalty > 1 makes repeats less likely.
 */
export function repetitionPenaltyProcessor(penalty: number): LogitsProcessor {
  if (!(typeof penalty === 'number' && Number.isFinite(penalty) && penalty > 0)) {
    throw new RangeError(`\`penalty\` has to be a strictly positive float, but is ${penalty}`);
  }
  return (inputIds, scores, vocab) => {
    checkShape('RepetitionPenaltyLogitsProcessor', inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) {
      for (const token of new Set(inputIds[r])) {
        if (token < 0 || token >= vocab) continue;
        const at = r * vocab + token;
        const x = scores[at]!;
        scores[at] = x < 0 ? x * penalty : x / penalty;
      }
    }
  };
}

/**
 * The tokens HF's NoRepeatNGramLogitsProcessor bans for one row: every token that followed an earlier occurrence
 * of the row's last n-1 tokens, i.e. that would complete an n-gram already in the row. Nothing is banned before
 * the row has n-1 tokens (HF: `cur_len + 1 < ngram_size`).
 */
export function bannedNgramTokens(tokens: readonly number[], ngramSize: number): number[] {
  const len = tokens.length;
  if (len + 1 < ngramSize) return [];
  const prefix = ngramSize - 1;
  const banned: number[] = [];
  // n-gram starting at i: tokens[i .. i+n-1]; its prefix must equal the last n-1 tokens tokens[len-n+1 .. len-1].
  for (let i = 0; i + ngramSize <= len; i++) {
    let match = true;
    for (let j = 0; j < prefix; j++) {
      if (tokens[i + j] !== tokens[len - prefix + j]) {
        match = false;
        break;
      }
    }
    if (match) banned.push(tokens[i + prefix]!);
  }
  return banned;
}

/** HF NoRepeatNGramLogitsProcessor: a token that would repeat an n-gram of the row gets -inf. */
export function noRepeatNgramProcessor(ngramSize: number): LogitsProcessor {
  if (!Number.isSafeInteger(ngramSize) || ngramSize <= 0) {
    throw new RangeError(`no_repeat_ngram_size has to be a strictly positive integer, but is ${ngramSize}`);
  }
  return (inputIds, scores, vocab) => {
    checkShape('NoRepeatNGramLogitsProcessor', inputIds, scores, vocab);
    for (let r = 0; r < inputIds.length; r++) {
      for (const token of bannedNgramTokens(inputIds[r]!, ngramSize)) {
        if (token >= 0 && token < vocab) scores[r * vocab + token] = -Infinity;
      }
    }
  };
}

/**
 * HF EncoderRepetitionPenaltyLogitsProcessor (the "hallucination penalty"): every token of row r's source (its
 * padded input ids, pads included, as HF gathers them) has its score multiplied by `penalty` when positive and
 * divided by it when negative (HF stores 1 / penalty and applies it the other way round), once each. One decoder
 * row per source: generation-config.ts refuses it with beams or several samples.
 */
export function encoderRepetitionPenaltyProcessor(penalty: number, encoderInputIds: readonly (readonly number[])[]): LogitsProcessor {
  if (!(Number.isFinite(penalty) && penalty > 0)) throw new RangeError(`\`penalty\` has to be a strictly positive float, but is ${penalty}`);
  const inverse = 1 / penalty;
  const sources = encoderInputIds.map((ids) => [...new Set(ids)]);
  return (inputIds, scores, vocab) => {
    checkShape('EncoderRepetitionPenaltyLogitsProcessor', inputIds, scores, vocab);
    if (inputIds.length !== sources.length) {
      throw new RangeError(`EncoderRepetitionPenaltyLogitsProcessor: ${inputIds.length} rows for ${sources.length} sources (one row per source only)`);
    }
    sources.forEach((tokens, r) => {
      for (const token of tokens) {
        if (token < 0 || token >= vocab) continue;
        const at = r * vocab + token;
        const x = scores[at]!;
        scores[at] = x < 0 ? x * inverse : x / inverse;
      }
    });
  };
}

/**
 * HF EncoderNoRepeatNGramLogitsProcessor: row r (of input floor(r / rowsPerInput)) may not complete an n-gram of
 * its source: the tokens that followed the row's last n-1 tokens anywhere in the padded source ids are banned.
 */
export function encoderNoRepeatNgramProcessor(ngramSize: number, encoderInputIds: readonly (readonly number[])[]): LogitsProcessor {
  if (!Number.isSafeInteger(ngramSize) || ngramSize <= 0) {
    throw new RangeError(`\`encoder_ngram_size\` has to be a strictly positive integer, but is ${ngramSize}`);
  }
  // HF's _get_ngrams over each source: prefix of n-1 tokens -> the tokens that followed it
  const followers = encoderInputIds.map((ids) => {
    const map = new Map<string, number[]>();
    for (let i = 0; i + ngramSize <= ids.length; i++) {
      const key = ids.slice(i, i + ngramSize - 1).join(',');
      map.set(key, [...(map.get(key) ?? []), ids[i + ngramSize - 1]!]);
    }
    return map;
  });
  return (inputIds, scores, vocab) => {
    checkShape('EncoderNoRepeatNGramLogitsProcessor', inputIds, scores, vocab);
    const perInput = Math.floor(inputIds.length / followers.length);
    for (let r = 0; r < inputIds.length; r++) {
      const row = inputIds[r]!;
      if (row.length + 1 < ngramSize) continue;
      const banned = followers[Math.floor(r / perInput)]!.get(row.slice(row.length - (ngramSize - 1)).join(',')) ?? [];
      for (const token of banned) if (token >= 0 && token < vocab) scores[r * vocab + token] = -Infinity;
    }
  };
}

/**
 * HF HammingDiversityLogitsProcessor for one group of group beam search: each row of input b loses `penalty` times
 * the number of times the earlier groups chose each token at this step (`earlierTokens(b)`), in float32. Rows are
 * the group's, `rowsPerInput` per input. Group 0 is left as it is.
 */
export function applyHammingDiversity(
  scores: Float32Array, vocab: number, rowsPerInput: number, penalty: number, earlierTokens: (b: number) => ArrayLike<number>,
): void {
  const inputs = scores.length / vocab / rowsPerInput;
  const frequency = new Map<number, number>();
  for (let b = 0; b < inputs; b++) {
    frequency.clear();
    for (const t of Array.from(earlierTokens(b))) frequency.set(t, (frequency.get(t) ?? 0) + 1);
    for (let k = 0; k < rowsPerInput; k++) {
      const base = (b * rowsPerInput + k) * vocab;
      for (const [t, n] of frequency) if (t >= 0 && t < vocab) scores[base + t] = scores[base + t]! - Math.fround(Math.fround(penalty) * n);
    }
  }
}

/** Whether `row` ends with `suffix`. */
function endsWith(row: readonly number[], suffix: readonly number[]): boolean {
  if (suffix.length > row.length) return false;
  const off = row.length - suffix.length;
  for (let i = 0; i < suffix.length; i++) if (row[off + i] !== suffix[i]) return false;
  return true;
}

/**
 * HF SequenceBiasLogitsProcessor: a one-token sequence's bias is added to that token's score in every row; a
 * longer one's to its last token's score in the rows that end with the rest of it (a sequence longer than the
 * row is skipped). The biases of a row sum in float32 (HF's bias tensor), then add to the scores. `option` names
 * the generation option in errors: HF checks the token ids against the vocabulary at the first call.
 */
export function sequenceBiasProcessor(sequenceBias: ReadonlyArray<readonly [readonly number[], number]>, option = 'sequence_bias'): LogitsProcessor {
  // HF's dict: a repeated sequence keeps its last bias; one-token biases are assigned, longer ones summed
  const bySequence = new Map<string, readonly [readonly number[], number]>();
  for (const [tokens, bias] of sequenceBias) bySequence.set(tokens.join(','), [tokens, bias]);
  const single = new Map<number, number>();
  const longer: Array<readonly [readonly number[], number]> = [];
  for (const [tokens, bias] of bySequence.values()) {
    if (tokens.length === 1) single.set(tokens[0]!, Math.fround(bias));
    else longer.push([tokens, Math.fround(bias)]);
  }
  let checkedVocab = 0;
  return (inputIds, scores, vocab) => {
    checkShape('SequenceBiasLogitsProcessor', inputIds, scores, vocab);
    if (checkedVocab !== vocab) {
      const invalid = [...bySequence.values()].flatMap(([tokens]) => tokens.filter((t) => t >= vocab));
      if (invalid.length > 0) {
        throw new RangeError(`generate: \`${option}\`: the model vocabulary size is ${vocab}, but the following tokens were being biased: [${invalid.join(', ')}]`);
      }
      checkedVocab = vocab;
    }
    const bias = new Map<number, number>();
    for (let r = 0; r < inputIds.length; r++) {
      bias.clear();
      for (const [token, b] of single) bias.set(token, b);
      const row = inputIds[r]!;
      for (const [tokens, b] of longer) {
        if (tokens.length > row.length || !endsWith(row, tokens.slice(0, -1))) continue;
        const last = tokens[tokens.length - 1]!;
        bias.set(last, Math.fround((bias.get(last) ?? 0) + b));
      }
      for (const [token, b] of bias) scores[r * vocab + token] = Math.fround(scores[r * vocab + token]! + b);
    }
  };
}

/** HF NoBadWordsLogitsProcessor: SequenceBias with -inf for each sequence, except one that is just an eos token. */
export function noBadWordsProcessor(badWordsIds: readonly (readonly number[])[], eosTokenIds: readonly number[]): LogitsProcessor {
  const kept = badWordsIds.filter((seq) => !(seq.length === 1 && eosTokenIds.includes(seq[0]!)));
  if (kept.length === 0) return () => {};
  return sequenceBiasProcessor(kept.map((seq) => [seq, -Infinity] as const), 'bad_words_ids');
}

/** Every score -inf but `allowed`'s, which become 0 (HF's forced-token processors); ids past the vocabulary throw. */
function forceTokens(name: string, scores: Float32Array, rows: number, vocab: number, allowed: readonly number[]): void {
  const outside = allowed.filter((id) => id >= vocab);
  if (outside.length > 0) throw new RangeError(`${name}: token ${outside.join(', ')} is outside the vocabulary of ${vocab}`);
  scores.fill(-Infinity);
  for (let r = 0; r < rows; r++) for (const id of allowed) scores[r * vocab + id] = 0;
}

/** HF ForcedBOSTokenLogitsProcessor: the first token after the decoder start token is `bosTokenId`. */
export function forcedBosProcessor(bosTokenId: number): LogitsProcessor {
  return (inputIds, scores, vocab) => {
    checkShape('ForcedBOSTokenLogitsProcessor', inputIds, scores, vocab);
    if ((inputIds[0]?.length ?? 0) === 1) forceTokens('ForcedBOSTokenLogitsProcessor', scores, inputIds.length, vocab, [bosTokenId]);
  };
}

/** HF ForcedEOSTokenLogitsProcessor: the token that brings a row to `maxLength` is one of `eosTokenIds`. */
export function forcedEosProcessor(maxLength: number, eosTokenIds: readonly number[]): LogitsProcessor {
  return (inputIds, scores, vocab) => {
    checkShape('ForcedEOSTokenLogitsProcessor', inputIds, scores, vocab);
    if ((inputIds[0]?.length ?? 0) === maxLength - 1) forceTokens('ForcedEOSTokenLogitsProcessor', scores, inputIds.length, vocab, eosTokenIds);
  };
}

/** torch.finfo(torch.float32).max */
const FLOAT32_MAX = 3.4028234663852886e38;

/** HF InfNanRemoveLogitsProcessor: nan -> 0, +inf -> float32 max, -inf -> float32 min. */
export function infNanRemoveProcessor(): LogitsProcessor {
  return (inputIds, scores, vocab) => {
    checkShape('InfNanRemoveLogitsProcessor', inputIds, scores, vocab);
    for (let i = 0; i < scores.length; i++) {
      const x = scores[i]!;
      if (Number.isNaN(x)) scores[i] = 0;
      else if (x === Infinity) scores[i] = FLOAT32_MAX;
      else if (x === -Infinity) scores[i] = -FLOAT32_MAX;
    }
  };
}

/**
 * HF ExponentialDecayLengthPenalty: once a row is longer than start + the decoder prompt, each eos score s
 * becomes s + |s|·(factor^n - 1), n the tokens past that point (the factor's power in float64, the rest in
 * float32, as torch computes a tensor times a Python float).
 */
export function exponentialDecayProcessor(penalty: readonly [number, number], eosTokenIds: readonly number[], promptLength: number): LogitsProcessor {
  const [start, factor] = penalty;
  const regulationStart = start + promptLength;
  return (inputIds, scores, vocab) => {
    checkShape('ExponentialDecayLengthPenalty', inputIds, scores, vocab);
    const curLen = inputIds[0]?.length ?? 0;
    if (curLen <= regulationStart) return;
    const growth = Math.fround(factor ** (curLen - regulationStart) - 1);
    for (let r = 0; r < inputIds.length; r++) {
      for (const id of eosTokenIds) {
        if (id >= vocab) continue;
        const at = r * vocab + id;
        scores[at] = Math.fround(scores[at]! + Math.fround(Math.abs(scores[at]!) * growth));
      }
    }
  };
}

/** HF SuppressTokensLogitsProcessor, or SuppressTokensAtBeginLogitsProcessor when `atLength` is given: the tokens
 * get -inf (at every step, or when the row has `atLength` tokens). Ids past the vocabulary are ignored. */
export function suppressTokensProcessor(tokens: readonly number[], atLength?: number): LogitsProcessor {
  const name = atLength === undefined ? 'SuppressTokensLogitsProcessor' : 'SuppressTokensAtBeginLogitsProcessor';
  return (inputIds, scores, vocab) => {
    checkShape(name, inputIds, scores, vocab);
    if (atLength !== undefined && (inputIds[0]?.length ?? 0) !== atLength) return;
    for (let r = 0; r < inputIds.length; r++) for (const id of tokens) if (id < vocab) scores[r * vocab + id] = -Infinity;
  };
}

/** HF ForceTokensLogitsProcessor: when the rows have `position` tokens, the token mapped to it is the only one
 * allowed (score 0, every other -inf); a later pair for the same position wins, as in HF's dict. */
export function forceTokensProcessor(forcedDecoderIds: ReadonlyArray<readonly [number, number]>): LogitsProcessor {
  const byPosition = new Map(forcedDecoderIds.map(([position, token]) => [position, token]));
  return (inputIds, scores, vocab) => {
    checkShape('ForceTokensLogitsProcessor', inputIds, scores, vocab);
    const token = byPosition.get(inputIds[0]?.length ?? 0);
    if (token !== undefined) forceTokens('ForceTokensLogitsProcessor', scores, inputIds.length, vocab, [token]);
  };
}

/** HF LogitNormalization: scores.log_softmax(-1) (logSoftmaxRows' rounding). */
export function logitNormalizationProcessor(): LogitsProcessor {
  return (inputIds, scores, vocab) => {
    checkShape('LogitNormalization', inputIds, scores, vocab);
    scores.set(logSoftmaxRows(scores, inputIds.length, vocab));
  };
}

/**
 * The processors `_get_logits_processor` (4.36) makes from a resolved config, in its order. HF adds the min
 * length processors only when an eos token is defined and the length is > 0. The decoder prompt (the decoder
 * start token) is HF's `input_ids_seq_length`; `encoderInputIds` (the padded source ids, one row per input) are
 * needed by the encoder-side processors only.
 */
export function buildLogitsProcessors(
  config: ResolvedGenerationConfig, decoderPromptLength = 1, encoderInputIds?: readonly (readonly number[])[],
): LogitsProcessor[] {
  const out: LogitsProcessor[] = [];
  const eos = config.eosTokenIds;
  const sources = (option: string) => {
    if (!encoderInputIds) throw new Error(`generate: \`${option}\` needs the source's input ids, which this decoder stepper does not give`);
    return encoderInputIds;
  };
  if (config.sequenceBias) out.push(sequenceBiasProcessor(config.sequenceBias));
  if (config.encoderRepetitionPenalty !== 1) {
    out.push(encoderRepetitionPenaltyProcessor(config.encoderRepetitionPenalty, sources('encoder_repetition_penalty')));
  }
  if (config.repetitionPenalty !== 1) out.push(repetitionPenaltyProcessor(config.repetitionPenalty));
  if (config.noRepeatNgramSize > 0) out.push(noRepeatNgramProcessor(config.noRepeatNgramSize));
  if (config.encoderNoRepeatNgramSize > 0) {
    out.push(encoderNoRepeatNgramProcessor(config.encoderNoRepeatNgramSize, sources('encoder_no_repeat_ngram_size')));
  }
  if (config.badWordsIds) out.push(noBadWordsProcessor(config.badWordsIds, eos));
  if (eos.length > 0 && config.minLength > 0) out.push(minLengthProcessor(config.minLength, eos));
  if (eos.length > 0 && config.minNewTokens !== null && config.minNewTokens > 0) {
    out.push(minNewTokensProcessor(decoderPromptLength, config.minNewTokens, eos));
  }
  if (config.forcedBosTokenId !== null) out.push(forcedBosProcessor(config.forcedBosTokenId));
  if (config.forcedEosTokenIds !== null) out.push(forcedEosProcessor(config.maxLength, config.forcedEosTokenIds));
  if (config.removeInvalidValues) out.push(infNanRemoveProcessor());
  if (config.exponentialDecayLengthPenalty) out.push(exponentialDecayProcessor(config.exponentialDecayLengthPenalty, eos, decoderPromptLength));
  if (config.suppressTokens) out.push(suppressTokensProcessor(config.suppressTokens));
  if (config.beginSuppressTokens) {
    // HF: the first free position, after the forced bos token when there is one, and after the forced decoder ids
    let begin = decoderPromptLength + (decoderPromptLength === 1 && config.forcedBosTokenId !== null ? 1 : 0);
    if (config.forcedDecoderIds && config.forcedDecoderIds.length > 0) begin += config.forcedDecoderIds.at(-1)![0];
    out.push(suppressTokensProcessor(config.beginSuppressTokens, begin));
  }
  if (config.forcedDecoderIds) out.push(forceTokensProcessor(config.forcedDecoderIds));
  if (config.renormalizeLogits) out.push(logitNormalizationProcessor());
  return out;
}

export function applyLogitsProcessors(
  processors: readonly LogitsProcessor[],
  inputIds: readonly (readonly number[])[],
  scores: Float32Array,
  vocab: number,
): void {
  for (const p of processors) p(inputIds, scores, vocab);
}

/**
 * Row-wise log_softmax of float32 logits into a new float32 array: x - max - log(sum(exp(x - max))), summed in
 * float64 and rounded once (torch sums in float32; the difference is within a float32 ulp of the result).
 * -inf stays -inf; a row of only -inf gives NaN, as in torch.
 */
export function logSoftmaxRows(logits: Float32Array, rows: number, vocab: number): Float32Array {
  if (logits.length !== rows * vocab) throw new RangeError(`logSoftmaxRows: ${logits.length} values for ${rows} x ${vocab}`);
  const out = new Float32Array(logits.length);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) {
      const x = logits[base + i]!;
      if (x > max || Number.isNaN(x)) max = x;
    }
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[base + i]! - max);
    const shift = max + Math.log(sum);
    for (let i = 0; i < vocab; i++) out[base + i] = logits[base + i]! - shift;
  }
  return out;
}
