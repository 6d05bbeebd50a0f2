// Generation against Hugging Face's `model.generate` on the golden tiny T5 with the logits processors and beam
// options that t5-generate-golden.test.ts does not cover (tests/fixtures/golden/generate-modes.py made the
// fixture with transformers 4.57.6, each entry's ids the same in float64). Ids must be identical up to the first
// `</s>` (4.57 pads a finished beam hypothesis with `</s>`, 4.36 and we with 0); scores within the golden README's
// tolerances: 1e-4 absolute for beam scores, 1e-5 of the largest |logit| (~90) for greedy's processed logits.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import { generateIds } from '../generate/generate.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));
const inputs = new Map(
  (JSON.parse(readFileSync(`${dir}cases.json`, 'utf8')).cases as Array<{ name: string; input_ids: number[][]; attention_mask: number[][] }>)
    .map((c) => [c.name, c]),
);
const entries = JSON.parse(readFileSync(`${dir}generate-modes.json`, 'utf8')).entries as Array<{
  mode: string;
  input: string;
  kwargs: Record<string, unknown>;
  sequences: number[][];
  /** numbers, or '-inf' where HF's score was -inf (JSON has no infinities) */
  transition_scores: Array<Array<number | string>>;
  sequences_scores?: number[];
  beam_indices?: number[][];
}>;
const EOS = 1;

/** The ids up to and including the first `</s>` after the decoder start. */
function untilEos(row: number[]): number[] {
  const end = row.indexOf(EOS, 1);
  return end < 0 ? row : row.slice(0, end + 1);
}

function expectClose(got: number, want: number, tol: number, what: string): void {
  if (!Number.isFinite(want)) expect(got, what).toBe(want);
  else expect(Math.abs(got - want), `${what}: ${got} vs ${want}`).toBeLessThanOrEqual(tol);
}

let model: T5ForConditionalGeneration;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
});
afterAll(() => model?.dispose());

describe('generate matches Hugging Face with its processors and beam options', () => {
  it('the fixture covers every mode on several inputs', () => {
    expect(new Set(entries.map((e) => e.mode)).size).toBe(18);
    expect(entries.length).toBeGreaterThanOrEqual(60);
  });
  for (const e of entries) {
    it(`${e.mode} ${e.input} ${JSON.stringify(e.kwargs)}`, async () => {
      const c = inputs.get(e.input)!;
      const config = await loadGenerationConfig(dir, e.kwargs);
      const out = await generateIds(model, {
        inputIds: Int32Array.from(c.input_ids.flat()),
        attentionMask: Int32Array.from(c.attention_mask.flat()),
        batchSize: c.input_ids.length,
        sourceLength: c.input_ids[0]!.length,
      }, config);
      expect(out.sequences.map(untilEos)).toEqual(e.sequences.map(untilEos));
      const beams = e.beam_indices !== undefined;
      out.sequences.forEach((row, i) => {
        const n = untilEos(row).length - 1;
        for (let t = 0; t < n; t++) {
          expectClose(out.transitionScores[i]![t]!, Number(e.transition_scores[i]![t]!), beams ? 1e-4 : 1e-5 * 90, `row ${i} step ${t}`);
        }
        if (beams) {
          expect(out.beamIndices![i]!.slice(0, n)).toEqual(e.beam_indices![i]!.slice(0, n));
          expectClose(out.sequencesScores![i]!, e.sequences_scores![i]!, 1e-4, `row ${i} sequence score`);
        }
      });
    });
  }
});
