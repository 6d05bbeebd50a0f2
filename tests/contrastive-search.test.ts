// Contrastive search (generate/contrastive-search.ts) against HF 4.36's contrastive_search restated per input over
// plain arrays (full sorts, the model's path kept apart from the recorded tokens once a row has finished), on a
// fake decoder whose logits and decoder outputs are pure functions of its path; with a vanishing α it is greedy
// search, on the fake decoder and on the golden model. Token choices must be identical; scores within 1e-6.
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { generate, generateIds, padBatch } from '../generate/generate.ts';
import { resolveGenerationConfig, type GenerationOptions } from '../generate/generation-config.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import type { DecoderStepper } from '../generate/search-types.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import { mulberry32 } from '../util/mulberry32.ts';
import { tableLogits, type LogitsFn } from './helpers/table-logits.ts';

const FIXTURE = new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url).pathname;

beforeAll(async () => {
  await initGpu();
});

/** Decoder outputs as a function of (input, last two tokens): random vectors of width 5. */
function tableHidden(seed: number, inputs: number, vocab: number, width = 5): LogitsFn {
  const rand = mulberry32(seed);
  const table = Float32Array.from({ length: inputs * (vocab + 1) * vocab * width }, () => rand() * 2 - 1);
  return (input, history) => {
    const last = history[history.length - 1]!;
    const prev = history.length >= 2 ? history[history.length - 2]! : vocab;
    const at = ((input * (vocab + 1) + prev) * vocab + last) * width;
    return table.slice(at, at + width);
  };
}

/** Rows track the tokens fed to them; reorder copies histories as the cache would. */
function fakeStepper(fn: LogitsFn, hidden: LogitsFn, vocab: number, inputs: number, perInput: number, withHidden = true): DecoderStepper {
  let rows = Array.from({ length: inputs * perInput }, (_, r) => ({ input: Math.floor(r / perInput), history: [] as number[] }));
  const feed = (tokens: Int32Array) => rows.forEach((row, r) => row.history.push(tokens[r]!));
  const logitsOf = () => {
    const out = new Float32Array(rows.length * vocab);
    rows.forEach((row, r) => out.set(fn(row.input, row.history), r * vocab));
    return out;
  };
  return {
    vocabSize: vocab,
    async step(tokens) {
      feed(tokens);
      return logitsOf();
    },
    ...(withHidden ? {
      async stepWithHidden(tokens: Int32Array) {
        feed(tokens);
        const width = hidden(0, [0]).length;
        const h = new Float32Array(rows.length * width);
        rows.forEach((row, r) => h.set(hidden(row.input, row.history), r * width));
        return { logits: logitsOf(), hidden: h };
      },
    } : {}),
    reorder(beamIdx) {
      rows = Array.from(beamIdx, (i) => ({ input: rows[i]!.input, history: [...rows[i]!.history] }));
    },
  };
}

const cos = (a: Float32Array, b: Float32Array) => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) (d += a[i]! * b[i]!), (na += a[i]! ** 2), (nb += b[i]! ** 2);
  return d / Math.sqrt(na * nb);
};

/** HF's contrastive_search for one input: top_k of softmax(logits), each candidate's decoder output against the
 * context, (1 - α)·p - α·max cos; finished rows record pad while the model follows the chosen candidates. */
function refContrastive(fn: LogitsFn, hidden: LogitsFn, input: number, o: { k: number; alpha: number; maxLength: number; eos: number; pad: number }): number[] {
  const path = [0];
  const seq = [0];
  const context = [hidden(input, path)];
  let logits = Array.from(fn(input, path));
  let finished = false;
  while (seq.length < o.maxLength) {
    const max = Math.max(...logits);
    const total = logits.reduce((s, x) => s + Math.exp(x - max), 0);
    const ids = logits.map((_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, o.k);
    let best = 0;
    let bestScore = -Infinity;
    ids.forEach((id, j) => {
      const h = hidden(input, [...path, id]);
      const score = (1 - o.alpha) * (Math.exp(logits[id]! - max) / total) - o.alpha * Math.max(...context.map((c) => cos(c, h)));
      if (score > bestScore) (bestScore = score), (best = j);
    });
    const chosen = ids[best]!;
    path.push(chosen);
    context.push(hidden(input, path));
    logits = Array.from(fn(input, path));
    seq.push(finished ? o.pad : chosen);
    if (chosen === o.eos) finished = true;
    if (finished && seq.at(-1) === o.eos) break;
  }
  return seq;
}

describe('contrastive search', () => {
  const vocab = 8;
  const fn = tableLogits(3, 3, vocab, { spread: 1.5, eosBias: -0.5 });
  const hidden = tableHidden(4, 3, vocab);
  const options = (o: GenerationOptions) => resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, max_length: 9, ...o });

  it('matches HF\'s contrastive_search over α and top_k, 3 inputs (each input ending on its own)', async () => {
    const seen = new Set<string>();
    for (const alpha of [0.3, 0.6, 0.9]) {
      for (const k of [2, 4, 8]) {
        const config = options({ penalty_alpha: alpha, top_k: k });
        const out = await generate(fakeStepper(fn, hidden, vocab, 3, k), 3, config);
        const want = [0, 1, 2].map((b) => refContrastive(fn, hidden, b, { k, alpha, maxLength: 9, eos: 1, pad: 0 }));
        const width = Math.max(...want.map((w) => w.length));
        // the batch runs until its longest row ends: the others get pads
        expect(out.sequences, JSON.stringify({ alpha, k })).toEqual(want.map((w) => [...w, ...new Array<number>(width - w.length).fill(0)]));
        expect(out.sequencesScores).toHaveLength(3);
        seen.add(JSON.stringify(out.sequences));
      }
    }
    expect(seen.size).toBeGreaterThan(3);
  });

  it('candidates with equal scores rank the lower token first, as the reference\'s sort', async () => {
    // logits on a grid of 0.5: most rows have ties inside their top_k and at its edge
    const coarse: LogitsFn = (input, history) => fn(input, history).map((x) => Math.round(x * 2) / 2);
    let ties = 0;
    for (let input = 0; input < 3; input++) {
      const row = Array.from(coarse(input, [0]));
      ties += new Set(row).size < row.length ? 1 : 0;
    }
    expect(ties).toBeGreaterThan(0);
    for (const k of [2, 3, 5]) {
      const out = await generate(fakeStepper(coarse, hidden, vocab, 3, k), 3, options({ penalty_alpha: 0.4, top_k: k }));
      const want = [0, 1, 2].map((b) => refContrastive(coarse, hidden, b, { k, alpha: 0.4, maxLength: 9, eos: 1, pad: 0 }));
      const width = Math.max(...want.map((w) => w.length));
      expect(out.sequences, `k ${k}`).toEqual(want.map((w) => [...w, ...new Array<number>(width - w.length).fill(0)]));
    }
  });

  it('with a vanishing α is greedy search; refuses a stepper without decoder outputs and top_k over the vocabulary', async () => {
    const greedy = await generate(fakeStepper(fn, hidden, vocab, 3, 1), 3, options({}));
    const near = await generate(fakeStepper(fn, hidden, vocab, 3, 4), 3, options({ penalty_alpha: 1e-12, top_k: 4 }));
    expect(near.sequences).toEqual(greedy.sequences);
    expect(near.transitionScores).toEqual(greedy.transitionScores);
    await expect(generate(fakeStepper(fn, hidden, vocab, 1, 4, false), 1, options({ penalty_alpha: 0.5, top_k: 4 })))
      .rejects.toThrow(/contrastive search \(penalty_alpha\) needs the decoder outputs/);
    await expect(generate(fakeStepper(fn, hidden, vocab, 1, 9), 1, options({ penalty_alpha: 0.5, top_k: 9 }))).rejects.toThrow(/`top_k` \(9\) is larger than the vocabulary/);
    // top_k 1 or α 0 is greedy search (HF's mode rule)
    expect(options({ penalty_alpha: 0.5, top_k: 1 }).contrastiveTopK).toBe(0);
    expect(options({ penalty_alpha: 0, top_k: 4 }).contrastiveTopK).toBe(0);
  });

  it('on the golden model: the decoder cache gives the decoder outputs; a vanishing α answers as greedy search', async () => {
    const model = await fromPretrained(FIXTURE);
    try {
      const batch = padBatch([[37, 12, 55, 1], [8, 99, 1]]);
      const greedy = await generateIds(model, batch, await loadGenerationConfig(FIXTURE, { max_new_tokens: 6 }));
      const near = await generateIds(model, batch, await loadGenerationConfig(FIXTURE, { max_new_tokens: 6, penalty_alpha: 1e-9, top_k: 5 }));
      expect(near.sequences).toEqual(greedy.sequences);
      const strong = await generateIds(model, batch, await loadGenerationConfig(FIXTURE, { max_new_tokens: 6, penalty_alpha: 0.8, top_k: 5 }));
      expect(strong.sequences).toHaveLength(2);
      expect(strong.sequencesScores).toHaveLength(2);
    } finally {
      model.dispose();
    }
  });
});
