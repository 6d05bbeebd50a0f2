// The cached decoder (model/t5-decoder-cache.ts: one position a step through t5.ts's decoder stack with
// past keys/values) against the full decoder (t5Forward over each row's whole prefix) on the golden tiny T5,
// with beams whose rows get reordered between steps as beam search does, with caches preallocated for every
// step or grown on the way; and it frees every buffer it made.
// Both sides are float32 GPU paths with different matmul shapes: logits agree to 1e-5 of the largest |logit|.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { noGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { memory } from '../engine/tensor.ts';
import { T5DecoderCache } from '../model/t5-decoder-cache.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));

// two inputs, the second padded; three beams each
const BATCH = 2;
const SOURCE = 5;
const BEAMS = 3;
const ROWS = BATCH * BEAMS;
const INPUT_IDS = [5, 9, 17, 33, 1, 8, 21, 1, 0, 0];
const ATTENTION_MASK = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
// after step t, new row r continues old row REORDERS[t][r]
const REORDERS = [[0, 0, 1, 3, 5, 4], [2, 1, 0, 3, 3, 3], [0, 1, 2, 3, 4, 5], [1, 1, 2, 5, 4, 3]];
const STEPS = REORDERS.length + 1;

let model: T5ForConditionalGeneration;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
});
afterAll(() => model?.dispose());

/** `maxPositions` below STEPS makes the self-attention caches grow while beams are reordered. */
function newCache(maxPositions?: number): T5DecoderCache {
  return new T5DecoderCache(
    model.context(), Int32Array.from(INPUT_IDS), Int32Array.from(ATTENTION_MASK), BATCH, SOURCE, BEAMS, maxPositions,
  );
}

/** Each row's next token after step t: spread over the vocabulary, different per row. */
function nextToken(t: number, r: number): number {
  return (t * 7 + r * 13 + 2) % model.config.vocab_size;
}

/** Next-token logits [rows, vocab] of t5Forward over each row's whole history (row r encodes input r / BEAMS). */
async function fullDecoderLogits(histories: number[][]): Promise<Float32Array> {
  const length = histories[0]!.length;
  const rowsOf = (perInput: number[]) =>
    Array.from({ length: ROWS }, (_, r) => perInput.slice(Math.floor(r / BEAMS) * SOURCE, Math.floor(r / BEAMS + 1) * SOURCE)).flat();
  const logits = noGrad(() =>
    tidy(() => model.forward({
      batchSize: ROWS,
      sourceLength: SOURCE,
      targetLength: length,
      inputIds: Int32Array.from(rowsOf(INPUT_IDS)),
      attentionMask: Int32Array.from(rowsOf(ATTENTION_MASK)),
      decoderInputIds: Int32Array.from(histories.flat()),
    }).logits),
  );
  const all = await logits.toFloat32();
  logits.dispose();
  const vocab = model.config.vocab_size;
  const out = new Float32Array(ROWS * vocab);
  for (let r = 0; r < ROWS; r++) out.set(all.subarray(((r + 1) * length - 1) * vocab, (r + 1) * length * vocab), r * vocab);
  return out;
}

describe('T5DecoderCache', () => {
  it.each([[STEPS], [2]])('matches the full decoder at every step, across beam reorders (%i positions preallocated)', async (maxPositions) => {
    const cache = newCache(maxPositions);
    let histories = Array.from({ length: ROWS }, () => [model.config.decoder_start_token_id]);
    try {
      for (let t = 0; t < STEPS; t++) {
        const step = cache.step(Int32Array.from(histories.map((h) => h[h.length - 1]!)));
        const got = await step.toFloat32();
        step.dispose();
        const want = await fullDecoderLogits(histories);
        const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        let maxDiff = 0;
        for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
        expect(maxDiff, `step ${t}`).toBeLessThanOrEqual(1e-5 * scale);
        expect(cache.length).toBe(t + 1);
        const order = REORDERS[t];
        if (!order) break;
        cache.reorder(Int32Array.from(order));
        histories = order.map((from, r) => [...histories[from]!, nextToken(t, r)]);
      }
    } finally {
      cache.dispose();
    }
  });

  it('frees every buffer it made', async () => {
    const before = memory();
    const cache = newCache(2);
    for (let t = 0; t < STEPS; t++) {
      const step = cache.step(Int32Array.from({ length: ROWS }, (_, r) => nextToken(t, r)));
      step.dispose();
      if (REORDERS[t]) cache.reorder(Int32Array.from(REORDERS[t]!));
    }
    cache.dispose();
    const after = memory();
    expect(after.bytesLive).toBe(before.bytesLive);
    expect(after.buffersLive).toBe(before.buffersLive);
  });
});
