// The logits processors HF 4.36's `_get_logits_processor` builds for greedy and beam search from the options we
// implement, in HF's order (RepetitionPenalty, NoRepeatNGram, MinLength, then MinNewTokensLength), plus the
// float32 log-softmax beam search applies first. Each works in place on scores [rows, vocab] given each row's token
// history, decoder start token included (HF's `input_ids` of the decoder).
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
 * The processors `_get_logits_processor` (4.36) makes from a resolved config, in its order. HF adds the min
 * length processors only when an eos token is defined and the length is > 0.
 */
export function buildLogitsProcessors(config: ResolvedGenerationConfig, decoderPromptLength = 1): LogitsProcessor[] {
  const out: LogitsProcessor[] = [];
  if (config.repetitionPenalty !== 1) out.push(repetitionPenaltyProcessor(config.repetitionPenalty));
  if (config.noRepeatNgramSize > 0) out.push(noRepeatNgramProcessor(config.noRepeatNgramSize));
  if (config.eosTokenIds.length > 0 && config.minLength > 0) out.push(minLengthProcessor(config.minLength, config.eosTokenIds));
  if (config.eosTokenIds.length > 0 && config.minNewTokens !== null && config.minNewTokens > 0) {
    out.push(minNewTokensProcessor(decoderPromptLength, config.minNewTokens, config.eosTokenIds));
  }
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
