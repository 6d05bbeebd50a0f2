// Generation against Hugging Face's `model.generate` on the golden tiny T5: greedy, and beam search with
// no_repeat_ngram_size and length_penalty, single inputs and a padded batch. Ids must be identical; scores
// within the fixture README's tolerances (1e-4 absolute for beam scores; greedy transition scores are raw
// logits, compared like logits: 1e-5 of the largest |logit|, ~90 here).
// Then the logits processors and beam options cases.json does not cover (tests/fixtures/golden/generate-modes.py
// made that fixture with transformers 4.57.6, each entry's ids the same in float64): ids identical up to the
// first `</s>` (4.57 pads a finished beam hypothesis with `</s>`, 4.36 and we with 0), the same tolerances.
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

/** A case's padded sources as generateIds takes them. */
function sourceBatch(c: { input_ids: number[][]; attention_mask: number[][] }) {
  return {
    inputIds: Int32Array.from(c.input_ids.flat()),
    attentionMask: Int32Array.from(c.attention_mask.flat()),
    batchSize: c.input_ids.length,
    sourceLength: c.input_ids[0]!.length,
  };
}

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
        const out = await generateIds(model, sourceBatch(c), config);
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

describe('generate matches Hugging Face with its processors and beam options', () => {
  it('the fixture covers every mode on several inputs', () => {
    expect(new Set(entries.map((e) => e.mode)).size).toBe(18);
    expect(entries.length).toBeGreaterThanOrEqual(60);
  });
  for (const e of entries) {
    it(`${e.mode} ${e.input} ${JSON.stringify(e.kwargs)}`, async () => {
      const c = cases.find((x) => x.name === e.input)!;
      const config = await loadGenerationConfig(dir, e.kwargs);
      const out = await generateIds(model, sourceBatch(c), config);
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
