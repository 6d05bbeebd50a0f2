// Greedy search with the token choice on the GPU (generate/greedy-on-device.ts) against the host's greedySearch on
// the golden tiny T5: the same sequences, pads after eos, transition scores (bit for bit: the same logits), stop
// and NaN error, with and without recording a step ahead. Rows finish at different steps through eos ids picked
// from what the model generates.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor } from '../engine/tensor.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import type { ResolvedGenerationConfig } from '../generate/generation-config.ts';
import { generateIds, type EncodedInputs } from '../generate/generate.ts';
import { greedyOnDeviceSuits, setGreedyLookahead } from '../generate/greedy-on-device.ts';
import type { GenerationOutput } from '../generate/search-types.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));

// three inputs, the last two padded
const INPUTS: EncodedInputs = {
  inputIds: Int32Array.from([5, 9, 17, 33, 1, 8, 21, 1, 0, 0, 40, 2, 77, 1, 0]),
  attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0]),
  batchSize: 3,
  sourceLength: 5,
};

let model: T5ForConditionalGeneration;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
});
afterAll(() => {
  setGreedyLookahead('auto');
  model?.dispose();
});

async function config(kwargs: Record<string, unknown>): Promise<ResolvedGenerationConfig> {
  return loadGenerationConfig(dir, { max_new_tokens: 9, ...kwargs });
}

/** Host search, then the GPU's with and without lookahead: all three must agree exactly. */
async function allThree(c: ResolvedGenerationConfig): Promise<GenerationOutput> {
  expect(greedyOnDeviceSuits(c, false)).toBe(true);
  const host = await generateIds(model, INPUTS, c, { greedyOnDevice: false });
  for (const mode of ['off', 'on'] as const) {
    setGreedyLookahead(mode);
    const dev = await generateIds(model, INPUTS, c);
    expect([mode, dev.sequences]).toEqual([mode, host.sequences]);
    expect([mode, dev.transitionScores]).toEqual([mode, host.transitionScores]);
  }
  setGreedyLookahead('auto');
  return host;
}

describe('greedy search on the GPU equals the host search', () => {
  it('without eos: every row runs to max_new_tokens', async () => {
    const out = await allThree(await config({ eos_token_id: null }));
    expect(out.sequences.map((s) => s.length)).toEqual([10, 10, 10]);
  });

  it('rows finishing at different steps get pads after their eos', async () => {
    const free = await generateIds(model, INPUTS, await config({ eos_token_id: null }), { greedyOnDevice: false });
    // an eos id that ends row 0 at its third token; another that row 2 produces later, if any
    const eos = [free.sequences[0]![3]!];
    const late = free.sequences[2]!.slice(5).find((t) => !free.sequences[2]!.slice(1, 5).includes(t) && t !== eos[0]);
    if (late !== undefined) eos.push(late);
    const out = await allThree(await config({ eos_token_id: eos }));
    expect(out.sequences[0]!.slice(4).every((t) => t === 0)).toBe(true);
    expect(out.sequences.some((s) => s.slice(4).some((t) => t !== 0))).toBe(true); // some row ran on
  });

  it('stops as soon as every row has finished (the step recorded ahead is dropped)', async () => {
    const free = await generateIds(model, INPUTS, await config({ eos_token_id: null }), { greedyOnDevice: false });
    // every row's second token is an eos id: all finish at step 1
    const out = await allThree(await config({ eos_token_id: free.sequences.map((s) => s[2]!) }));
    expect(out.sequences.map((s) => s.length)).toEqual([3, 3, 3]);
  });

  it('max_length 1 and 2 run one step, as HF', async () => {
    for (const maxLength of [1, 2]) {
      const out = await allThree(await loadGenerationConfig(dir, { max_length: maxLength, eos_token_id: null }));
      expect(out.sequences.map((s) => s.length)).toEqual([2, 2, 2]);
    }
  });

  it('names the step, row and token of a NaN logit, as the host search', async () => {
    const name = model.params.has('lm_head.weight') ? 'lm_head.weight' : 'shared.weight';
    const old = model.params.get(name)!;
    const [vocab, d] = old.shape as [number, number];
    const data = await old.toFloat32();
    // a NaN in vocabulary row 77 of the output projection: every row's logit 77 is NaN from the first step
    data[77 * d + 3] = NaN;
    model.params.set(name, tensor(data, [vocab, d]));
    try {
      const c = await config({});
      const want = /generate: decoder step 0 returned NaN logits \(row 0, token 77\)/;
      await expect(generateIds(model, INPUTS, c, { greedyOnDevice: false })).rejects.toThrow(want);
      for (const mode of ['off', 'on'] as const) {
        setGreedyLookahead(mode);
        await expect(generateIds(model, INPUTS, c)).rejects.toThrow(want);
      }
    } finally {
      setGreedyLookahead('auto');
      model.params.get(name)!.dispose();
      model.params.set(name, old);
    }
  });

  it('is not used where the host needs the logits: processors, scores, beams', async () => {
    expect(greedyOnDeviceSuits(await config({ no_repeat_ngram_size: 2 }), false)).toBe(false);
    expect(greedyOnDeviceSuits(await config({ min_length: 4 }), false)).toBe(false);
    expect(greedyOnDeviceSuits(await config({ output_scores: true }), false)).toBe(false);
    expect(greedyOnDeviceSuits(await config({}), true)).toBe(false);
    expect(greedyOnDeviceSuits(await config({ num_beams: 2 }), false)).toBe(false);
  });
});
