// Contrastive search as HF 4.36's `contrastive_search` (penalty_alpha > 0 with top_k > 1, num_beams 1, no
// sampling): each step the logits processors on each input's next-token logits, then its top_k most likely
// tokens (softmax of the processed scores; the lower index first among ties) are all fed to the decoder at once,
// and the one with the best (1 − α)·p − α·max cos(h, earlier h) is kept, h the decoder output (HF's last
// decoder_hidden_states) of the candidate and of every earlier position of the sequence, the decoder start token
// included. The stepper holds top_k rows per input (HF's expanded cache): all rows of an input share its
// sequence, row j takes candidate j, and the reorder then copies the kept candidate's row into all of them.
// Finished rows (after eos) record the pad token, as greedy search; the loop stops as greedy search does.
// Cosines in float64 from the float32 decoder outputs (torch computes them in float32). The sequence scores
// (HF has none) are greedy search's: the chosen tokens' log-probabilities / length ** length_penalty.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { timeIsUp, type DecoderStepper, type GenerationOutput } from './search-types.ts';
import { applyLogitsProcessors, buildLogitsProcessors } from './logits-processors.ts';
import { checkLogits, checkRowSearchTokens, nanLogitsError } from './greedy-search.ts';
import { topKCandidates } from './beam-search.ts';
import { greedySequencesScores, logSumExpRows } from './greedy-sequence-scores.ts';

/** The k most likely tokens of row `r` of processed scores with their softmax probabilities, best first (ties:
 * the lower index first), by beam search's one-pass top-k over a single beam (a full sort of a 32,128-token row
 * took ~11 ms per input per step). */
function topKProbabilities(scores: Float32Array, r: number, vocab: number, k: number, step: number): { ids: number[]; probs: number[] } {
  const row = scores.subarray(r * vocab, (r + 1) * vocab);
  const top = topKCandidates(row, NO_BEAM_SCORE, 0, 1, vocab, k);
  if (top.nanAt >= 0) throw nanLogitsError(step, r * vocab + top.nanAt, vocab);
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let total = 0;
  for (let i = 0; i < row.length; i++) total += Math.exp(row[i]! - max);
  const ids = [...top.index];
  return { ids, probs: ids.map((i) => Math.exp(row[i]! - max) / total) };
}
const NO_BEAM_SCORE = new Float32Array(1);

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb));
}

export async function contrastiveSearch(stepper: DecoderStepper, batchSize: number, config: ResolvedGenerationConfig): Promise<GenerationOutput> {
  const k = config.contrastiveTopK;
  const alpha = config.penaltyAlpha;
  if (!(k > 1 && alpha > 0)) throw new RangeError(`contrastiveSearch: needs top_k > 1 and penalty_alpha > 0, got ${k} and ${alpha}`);
  if (!stepper.stepWithHidden) throw new Error('generate: contrastive search (penalty_alpha) needs the decoder outputs, which this stepper does not give');
  const vocab = stepper.vocabSize;
  if (k > vocab) throw new RangeError(`generate: \`top_k\` (${k}) is larger than the vocabulary (${vocab})`);
  checkRowSearchTokens(config, vocab);
  const rows = batchSize * k;
  const eos = config.eosTokenIds;
  const pad = config.padTokenId;
  const processors = buildLogitsProcessors(config, 1, stepper.encoderInputIds);
  const inputIds: number[][] = Array.from({ length: batchSize }, () => [config.decoderStartTokenId]);
  const transition: number[][] = Array.from({ length: batchSize }, () => []);
  const scores: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  const unfinished = new Uint8Array(batchSize).fill(1);
  const start = performance.now();

  // the decoder start token in every row: the first logits and the first decoder output of each input
  let stepped = await stepper.stepWithHidden(new Int32Array(rows).fill(config.decoderStartTokenId));
  checkLogits(stepped.logits, rows, vocab, 0);
  const width = stepped.hidden.length / rows;
  const hiddenOf = (out: { hidden: Float32Array }, r: number) => out.hidden.slice(r * width, (r + 1) * width);
  const context: Float32Array[][] = Array.from({ length: batchSize }, (_, b) => [hiddenOf(stepped, b * k)]);
  let next = new Float32Array(batchSize * vocab);
  for (let b = 0; b < batchSize; b++) next.set(stepped.logits.subarray(b * k * vocab, (b * k + 1) * vocab), b * vocab);

  const stepLse: Float64Array[] = [];
  for (let step = 0; ; step++) {
    const processed = next;
    stepLse.push(logSumExpRows(processed, batchSize, vocab));
    applyLogitsProcessors(processors, inputIds, processed, vocab);
    if (scores) scores.push(Float32Array.from(processed));
    const candidates = Array.from({ length: batchSize }, (_, b) => topKProbabilities(processed, b, vocab, k, step));
    const tokens = new Int32Array(rows);
    candidates.forEach((c, b) => c.ids.forEach((id, j) => (tokens[b * k + j] = id)));
    stepped = await stepper.stepWithHidden(tokens);
    checkLogits(stepped.logits, rows, vocab, step + 1);
    const reorder = new Int32Array(rows);
    next = new Float32Array(batchSize * vocab);
    let anyUnfinished = false;
    for (let b = 0; b < batchSize; b++) {
      // HF's _ranking_fast: (1 - α)·p - α·(largest cosine with the earlier decoder outputs), the first best kept
      let best = 0;
      let bestScore = -Infinity;
      for (let j = 0; j < k; j++) {
        const h = hiddenOf(stepped, b * k + j);
        let penalty = -Infinity;
        for (const c of context[b]!) penalty = Math.max(penalty, cosine(c, h));
        const score = (1 - alpha) * candidates[b]!.probs[j]! - alpha * penalty;
        if (score > bestScore) {
          bestScore = score;
          best = j;
        }
      }
      const chosen = b * k + best;
      context[b]!.push(hiddenOf(stepped, chosen));
      next.set(stepped.logits.subarray(chosen * vocab, (chosen + 1) * vocab), b * vocab);
      for (let j = 0; j < k; j++) reorder[b * k + j] = chosen;
      const token = unfinished[b] || eos.length === 0 ? candidates[b]!.ids[best]! : pad!;
      inputIds[b]!.push(token);
      transition[b]!.push(processed[b * vocab + token]!);
      if (eos.length > 0 && eos.includes(token)) unfinished[b] = 0;
      if (unfinished[b]) anyUnfinished = true;
    }
    if ((eos.length > 0 && !anyUnfinished) || inputIds[0]!.length >= config.maxLength || timeIsUp(config.maxTime, start)) break;
    stepper.reorder(reorder);
  }
  const out: GenerationOutput = { sequences: inputIds, transitionScores: transition, ...(scores ? { scores } : {}) };
  out.sequencesScores = greedySequencesScores(out, stepLse, config);
  return out;
}
