// Generation against Hugging Face's `model.generate` on the golden tiny T5: greedy, and beam search with
// no_repeat_ngram_size and length_penalty, single inputs and a padded batch. Ids must be identical; scores
// within the fixture README's tolerances (1e-4 absolute for beam scores; greedy transition scores are raw
// logits, compared like logits: 1e-5 of the largest |logit|, ~90 here).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import { generateIds } from '../generate/generate.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));
const cases = JSON.parse(readFileSync(`${dir}cases.json`, 'utf8')).cases as Array<{
  name: string;
  input_ids: number[][];
  attention_mask: number[][];
  generate: Record<string, {
    kwargs: Record<string, unknown>;
    sequences: number[][];
    sequences_scores?: number[];
    beam_indices?: number[][];
    transition_scores: number[][];
  }>;
}>;

let model: T5ForConditionalGeneration;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
});
afterAll(() => model?.dispose());

describe('generate matches Hugging Face', () => {
  for (const c of cases) {
    for (const key of ['greedy', 'beam_a', 'beam_b'] as const) {
      const g = c.generate[key];
      if (!g) continue;
      it(`${c.name} ${key} ${JSON.stringify(g.kwargs)}`, async () => {
        const config = await loadGenerationConfig(dir, g.kwargs);
        const out = await generateIds(model, {
          inputIds: Int32Array.from(c.input_ids.flat()),
          attentionMask: Int32Array.from(c.attention_mask.flat()),
          batchSize: c.input_ids.length,
          sourceLength: c.input_ids[0]!.length,
        }, config);
        expect(out.sequences).toEqual(g.sequences);
        if (key === 'greedy') {
          out.transitionScores.forEach((row, i) => {
            row.forEach((s, t) => expect(Math.abs(s - g.transition_scores[i]![t]!)).toBeLessThanOrEqual(1e-5 * 90));
          });
        } else {
          expect(out.beamIndices).toEqual(g.beam_indices);
          out.sequencesScores!.forEach((s, i) => expect(Math.abs(s - g.sequences_scores![i]!)).toBeLessThanOrEqual(1e-4));
          out.transitionScores.forEach((row, i) => {
            const n = g.beam_indices![i]!.filter((x) => x >= 0).length;
            for (let t = 0; t < n; t++) expect(Math.abs(row[t]! - g.transition_scores[i]![t]!)).toBeLessThanOrEqual(1e-4);
          });
        }
      });
    }
  }
});
