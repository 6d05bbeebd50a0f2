// The two sides of a search (greedy-search.ts, beam-search.ts): the model it steps, and what it returns; and
// the time limit every search checks after a step.

/** The model side of generation: an encoder run once, a decoder with a key/value cache. */
export interface DecoderStepper {
  /**
   * rows = batch * beams (row r belongs to input floor(r / beams)); feeds one new token per row and returns the
   * next-token LOGITS [rows, vocab] (raw, not log-softmaxed) as a Float32Array. The search may write into it
   * (the logits processors), and the stepper may hand the same array back, refilled, at the next step (when
   * output_scores is off): a search keeps no step's array past that step unless it copied it.
   */
  step(tokens: Int32Array): Promise<Float32Array>;
  /**
   * Optional: the same step returning log_softmax of the logits, computed where the logits are (the GPU), so
   * that beam search does not run an exp per vocabulary entry and row on the host. Beam search uses it when given.
   */
  stepLogProbs?(tokens: Int32Array): Promise<Float32Array>;
  /** Optional: the same step also returning each row's decoder output [rows, d_model] (HF's last
   * decoder_hidden_states), which contrastive search compares; contrastive search needs it. */
  stepWithHidden?(tokens: Int32Array): Promise<{ logits: Float32Array; hidden: Float32Array }>;
  /** reorders the cache: new row r continues old row beamIdx[r] (HF's `_reorder_cache`) */
  reorder(beamIdx: Int32Array): void;
  readonly vocabSize: number;
  /** The source's input ids, one padded row per input (HF's `inputs_tensor`), for the encoder-side logits
   * processors (encoder_repetition_penalty, encoder_no_repeat_ngram_size); steppers without them refuse those. */
  readonly encoderInputIds?: readonly (readonly number[])[];
}

/** HF's MaxTimeCriteria: true once `maxTime` seconds have passed since `start` (performance.now() ms). */
export function timeIsUp(maxTime: number | null, start: number): boolean {
  return maxTime !== null && (performance.now() - start) / 1000 > maxTime;
}

/** What a search returns, rows in HF's order (input-major, `num_return_sequences` rows per input, best first). */
export interface GenerationOutput {
  /** Starting with decoder_start_token_id, padded with pad_token_id to the longest row. */
  sequences: number[][];
  /**
   * Beam search: HF's `sequences_scores` (sum of log-probs / generated_length ** length_penalty). Greedy search
   * only when generateIds is asked for them (the same formula; HF has none).
   */
  sequencesScores?: number[];
  /** Beam search: HF's `beam_indices`, the running row each token came from, -1 past the end; as long as `sequences`. */
  beamIndices?: number[][];
  /**
   * HF's `compute_transition_scores(sequences, scores, beam_indices)`: one entry per generated position
   * (sequences[i].length - 1 entries). Greedy: the processed logit of each token, pads after `</s>` included.
   * Beam: the processed log-prob of each token, 0 after the end.
   */
  transitionScores: number[][];
  /** With output_scores: per step, the processed scores [rows, vocab] HF returns in `scores`. */
  scores?: Float32Array[];
}
