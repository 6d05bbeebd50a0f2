// `model.generate` for T5: the encoder once, a KV-cached decoder step per token, and Hugging Face's greedy
// search, beam search or sampling (generate/greedy-search.ts, beam-search.ts, sample-search.ts) choosing the
// tokens; plain greedy search chooses them on the GPU (generate/greedy-on-device.ts).
import { beamSearch } from './beam-search.ts';
import { groupBeamSearch } from './group-beam-search.ts';
import { contrastiveSearch } from './contrastive-search.ts';
import { greedySearch } from './greedy-search.ts';
import { sampleSearch, type SampleOptions } from './sample-search.ts';
import { greedyOnDeviceSuits, greedySearchOnDevice } from './greedy-on-device.ts';
import { greedySequencesScores, logSumExpRows } from './greedy-sequence-scores.ts';
import type { ResolvedGenerationConfig } from './generation-config.ts';
import type { DecoderStepper, GenerationOutput } from './search-types.ts';
import { T5DecoderCache } from '../model/t5-decoder-cache.ts';
import { noGrad } from '../engine/autograd.ts';
import { logSoftmax } from '../kernels/softmax.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';

export interface EncodedInputs {
  /** [batch, sourceLength], right-padded with the pad id */
  inputIds: Int32Array;
  /** [batch, sourceLength], 1 = token */
  attentionMask: Int32Array;
  batchSize: number;
  sourceLength: number;
}

/** Decoder rows per input: contrastive search's top_k candidates, the beams, or when sampling without beams
 * the return sequences (HF's `_expand_inputs_for_generation`). */
export function rowsPerInput(config: ResolvedGenerationConfig): number {
  if (config.contrastiveTopK > 0) return config.contrastiveTopK; // contrastive search's candidates
  return config.doSample && config.numBeams === 1 ? config.numReturnSequences : config.numBeams;
}

/**
 * HF's generate() for `batchSize` inputs whose encoder the stepper already ran: contrastive search with
 * penalty_alpha (and top_k > 1, num_beams 1, no sampling), group beam search with num_beam_groups > 1,
 * beam search when num_beams > 1 (beam sampling with do_sample), else sampling with do_sample, else
 * greedy search. The stepper must have been built for `batchSize * rowsPerInput(config)` rows.
 * `sampling` (seed, sequence scores) applies to the sampling searches only (beam sampling takes the seed;
 * its sequence scores are the beam scores).
 */
export function generate(
  stepper: DecoderStepper,
  batchSize: number,
  config: ResolvedGenerationConfig,
  sampling: SampleOptions = {},
): Promise<GenerationOutput> {
  if (config.contrastiveTopK > 0) return contrastiveSearch(stepper, batchSize, config);
  if (config.numBeamGroups > 1) return groupBeamSearch(stepper, batchSize, config);
  if (config.numBeams > 1) return beamSearch(stepper, batchSize, config, sampling);
  if (config.doSample) return sampleSearch(stepper, batchSize * rowsPerInput(config), config, sampling);
  return greedySearch(stepper, batchSize, config);
}

/**
 * Generates for a padded batch of encoded inputs. With `sequenceScores`, greedy search's and sampling's output
 * gets `sequencesScores` too (greedy-sequence-scores.ts, sample-search.ts; beam search always has them), at the
 * cost of a logsumexp over each step's logits. Greedy search without logits processors or scores chooses its
 * tokens on the GPU (greedy-on-device.ts, the same result); `greedyOnDevice: false` keeps it on the host (tests
 * compare the two). `seed` seeds sampling's draws (sample-search.ts; default: a fresh one per call).
 */
export async function generateIds(
  model: T5ForConditionalGeneration,
  inputs: EncodedInputs,
  config: ResolvedGenerationConfig,
  options: { sequenceScores?: boolean; greedyOnDevice?: boolean; seed?: number } = {},
): Promise<GenerationOutput> {
  // the searches feed every token but the last of a max_length sequence (decoder start token included)
  const cache = new T5DecoderCache(
    model.context(), inputs.inputIds, inputs.attentionMask, inputs.batchSize, inputs.sourceLength, rowsPerInput(config),
    config.maxLength - 1,
  );
  const vocab = model.config.vocab_size;
  // contrastive search scores its sequences itself
  const greedyScores = options.sequenceScores === true && config.numBeams === 1 && !config.doSample && config.contrastiveTopK === 0;
  if (options.greedyOnDevice !== false && greedyOnDeviceSuits(config, greedyScores)) {
    try {
      return await greedySearchOnDevice(cache, inputs.batchSize, config, vocab);
    } finally {
      cache.dispose();
    }
  }
  const stepLse: Float64Array[] = [];
  // every step's values go into one host array (8 MB for 4 beams x 16 inputs: a new one each step cost the
  // garbage collector ~6 ms a step), unless the search keeps each step's scores (output_scores)
  let host: Float32Array | undefined;
  const hostFor = (n: number): Float32Array | undefined =>
    config.outputScores ? undefined : host?.length === n ? host : (host = new Float32Array(n));
  const stepper: DecoderStepper = {
    vocabSize: vocab,
    encoderInputIds: Array.from({ length: inputs.batchSize }, (_, b) =>
      Array.from(inputs.inputIds.subarray(b * inputs.sourceLength, (b + 1) * inputs.sourceLength))),
    async step(tokens) {
      const logits = cache.step(tokens);
      try {
        const values = await logits.toFloat32(hostFor(logits.size));
        if (greedyScores) stepLse.push(logSumExpRows(values, tokens.length, vocab));
        return values;
      } finally {
        logits.dispose();
      }
    },
    async stepLogProbs(tokens) {
      const logits = cache.step(tokens);
      const logProbs = noGrad(() => logSoftmax(logits));
      logits.dispose();
      try {
        return await logProbs.toFloat32(hostFor(logProbs.size));
      } finally {
        logProbs.dispose();
      }
    },
    async stepWithHidden(tokens) {
      const out = cache.stepWithHidden(tokens);
      try {
        return { logits: await out.logits.toFloat32(), hidden: await out.hidden!.toFloat32() };
      } finally {
        out.logits.dispose();
        out.hidden!.dispose();
      }
    },
    reorder: (beamIdx) => cache.reorder(beamIdx),
  };
  let out: GenerationOutput;
  try {
    out = await generate(stepper, inputs.batchSize, config, { seed: options.seed, sequenceScores: options.sequenceScores });
  } finally {
    cache.dispose();
  }
  if (greedyScores) out.sequencesScores = greedySequencesScores(out, stepLse, config);
  return out;
}

/** Right-pads encoded sequences into one batch. */
export function padBatch(sequences: number[][], padId = 0): EncodedInputs {
  const sourceLength = Math.max(1, ...sequences.map((s) => s.length));
  const inputIds = new Int32Array(sequences.length * sourceLength).fill(padId);
  const attentionMask = new Int32Array(sequences.length * sourceLength);
  sequences.forEach((s, b) => {
    inputIds.set(s, b * sourceLength);
    attentionMask.fill(1, b * sourceLength, b * sourceLength + s.length);
  });
  return { inputIds, attentionMask, batchSize: sequences.length, sourceLength };
}
