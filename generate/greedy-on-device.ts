// Greedy search with the token choice on the GPU (kernels/greedy-next-tokens.ts), for the common case: no logits
// processors, no per-step scores, no sequence scores. It returns what greedySearch (greedy-search.ts) returns
// for the same model (tokens, pads after eos, transition scores, when it stops, the NaN error), but each step's
// tokens stay on the GPU as the next step's input ids, and the host reads 3 values a row instead of the step's
// logits (2 MB at batch 16) and scans none of them. On a real GPU the host also records step t+1 before it reads
// step t back, while the GPU runs step t; every row finished is then known a step late, and the step recorded
// meanwhile is dropped, as HF never runs it.
import { noGrad } from '../engine/autograd.ts';
import { gpu } from '../engine/gpu.ts';
import { tensor, type Tensor } from '../engine/tensor.ts';
import { GREEDY_OUT_FIELDS, greedyNextTokens } from '../kernels/greedy-next-tokens.ts';
import type { T5DecoderCache } from '../model/t5-decoder-cache.ts';
import type { ResolvedGenerationConfig } from './generation-config.ts';
import { checkGreedyArgs, nanLogitsError } from './greedy-search.ts';
import { buildLogitsProcessors } from './logits-processors.ts';
import { timeIsUp, type GenerationOutput } from './search-types.ts';

/** Whether greedySearchOnDevice gives this config's result: greedy, and nothing that needs the logits on the host. */
export function greedyOnDeviceSuits(config: ResolvedGenerationConfig, sequenceScores: boolean): boolean {
  return config.numBeams === 1 && !config.doSample && config.contrastiveTopK === 0 && !config.outputScores && !sequenceScores &&
    buildLogitsProcessors(config, 1, []).length === 0;
}

export type GreedyLookahead = 'auto' | 'on' | 'off';
let lookaheadMode: GreedyLookahead = 'auto';
/** Tests pin whether the host records a step ahead; 'auto': on a real GPU only. On lavapipe the GPU is the same two
 * cores as the host, so recording the next step while one runs only moves CPU time around: greedy b1 took 1,322 ms
 * with it against 1,246 without, in 6 alternations each (medians; batch 16 within the noise). */
export function setGreedyLookahead(mode: GreedyLookahead): void {
  lookaheadMode = mode;
}
function lookahead(): boolean {
  return lookaheadMode === 'auto' ? !gpu().info.isSoftware : lookaheadMode === 'on';
}

interface Recorded {
  /** the step's tokens on the GPU, the next step's input */
  next: Tensor;
  /** [rows, 3] for the host, being read back */
  values: Promise<Int32Array>;
}

export async function greedySearchOnDevice(
  cache: T5DecoderCache, batchSize: number, config: ResolvedGenerationConfig, vocab: number,
): Promise<GenerationOutput> {
  checkGreedyArgs(batchSize, config, vocab);
  const rows = batchSize;
  const eos = config.eosTokenIds;
  const pad = config.padTokenId;
  const inputIds: number[][] = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  const transition: number[][] = Array.from({ length: rows }, () => []);
  const unfinished = new Uint8Array(rows).fill(1);
  // HF's loop runs at least one step, then stops at max_length (decoder start token included)
  const steps = Math.max(1, config.maxLength - 1);

  const gpuUnfinished = tensor(new Int32Array(rows).fill(1), [rows], { dtype: 'i32' }).keep();
  const gpuEos = tensor(Int32Array.from(eos.length > 0 ? eos : [-1]), [Math.max(1, eos.length)], { dtype: 'i32' }).keep();
  let input: Tensor = tensor(new Int32Array(rows).fill(config.decoderStartTokenId), [rows], { dtype: 'i32' }).keep();

  const record = (): Recorded => {
    const chosen = noGrad(() => {
      const logits = cache.step(input);
      try {
        return greedyNextTokens(logits, gpuUnfinished, gpuEos, eos.length, pad ?? 0);
      } finally {
        logits.dispose();
      }
    });
    chosen.next.keep();
    chosen.out.keep();
    const values = chosen.out.toArray().finally(() => chosen.out.dispose()) as Promise<Int32Array>;
    // an unread rejection would surface as unhandled if the loop stops before reading this step
    values.catch(() => undefined);
    return { next: chosen.next, values };
  };

  /** Appends a step's tokens; false once every row has finished (HF's stop). */
  const take = (step: number, got: Int32Array): boolean => {
    const bits = new Float32Array(got.buffer, got.byteOffset, got.length);
    for (let r = 0; r < rows; r++) {
      const nan = got[r * GREEDY_OUT_FIELDS + 2]!;
      if (nan >= 0) throw nanLogitsError(step, r * vocab + nan, vocab);
    }
    let anyUnfinished = false;
    for (let r = 0; r < rows; r++) {
      const token = got[r * GREEDY_OUT_FIELDS]!;
      inputIds[r]!.push(token);
      transition[r]!.push(bits[r * GREEDY_OUT_FIELDS + 1]!);
      if (eos.length > 0 && eos.includes(token)) unfinished[r] = 0;
      if (unfinished[r]) anyUnfinished = true;
    }
    return eos.length === 0 || anyUnfinished;
  };

  // with lookahead, step t+1 is recorded (and submitted by its read) before the wait for step t; once every row
  // has finished, that step is dropped unread
  const ahead = lookahead();
  const start = performance.now();
  let pending: Recorded | null = null;
  try {
    let stopped = false;
    for (let step = 0; step < steps && !stopped; step++) {
      const rec = record();
      input.dispose();
      input = rec.next;
      if (!ahead) {
        stopped = !take(step, await rec.values) || timeIsUp(config.maxTime, start);
        continue;
      }
      if (pending) stopped = !take(step - 1, await pending.values) || timeIsUp(config.maxTime, start);
      pending = rec;
    }
    if (ahead && !stopped) take(steps - 1, await pending!.values);
  } finally {
    input.dispose();
    gpuUnfinished.dispose();
    gpuEos.dispose();
  }
  return { sequences: inputIds, transitionScores: transition };
}
