// Diverse (group) beam search as HF 4.36's `group_beam_search`: the num_beams beams of each input form
// num_beam_groups groups of num_beams / num_beam_groups, searched one after the other within each decoder step.
// Group g sees only its own rows: their log-softmax, the Hamming diversity penalty (each token the earlier groups
// chose for the same input at this step costs diversity_penalty per choice), then the other logits processors
// (HF's order: the penalty comes right after sequence_bias), its own beam scores, and the top 2 x group_size
// candidates walked by its own BeamSearchScorer (beam-search.ts). Every group starts with only its first beam
// alive. The search stops when every group of every input is done; the best num_return_sequences of all the
// groups' hypotheses are returned per input. Beam indices are, as HF's, the group-local rows.
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { timeIsUp, type DecoderStepper, type GenerationOutput } from './search-types.ts';
import { applyHammingDiversity, applyLogitsProcessors, buildLogitsProcessors } from './logits-processors.ts';
import {
  advanceBeams, BeamSearchScorer, bestHypotheses, checkBeamSearchArgs, DECODER_PROMPT_LEN, hypothesesOutput, startBeams,
  stepLogSoftmax, topKCandidates, type RunningBeams,
} from './beam-search.ts';

export async function groupBeamSearch(
  stepper: DecoderStepper,
  batchSize: number,
  config: ResolvedGenerationConfig,
): Promise<GenerationOutput> {
  checkBeamSearchArgs(batchSize, config);
  const { numBeams, numBeamGroups: groups, diversityPenalty } = config;
  if (groups < 2 || numBeams % groups !== 0) throw new RangeError(`groupBeamSearch: ${numBeams} beams do not split into ${groups} groups`);
  const size = numBeams / groups;
  const vocab = stepper.vocabSize;
  const rows = batchSize * numBeams;
  // each group is a beam search of `size` beams over its own rows (rows b*numBeams + g*size + k of the stepper)
  const groupConfig: ResolvedGenerationConfig = { ...config, numBeams: size };
  const scorers = Array.from({ length: groups }, () => new BeamSearchScorer(batchSize, groupConfig, vocab, 2 * size, 'best-candidate'));
  let beams: RunningBeams[] = Array.from({ length: groups }, () => startBeams(batchSize * size, size, config.decoderStartTokenId, true));
  const encoderInputIds = stepper.encoderInputIds;
  const processors = buildLogitsProcessors(groupConfig, DECODER_PROMPT_LEN, encoderInputIds);
  const scoresOut: Float32Array[] | undefined = config.outputScores ? [] : undefined;
  const rowOf = (b: number, g: number, k: number) => b * numBeams + g * size + k;
  let tokens: Int32Array = new Int32Array(rows).fill(config.decoderStartTokenId);
  let curLen = DECODER_PROMPT_LEN;
  const start = performance.now();

  for (let step = 0; ; step++) {
    const logProbs = await stepLogSoftmax(stepper, tokens, rows, vocab, step);
    // HF's current_tokens (each group's choices, filled group by group) and the cache's reordering
    const current = new Int32Array(rows);
    const reorder = new Int32Array(rows);
    const recorded = scoresOut ? new Float32Array(rows * vocab) : undefined;
    for (let g = 0; g < groups; g++) {
      // the group's rows, compact: row b * size + k is the stepper's rowOf(b, g, k)
      const processed = new Float32Array(batchSize * size * vocab);
      const rowRange = (b: number, k: number) => [rowOf(b, g, k) * vocab, (rowOf(b, g, k) + 1) * vocab] as const;
      for (let b = 0; b < batchSize; b++) {
        for (let k = 0; k < size; k++) processed.set(logProbs.subarray(...rowRange(b, k)), (b * size + k) * vocab);
      }
      const group = beams[g]!;
      if (g > 0) {
        const earlier = (b: number) => current.subarray(b * numBeams, b * numBeams + g * size);
        applyHammingDiversity(processed, vocab, size, diversityPenalty, earlier);
      }
      applyLogitsProcessors(processors, group.inputIds, processed, vocab);
      if (recorded) {
        for (let b = 0; b < batchSize; b++) {
          for (let k = 0; k < size; k++) recorded.set(processed.subarray((b * size + k) * vocab, (b * size + k + 1) * vocab), rowRange(b, k)[0]);
        }
      }
      const scorer = scorers[g]!;
      const next = scorer.process(processed, processed, (first) => topKCandidates(processed, group.beamScores, first, size, vocab, 2 * size), group, curLen, step);
      beams[g] = advanceBeams(group, next, processed, vocab);
      for (let b = 0; b < batchSize; b++) {
        for (let k = 0; k < size; k++) {
          const r = b * size + k;
          current[rowOf(b, g, k)] = next.tokens[r]!;
          // the group-local row next.indices[r] of input b, as a row of the stepper
          reorder[rowOf(b, g, k)] = rowOf(b, g, next.indices[r]! % size);
        }
      }
    }
    if (recorded) scoresOut!.push(recorded);
    curLen++;
    if (scorers.every((s) => s.allDone()) || curLen >= config.maxLength || timeIsUp(config.maxTime, start)) break;
    stepper.reorder(reorder);
    tokens = current;
  }

  // finalize: each group's open beams join its hypotheses; per input the best of all groups, group by group in
  // the order HF concatenates them (its stable sort then decides ties)
  scorers.forEach((scorer, g) => scorer.addOpenBeams(beams[g]!));
  const best = Array.from({ length: batchSize }, (_, b) =>
    bestHypotheses(scorers.flatMap((scorer) => scorer.hypotheses(b)), config.numReturnSequences)).flat();
  return hypothesesOutput(best, config, scoresOut);
}
