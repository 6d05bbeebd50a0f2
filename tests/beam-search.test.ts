// Beam search against (1) Hugging Face itself: the golden qa0 beam_a per-step scores replayed through a fake
// stepper, (2) a reference beam search written here independently (plain arrays, a full sort of every
// candidate, no stepper, no cache reorders) over a grid of options, (3) brute force: with more beams than live
// paths nothing is pruned, so the returned hypotheses must be the globally best sequences, and (4) a stepper
// that tracks each cache row through reorder() and computes its logits from that row's own history.
//
// Tolerances: ids and beam indices must be identical. Scores: the search and the references do the same float32
// operations, their log-softmax differing only in float64 rounding order, so 1e-6 absolute (values are O(1-10)).
// Against HF's fixture 1e-6 too: the replay reproduces HF's float32 numbers up to the re-normalisation
// described at the replay stepper (measured ~1.3e-7).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BeamHypotheses, beamSearch, sampleCandidates, topKCandidates } from '../generate/beam-search.ts';
import { mulberry32 } from '../util/mulberry32.ts';
import { resolveGenerationConfig, type EarlyStopping, type GenerationOptions } from '../generate/generation-config.ts';
import { generate } from '../generate/generate.ts';
import { logSoftmaxRows } from '../generate/logits-processors.ts';
import type { DecoderStepper, GenerationOutput } from '../generate/search-types.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { tableLogits, type LogitsFn } from './helpers/table-logits.ts';

const FIXTURE_DIR = new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url);
const fixturePath = (name: string): string => new URL(name, FIXTURE_DIR).pathname;

// ---------------------------------------------------------------------------------------------------------------
// Fake models

/** A decoder whose cache is each row's (input, token history), reordered as HF's `_reorder_cache` would. */
class TrackingStepper implements DecoderStepper {
  rows: { input: number; history: number[] }[];
  readonly reorders: Int32Array[] = [];
  readonly fed: Int32Array[] = [];

  constructor(readonly vocabSize: number, batch: number, readonly beams: number, private readonly fn: LogitsFn) {
    this.rows = Array.from({ length: batch * beams }, (_, r) => ({ input: Math.floor(r / beams), history: [] }));
  }

  async step(tokens: Int32Array): Promise<Float32Array> {
    expect(tokens.length).toBe(this.rows.length);
    this.fed.push(Int32Array.from(tokens));
    const out = new Float32Array(this.rows.length * this.vocabSize);
    this.rows.forEach((row, r) => {
      row.history.push(tokens[r]!);
      out.set(this.fn(row.input, row.history), r * this.vocabSize);
    });
    return out;
  }

  reorder(beamIdx: Int32Array): void {
    expect(beamIdx.length).toBe(this.rows.length);
    this.reorders.push(Int32Array.from(beamIdx));
    this.rows = Array.from(beamIdx, (i) => {
      expect(i).toBeGreaterThanOrEqual(0);
      expect(i).toBeLessThan(this.rows.length);
      return { input: this.rows[i]!.input, history: [...this.rows[i]!.history] };
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reference: HF 4.36 beam search restated over plain arrays, one input at a time (inputs do not interact: a done
// input only receives pads), with one change of later versions: is_done weighs the best running beam, not the best
// candidate (generate/beam-search.ts). Every candidate is scored and the whole list sorted.

interface RefOptions {
  numBeams: number;
  maxLength: number;
  lengthPenalty: number;
  earlyStopping: EarlyStopping;
  eos: number[];
  pad: number;
  start: number;
  numReturn: number;
  ngram: number;
  minLength: number;
  minNewTokens: number;
  /** HF's repetition_penalty; 1: off */
  penalty: number;
  /** beam sampling (HF's beam_sample) with a temperature warper and the search's seeded stream; batch 1 only (the
   * stream is drawn input by input within a step) */
  sample?: { temperature: number; seed: number };
}

/** log_softmax in float64 rounded to float32, then the bans: n-gram repeats and eos before the minimum length.
 * `diversity` (group beam search): HF's Hamming penalty, subtracted first (float32). */
function refProcessed(fn: LogitsFn, input: number, history: readonly number[], o: RefOptions, diversity?: (v: number) => number): number[] {
  const logits = Array.from(fn(input, history));
  const max = Math.max(...logits);
  const lse = Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
  const out = logits.map((x, v) => {
    const lp = Math.fround(x - max - lse);
    return diversity ? Math.fround(lp - diversity(v)) : lp;
  });
  // the repetition penalty first (log-probs are negative: multiplied), each token of the row once, float32
  if (o.penalty !== 1) for (const t of new Set(history)) out[t] = Math.fround(out[t]! < 0 ? out[t]! * o.penalty : out[t]! / o.penalty);
  const n = o.ngram;
  if (n > 0 && history.length >= n - 1) {
    out.forEach((_, v) => {
      const gram = [...history.slice(history.length - (n - 1)), v];
      for (let i = 0; i + n <= history.length; i++) {
        if (gram.every((t, j) => history[i + j] === t)) out[v] = -Infinity;
      }
    });
  }
  if (history.length < o.minLength || history.length - 1 < o.minNewTokens) for (const e of o.eos) out[e] = -Infinity;
  return out;
}

interface RefHyp { score: number; tokens: number[]; path: number[]; trans: number[]; order: number; eos?: number }

function refBeamOne(fn: LogitsFn, input: number, vocab: number, o: RefOptions): RefHyp[] {
  const K = o.numBeams;
  // beam sampling starts every beam alive
  let beams = Array.from({ length: K }, (_, k) => ({ tokens: [o.start], score: k === 0 || o.sample ? 0 : -1e9, path: [] as number[], trans: [] as number[] }));
  const draws = o.sample ? mulberry32(o.sample.seed) : null;
  const warp = (x: number) => (o.sample ? Math.fround(x / Math.fround(o.sample.temperature)) : x);
  const hyps: RefHyp[] = [];
  let order = 0;
  const add = (tokens: number[], sum: number, genLen: number, path: number[], trans: number[], eos?: number): void => {
    const score = sum / genLen ** o.lengthPenalty;
    if (hyps.length < K || score > Math.min(...hyps.map((h) => h.score))) {
      hyps.push({ score, tokens, path, trans, order: order++, eos });
      if (hyps.length > K) {
        const worst = Math.min(...hyps.map((h) => h.score));
        hyps.splice(hyps.findIndex((h) => h.score === worst), 1);
      }
    }
  };
  let curLen = 1;
  let done = false;
  for (;;) {
    const lps = beams.map((b) => refProcessed(fn, input, b.tokens, o));
    const cands: { score: number; k: number; v: number }[] = [];
    beams.forEach((b, k) => lps[k]!.forEach((x, v) => cands.push({ score: warp(Math.fround(x + b.score)), k, v })));
    let top: typeof cands;
    if (draws) {
      // HF: 2 x num_beams draws without replacement from softmax of the warped scores, sorted by score
      const drawn = sampleCandidates(Float32Array.from(cands, (c) => c.score), 0, K, vocab, 2 * K, draws);
      top = Array.from(drawn.index, (i) => cands[i]!);
    } else {
      cands.sort((a, b) => (a.score > b.score ? -1 : a.score < b.score ? 1 : a.k * vocab + a.v - (b.k * vocab + b.v)));
      top = cands.slice(0, Math.max(2, 1 + o.eos.length) * K);
    }
    const next: typeof beams = [];
    for (let rank = 0; rank < top.length && next.length < K; rank++) {
      const c = top[rank]!;
      const src = beams[c.k]!;
      const row = input * K + c.k;
      if (o.eos.includes(c.v)) {
        if (rank < K) add(src.tokens, c.score, curLen, [...src.path, row], [...src.trans, warp(lps[c.k]![o.eos[0]!]!)], c.v);
      } else {
        next.push({ tokens: [...src.tokens, c.v], score: c.score, path: [...src.path, row], trans: [...src.trans, warp(lps[c.k]![c.v]!)] });
      }
    }
    if (hyps.length >= K) {
      const worst = Math.min(...hyps.map((h) => h.score));
      const len = o.earlyStopping === 'never' && o.lengthPenalty > 0 ? o.maxLength - 1 : curLen;
      // the best running beam (transformers' vectorized _beam_search); beam sampling: 4.36's best candidate
      const best = draws ? top[0]!.score : next[0]!.score;
      done = o.earlyStopping === true || worst >= best / len ** o.lengthPenalty;
    }
    beams = next;
    curLen++;
    if (done || curLen >= o.maxLength) break;
  }
  if (!done) for (const b of beams) add(b.tokens, b.score, b.tokens.length - 1, b.path, b.trans);
  return [...hyps].sort((a, b) => b.score - a.score || b.order - a.order).slice(0, o.numReturn);
}

function refBeamSearch(fn: LogitsFn, batch: number, vocab: number, o: RefOptions): GenerationOutput {
  const best = Array.from({ length: batch }, (_, b) => refBeamOne(fn, b, vocab, o)).flat();
  const width = Math.min(Math.max(...best.map((h) => h.tokens.length)) + 1, o.maxLength);
  const steps = Math.max(...best.map((h) => h.path.length));
  return {
    sequences: best.map((h) => {
      const row = [...h.tokens];
      if (row.length < width) row.push(o.eos[0]!);
      while (row.length < width) row.push(o.pad);
      return row;
    }),
    sequencesScores: best.map((h) => Math.fround(h.score)),
    beamIndices: best.map((h) => [...h.path, ...new Array<number>(width - h.path.length).fill(-1)]),
    transitionScores: best.map((h) => [...h.trans, ...new Array<number>(steps - h.trans.length).fill(0)]),
  };
}

/** Every sequence the processors allow, with HF's hypothesis score, best first. */
function bruteForce(fn: LogitsFn, input: number, o: RefOptions): { tokens: number[]; score: number }[] {
  const out: { tokens: number[]; score: number }[] = [];
  const walk = (tokens: number[], sum: number): void => {
    if (tokens.length >= o.maxLength) {
      out.push({ tokens, score: sum / (tokens.length - 1) ** o.lengthPenalty });
      return;
    }
    refProcessed(fn, input, tokens, o).forEach((lp, v) => {
      if (lp === -Infinity) return;
      const s = Math.fround(sum + lp);
      if (o.eos.includes(v)) out.push({ tokens: [...tokens, v], score: s / tokens.length ** o.lengthPenalty });
      else walk([...tokens, v], s);
    });
  };
  walk([o.start], 0);
  return out.sort((a, b) => b.score - a.score);
}

function expectSameOutput(got: GenerationOutput, want: GenerationOutput, what: string): void {
  expect(got.sequences, what).toEqual(want.sequences);
  expect(got.beamIndices, what).toEqual(want.beamIndices);
  expect(got.sequencesScores!.length, what).toBe(want.sequencesScores!.length);
  got.sequencesScores!.forEach((s, i) => expect(Math.abs(s - want.sequencesScores![i]!), what).toBeLessThanOrEqual(1e-6));
  expect(got.transitionScores.map((r) => r.length), what).toEqual(want.transitionScores.map((r) => r.length));
  got.transitionScores.forEach((row, i) =>
    row.forEach((s, t) => expect(Math.abs(s - want.transitionScores[i]![t]!), `${what} row ${i} step ${t}`).toBeLessThanOrEqual(1e-6)),
  );
}

const refOptions = (o: Partial<RefOptions>): RefOptions => ({
  numBeams: 3, maxLength: 8, lengthPenalty: 1, earlyStopping: false, eos: [1], pad: 0, start: 0, numReturn: 1, ngram: 0,
  minLength: 0, minNewTokens: 0, penalty: 1, ...o,
});

const hfOptions = (o: RefOptions): GenerationOptions => ({
  num_beams: o.numBeams, max_length: o.maxLength, length_penalty: o.lengthPenalty, early_stopping: o.earlyStopping,
  eos_token_id: o.eos.length === 1 ? o.eos[0]! : o.eos, pad_token_id: o.pad, decoder_start_token_id: o.start,
  num_return_sequences: o.numReturn, no_repeat_ngram_size: o.ngram, min_length: o.minLength,
  ...(o.minNewTokens ? { min_new_tokens: o.minNewTokens } : {}),
  ...(o.penalty !== 1 ? { repetition_penalty: o.penalty } : {}),
  ...(o.sample ? { do_sample: true, temperature: o.sample.temperature, top_k: 0 } : {}),
});

async function runBeam(fn: LogitsFn, batch: number, vocab: number, o: RefOptions): Promise<{ out: GenerationOutput; stepper: TrackingStepper }> {
  const stepper = new TrackingStepper(vocab, batch, o.numBeams, fn);
  const out = await generate(stepper, batch, resolveGenerationConfig({}, hfOptions(o)), { seed: o.sample?.seed });
  return { out, stepper };
}

// ---------------------------------------------------------------------------------------------------------------

describe('beam search: Hugging Face golden replay (qa0 beam_a)', () => {
  it('replays HF per-step scores into HF sequences, sequence score, beam indices and transition scores', async () => {
    const cases = JSON.parse(readFileSync(fixturePath('cases.json'), 'utf8'));
    const g = cases.cases.find((c: { name: string }) => c.name === 'qa0').generate.beam_a;
    const tensor = (await readSafetensors(fixturePath('outputs.safetensors'), { names: [g.scores] })).get(g.scores)!;
    const [steps, beams, vocab] = tensor.shape as [number, number, number];
    // HF's scores are log_softmax THEN the n-gram ban: banned tokens' probability is gone, a row's exp-sum is
    // 1 - m. Logits that give back exactly these scores after our log_softmax + ban: the scores themselves,
    // with each banned entry (-inf) set to log(m / #banned) so the row sums to 1 again. Our ban only puts the
    // -inf back where our own histories say so, which is what this checks.
    let step = 0;
    const stepper: DecoderStepper = {
      vocabSize: vocab,
      async step(tokens) {
        expect(tokens.length).toBe(beams);
        expect(step).toBeLessThan(steps);
        const out = tensor.data.slice(step * beams * vocab, (step + 1) * beams * vocab);
        for (let r = 0; r < beams; r++) {
          let sum = 0;
          let banned = 0;
          for (let i = r * vocab; i < (r + 1) * vocab; i++) out[i] === -Infinity ? banned++ : (sum += Math.exp(out[i]!));
          const fill = 1 - sum > 1e-6 ? Math.log((1 - sum) / banned) : -Infinity;
          for (let i = r * vocab; i < (r + 1) * vocab; i++) if (out[i] === -Infinity) out[i] = fill;
        }
        step++;
        return out;
      },
      reorder() {},
    };
    const genConfig = JSON.parse(readFileSync(fixturePath('generation_config.json'), 'utf8'));
    const config = resolveGenerationConfig(genConfig, { ...g.kwargs, output_scores: true });
    const out = await generate(stepper, 1, config);
    expect(step).toBe(steps); // HF ran 16 steps before 4 hypotheses were in (early_stopping=True)
    expect(out.sequences).toEqual(g.sequences);
    expect(out.beamIndices).toEqual(g.beam_indices);
    expect(Math.abs(out.sequencesScores![0]! - g.sequences_scores[0])).toBeLessThanOrEqual(1e-6);
    expect(out.transitionScores[0]!.length).toBe(g.transition_scores[0].length);
    out.transitionScores[0]!.forEach((s, t) => expect(Math.abs(s - g.transition_scores[0][t])).toBeLessThanOrEqual(1e-6));
    // our processed scores at every step and row: HF's, -inf (n-gram bans) at the same places
    expect(out.scores!.length).toBe(steps);
    out.scores!.forEach((s, t) => {
      const ref = tensor.data.subarray(t * beams * vocab, (t + 1) * beams * vocab);
      let maxDiff = 0;
      let infMismatch = 0;
      for (let i = 0; i < ref.length; i++) {
        if ((ref[i] === -Infinity) !== (s[i] === -Infinity)) infMismatch++;
        else if (ref[i] !== -Infinity) maxDiff = Math.max(maxDiff, Math.abs(s[i]! - ref[i]!));
      }
      expect(infMismatch, `step ${t}`).toBe(0);
      expect(maxDiff, `step ${t}`).toBeLessThanOrEqual(1e-6);
    });
  });

  it('the fixture agrees with our reading of HF: sequences_scores = sum of log-probs / n^length_penalty, n counting </s>', () => {
    const cases = JSON.parse(readFileSync(fixturePath('cases.json'), 'utf8'));
    let checked = 0;
    for (const c of cases.cases) {
      for (const key of ['beam_a', 'beam_b']) {
        const g = c.generate[key];
        const lp = g.kwargs.length_penalty ?? 1;
        g.sequences.forEach((seq: number[], i: number) => {
          const n = g.beam_indices[i].filter((x: number) => x >= 0).length;
          const sum = g.transition_scores[i].slice(0, n).reduce((a: number, b: number) => a + b, 0);
          // float32 running sums in HF vs a float64 sum here: 1e-5
          expect(Math.abs(sum / n ** lp - g.sequences_scores[i]), `${c.name} ${key} row ${i}`).toBeLessThanOrEqual(1e-5);
          const ended = seq.indexOf(1, 1) > 0;
          expect(n, `${c.name} ${key} row ${i}`).toBe(ended ? seq.indexOf(1, 1) : seq.length - 1);
          checked++;
        });
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});

describe('beam search: against the reference implementation', () => {
  const vocab = 6;
  it('matches over early_stopping x length_penalty x no_repeat_ngram_size x min_length x num_return_sequences, batch 2', async () => {
    const fn = tableLogits(11, 2, vocab, { eosBias: 1.5 }); // a seed where early_stopping false and "never" differ
    const results = new Map<string, string>();
    let combos = 0;
    for (const numBeams of [2, 3]) {
      for (const maxLength of [5, 9]) {
        for (const lengthPenalty of [0.5, 1, 2, -0.5]) {
          for (const earlyStopping of [true, false, 'never'] as const) {
            for (const ngram of [0, 2]) {
              for (const minLength of [0, 4]) {
                const numReturn = numBeams === 3 ? 2 : 1;
                const o = refOptions({ numBeams, maxLength, lengthPenalty, earlyStopping, ngram, minLength, numReturn });
                const what = JSON.stringify(o);
                const { out } = await runBeam(fn, 2, vocab, o);
                expectSameOutput(out, refBeamSearch(fn, 2, vocab, o), what);
                results.set(what, JSON.stringify(out.sequences));
                combos++;
              }
            }
          }
        }
      }
    }
    expect(combos).toBe(2 * 2 * 4 * 3 * 2 * 2);
    // the grid must exercise what it claims: each option changes some result, and the two inputs differ
    const differs = (key: keyof RefOptions, a: unknown, b: unknown): number =>
      [...results.keys()].filter((k) => {
        const o = JSON.parse(k) as RefOptions;
        if (o[key] !== a) return false;
        const other = results.get(JSON.stringify({ ...o, [key]: b }));
        return other !== undefined && other !== results.get(k);
      }).length;
    expect(differs('earlyStopping', true, false)).toBeGreaterThan(0);
    expect(differs('earlyStopping', false, 'never')).toBeGreaterThan(0);
    expect(differs('lengthPenalty', 0.5, 2)).toBeGreaterThan(0);
    expect(differs('ngram', 0, 2)).toBeGreaterThan(0);
    expect(differs('minLength', 0, 4)).toBeGreaterThan(0);
    const sample = JSON.parse(results.values().next().value!) as number[][];
    expect(sample[0]).not.toEqual(sample[sample.length - 1]);
  });

  it('matches with several eos ids (top 3 x num_beams candidates, eos_token_id[0] appended) and min_new_tokens', async () => {
    const fn = tableLogits(11, 2, vocab, { eosBias: 1, eos: [2, 1] });
    let endedByOne = 0;
    for (const earlyStopping of [true, false, 'never'] as const) {
      for (const minNewTokens of [0, 3]) {
        const o = refOptions({ numBeams: 3, maxLength: 8, eos: [2, 1], earlyStopping, minNewTokens, numReturn: 3 });
        const { out } = await runBeam(fn, 2, vocab, o);
        expectSameOutput(out, refBeamSearch(fn, 2, vocab, o), JSON.stringify(o));
        for (const seq of out.sequences) {
          if (minNewTokens) expect(seq.slice(1, 4).filter((t) => t === 1 || t === 2)).toEqual([]);
          expect(seq.slice(1)).not.toContain(1); // a hypothesis that ended in 1 is written with eos_token_id[0] = 2
        }
        // ... and some returned hypotheses did end in 1 (the reference knows)
        for (const b of [0, 1]) endedByOne += refBeamOne(fn, b, vocab, o).filter((h) => h.eos === 1).length;
      }
    }
    expect(endedByOne).toBeGreaterThan(0);
  });

  it('breaks exact ties by the lowest flattened index (torch.topk), later-added hypothesis first at the end', async () => {
    const flat: LogitsFn = () => new Float32Array(vocab); // every token equally likely
    for (const earlyStopping of [true, false] as const) {
      const o = refOptions({ numBeams: 3, maxLength: 5, earlyStopping, numReturn: 3 });
      const { out } = await runBeam(flat, 1, vocab, o);
      expectSameOutput(out, refBeamSearch(flat, 1, vocab, o), JSON.stringify(o));
    }
    const { out } = await runBeam(flat, 1, vocab, refOptions({ numBeams: 2, maxLength: 3, earlyStopping: true, numReturn: 2 }));
    // step 0: eos at rank 1 finishes [0, </s>] (score -ln 6); beams [0,0] and [0,2]. Step 1: eos at rank 1 (from
    // beam 0) finishes [0,0,</s>] with -2 ln 6 / 2, the same score; 2 hypotheses, early stopping: done. The
    // later-added one comes first.
    expect(out.sequences).toEqual([[0, 0, 1], [0, 1, 0]]);
  });
});

/**
 * HF's group_beam_search for one input, restated: groups of S beams searched in order within each step, group g's
 * log-probs lowered by penalty x (times earlier groups chose the token this step), each group walking its top 2S
 * candidates with its own finished hypotheses and done flag; the best of all groups' hypotheses at the end.
 */
function refGroupOne(fn: LogitsFn, input: number, vocab: number, o: RefOptions, groups: number, penalty: number): RefHyp[] {
  const S = o.numBeams / groups;
  const state = Array.from({ length: groups }, () => ({
    beams: Array.from({ length: S }, (_, k) => ({ tokens: [o.start], score: k === 0 ? 0 : -1e9, path: [] as number[], trans: [] as number[] })),
    hyps: [] as RefHyp[],
    done: false,
  }));
  let order = 0;
  const add = (hyps: RefHyp[], tokens: number[], sum: number, genLen: number, path: number[], trans: number[]): void => {
    const score = sum / genLen ** o.lengthPenalty;
    if (hyps.length < S || score > Math.min(...hyps.map((h) => h.score))) {
      hyps.push({ score, tokens, path, trans, order: order++ });
      if (hyps.length > S) hyps.splice(hyps.findIndex((h) => h.score === Math.min(...hyps.map((x) => x.score))), 1);
    }
  };
  let curLen = 1;
  for (;;) {
    const chosen: number[] = [];
    for (const st of state) {
      const count = (v: number) => chosen.filter((t) => t === v).length;
      const lps = st.beams.map((b) => refProcessed(fn, input, b.tokens, o, (v) => Math.fround(Math.fround(penalty) * count(v))));
      const next: typeof st.beams = [];
      if (st.done) {
        // a done group's beams get pad tokens, score 0 and the group's first row
        for (let k = 0; k < S; k++) next.push({ tokens: [...st.beams[0]!.tokens, o.pad], score: 0, path: [...st.beams[0]!.path, input * S], trans: [...st.beams[0]!.trans, lps[0]![o.pad]!] });
      } else {
        const cands: { score: number; k: number; v: number }[] = [];
        st.beams.forEach((b, k) => lps[k]!.forEach((x, v) => cands.push({ score: Math.fround(x + b.score), k, v })));
        cands.sort((a, b) => (a.score > b.score ? -1 : a.score < b.score ? 1 : a.k * vocab + a.v - (b.k * vocab + b.v)));
        const top = cands.slice(0, 2 * S);
        for (let rank = 0; rank < top.length && next.length < S; rank++) {
          const c = top[rank]!;
          const src = st.beams[c.k]!;
          const row = input * S + c.k;
          if (o.eos.includes(c.v)) {
            if (rank < S) add(st.hyps, src.tokens, c.score, curLen, [...src.path, row], [...src.trans, lps[c.k]![o.eos[0]!]!]);
          } else {
            next.push({ tokens: [...src.tokens, c.v], score: c.score, path: [...src.path, row], trans: [...src.trans, lps[c.k]![c.v]!] });
          }
        }
        if (st.hyps.length >= S) {
          const worst = Math.min(...st.hyps.map((h) => h.score));
          const len = o.earlyStopping === 'never' && o.lengthPenalty > 0 ? o.maxLength - 1 : curLen;
          st.done = o.earlyStopping === true || worst >= top[0]!.score / len ** o.lengthPenalty;
        }
      }
      st.beams = next;
      chosen.push(...next.map((b) => b.tokens.at(-1)!));
    }
    curLen++;
    if (state.every((st) => st.done) || curLen >= o.maxLength) break;
  }
  for (const st of state) if (!st.done) for (const b of st.beams) add(st.hyps, b.tokens, b.score, b.tokens.length - 1, b.path, b.trans);
  // HF: the groups' hypotheses concatenated, a stable sort ascending, the best popped from the end
  const all = state.flatMap((st) => st.hyps).map((h, i) => ({ h, i }));
  all.sort((a, b) => a.h.score - b.h.score || a.i - b.i);
  return all.reverse().slice(0, o.numReturn).map((x) => x.h);
}

describe('group (diverse) beam search, HF 4.36 group_beam_search', () => {
  it('matches the reference over groups, penalties, length penalties and early stopping, batch 2', async () => {
    const vocab = 7;
    const fn = tableLogits(13, 2, vocab, { eosBias: 0.8 });
    let differs = 0;
    for (const [numBeams, groups] of [[4, 2], [6, 3], [4, 4]]) {
      for (const penalty of [0.5, 3]) {
        for (const [lengthPenalty, earlyStopping, repetition, ngram] of [[1, false, 1, 0], [2, true, 1, 0], [1, 'never', 1.5, 2]] as const) {
          // the repetition penalty scales what the Hamming penalty left: HF's order (diversity first) matters
          const o = refOptions({ numBeams, lengthPenalty, earlyStopping, maxLength: 7, numReturn: 2, penalty: repetition, ngram });
          const config = resolveGenerationConfig({}, { ...hfOptions(o), num_beam_groups: groups, diversity_penalty: penalty });
          const out = await generate(new TrackingStepper(vocab, 2, numBeams, fn), 2, config);
          const best = [0, 1].flatMap((b) => refGroupOne(fn, b, vocab, o, groups, penalty));
          const width = Math.min(Math.max(...best.map((h) => h.tokens.length)) + 1, o.maxLength);
          const what = JSON.stringify({ o, groups, penalty });
          expect(out.sequences, what).toEqual(best.map((h) => [...h.tokens, ...(h.tokens.length < width ? [o.eos[0]!] : []), ...new Array<number>(Math.max(0, width - h.tokens.length - 1)).fill(o.pad)]));
          out.sequencesScores!.forEach((sc, i) => expect(Math.abs(sc - Math.fround(best[i]!.score)), what).toBeLessThanOrEqual(1e-6));
          if (JSON.stringify(out.sequences) !== JSON.stringify((await runBeam(fn, 2, vocab, o)).out.sequences)) differs++;
        }
      }
    }
    // the groups make a difference to plain beam search somewhere
    expect(differs).toBeGreaterThan(2);
  });

  it('records each step\'s processed scores in the stepper\'s row order: group 1 lowered where group 0 chose', async () => {
    const vocab = 7;
    const fn = tableLogits(13, 1, vocab);
    const o = refOptions({ numBeams: 4, maxLength: 4 });
    const config = resolveGenerationConfig({}, { ...hfOptions(o), num_beam_groups: 2, diversity_penalty: 2, output_scores: true });
    const out = await generate(new TrackingStepper(vocab, 1, 4, fn), 1, config);
    const first = out.scores![0]!;
    const plain = logSoftmaxRows(fn(0, [0]), 1, vocab);
    // rows 0-1 (group 0) are the plain log-probs; rows 2-3 (group 1) lose 2 at the two tokens group 0 kept (its
    // two best from its one live beam, eos aside), and only there
    expect(Array.from(first.subarray(0, vocab))).toEqual(Array.from(plain));
    const kept = [...plain.keys()].filter((t) => t !== 1).sort((a, b) => plain[b]! - plain[a]!).slice(0, 2);
    const want = Array.from(plain, (x, t) => (kept.includes(t) ? Math.fround(x - 2) : x));
    expect(Array.from(first.subarray(2 * vocab, 3 * vocab))).toEqual(want);
  });
});

describe('beam sampling (do_sample with num_beams > 1, HF 4.36 beam_sample)', () => {
  it('sampleCandidates draws without replacement by inverse CDF: the first draw follows softmax, the rest the mass left', () => {
    // one beam, probabilities 0.1 .. 0.4: 10,000 evenly spaced u give each first draw in proportion
    const warped = Float32Array.from([0.1, 0.2, 0.3, 0.4].map(Math.log));
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 10000; i++) {
      const u = Math.floor(((i + 0.5) / 10000) * 4294967296);
      counts[sampleCandidates(warped, 0, 1, 4, 1, () => u).index[0]!]!++;
    }
    counts.forEach((c, t) => expect(Math.abs(c - 1000 * (t + 1))).toBeLessThanOrEqual(1));
    // two draws: distinct, sorted by score; u = 0.5 picks token 2 (cumulative 0.1, 0.3, 0.6), then u = 0.5 of the
    // mass left (0.1, 0.2, 0.4 of 0.7) picks token 3 (0.35 falls in [0.3, 0.7))
    const two = sampleCandidates(warped, 0, 1, 4, 2, () => 2147483648);
    expect(Array.from(two.index)).toEqual([3, 2]);
    expect(Array.from(two.value)).toEqual([warped[3], warped[2]]);
    // over two beams (rows 1-2 of a batch): flat indices beam * vocab + token
    const rows = Float32Array.from([0, 0, 0, 0, -Infinity, -Infinity, -Infinity, 0, 5, -Infinity, -Infinity, -Infinity]);
    const picked = sampleCandidates(rows, 1, 2, 4, 2, () => 0);
    expect(Array.from(picked.index).sort()).toEqual([3, 4]);
    expect(() => sampleCandidates(rows, 1, 2, 4, 3, () => 0)).toThrow('beam sampling draws 3 tokens (2 x num_beams) without replacement per input, but only 2 have a probability above 0');
    expect(sampleCandidates(Float32Array.from([0, Number.NaN]), 0, 1, 2, 1, () => 0).nanAt).toBe(1);
  });

  it('matches the reference beam_sample over seeds, temperatures, beams, length penalties and early stopping', async () => {
    const vocab = 7;
    const fn = tableLogits(5, 1, vocab, { eosBias: 0.5 });
    const outs = new Set<string>();
    for (const seed of [1, 2, 3]) {
      for (const temperature of [0.7, 1.3]) {
        for (const [numBeams, numReturn] of [[2, 1], [3, 2]]) {
          for (const [lengthPenalty, earlyStopping] of [[1, false], [0.5, true]] as const) {
            const o = refOptions({ numBeams, numReturn, lengthPenalty, earlyStopping, maxLength: 7, sample: { temperature, seed } });
            const { out } = await runBeam(fn, 1, vocab, o);
            expectSameOutput(out, refBeamSearch(fn, 1, vocab, o), JSON.stringify(o));
            outs.add(JSON.stringify(out.sequences));
          }
        }
      }
    }
    // the seeds and settings lead to different answers (and not to beam search's one answer)
    expect(outs.size).toBeGreaterThan(5);
  });

  it('with beams keeps two tokens per row through the warpers, records the warped scores, and refuses a bad pool', async () => {
    const vocab = 6;
    const fn = tableLogits(9, 2, vocab);
    const config = resolveGenerationConfig({}, { ...hfOptions(refOptions({ numBeams: 2 })), do_sample: true, top_k: 1, output_scores: true });
    // top_k 1 keeps min_tokens_to_keep 2 per row: 4 alive tokens per input, enough for 2 x 2 draws
    const out = await generate(new TrackingStepper(vocab, 2, 2, fn), 2, config, { seed: 4 });
    for (const step of out.scores!) {
      for (let r = 0; r < 4; r++) expect(step.subarray(r * vocab, (r + 1) * vocab).filter((x) => x > -Infinity).length).toBe(2);
    }
    // a row whose every token but one is banned leaves too few to draw from
    const narrow: LogitsFn = () => Float32Array.from({ length: vocab }, (_, v) => (v === 3 ? 0 : -Infinity));
    await expect(generate(new TrackingStepper(vocab, 1, 2, narrow), 1, config, { seed: 4 })).rejects.toThrow(/beam sampling draws 4 tokens/);
  });
});

describe('beam search: brute force', () => {
  it('with more beams than live paths, returns the globally best sequences for every length penalty and early stopping', async () => {
    const vocab = 4;
    const fn = tableLogits(3, 2, vocab, { eosBias: 0.5 });
    // max_length 4: at most 9 live beams x 4 tokens = 36 real candidates per step; 36 beams keep every one of
    // them (and rank < num_beams for every eos), hypotheses hold 36 of the 40 possible sequences.
    for (const lengthPenalty of [0.5, 1, 2]) {
      for (const earlyStopping of [true, false, 'never'] as const) {
        for (const ngram of [0, 2]) {
          const o = refOptions({ numBeams: 36, maxLength: 4, lengthPenalty, earlyStopping, ngram, minLength: ngram ? 3 : 0, numReturn: 6 });
          const { out } = await runBeam(fn, 2, vocab, o);
          for (let b = 0; b < 2; b++) {
            const want = bruteForce(fn, b, o).slice(0, 6);
            for (let j = 0; j < 6; j++) {
              const i = b * 6 + j;
              const n = out.beamIndices![i]!.filter((x) => x >= 0).length;
              expect(out.sequences[i]!.slice(0, n + 1), `${JSON.stringify(o)} input ${b} #${j}`).toEqual(want[j]!.tokens);
              expect(Math.abs(out.sequencesScores![i]! - want[j]!.score)).toBeLessThanOrEqual(1e-6);
            }
          }
        }
      }
    }
  });
});

describe('beam search: repetition_penalty', () => {
  it('matches the reference with the penalty on the log-probs, before the n-gram bans, and changes the result', async () => {
    const vocab = 6;
    const fn = tableLogits(8, 2, vocab, { eosBias: -1 });
    let changed = 0;
    for (const penalty of [1.8, 0.7]) {
      for (const ngram of [0, 2]) {
        const o = refOptions({ numBeams: 3, maxLength: 10, ngram, penalty, numReturn: 2 });
        const { out } = await runBeam(fn, 2, vocab, o);
        const want = refBeamSearch(fn, 2, vocab, o);
        expectSameOutput(out, want, JSON.stringify(o));
        if (JSON.stringify(want.sequences) !== JSON.stringify(refBeamSearch(fn, 2, vocab, { ...o, penalty: 1 }).sequences)) changed++;
      }
    }
    expect(changed).toBeGreaterThan(1);
  });
});

describe('beam search: cache reorders', () => {
  it('feeds every cache row its own history: reorders stay inside an input; a finished input maps to row 0 and gets pads', async () => {
    const vocab = 5;
    const fn = tableLogits(5, 3, vocab, { eosBias: 1.5 });
    for (const earlyStopping of [true, false, 'never'] as const) {
      const o = refOptions({ numBeams: 3, maxLength: 12, earlyStopping, ngram: 2, numReturn: 2 });
      const { out, stepper } = await runBeam(fn, 3, vocab, o);
      expectSameOutput(out, refBeamSearch(fn, 3, vocab, o), JSON.stringify(o));
      expect(stepper.reorders.length).toBe(stepper.fed.length - 1);
      stepper.reorders.forEach((idx, t) => {
        for (let r = 0; r < idx.length; r++) {
          const input = Math.floor(r / 3);
          const inBlock = idx[r]! >= input * 3 && idx[r]! < input * 3 + 3;
          const finished = idx[r] === 0 && stepper.fed[t + 1]![r] === o.pad;
          expect(inBlock || finished, `step ${t} row ${r} <- ${idx[r]}`).toBe(true);
        }
      });
      // the first step feeds the decoder start token to every row
      expect(Array.from(stepper.fed[0]!)).toEqual(new Array(9).fill(0));
    }
  });

  it('a wrong reorder shows: the same search over a stepper that ignores reorder() gives other results', async () => {
    const vocab = 5;
    const fn = tableLogits(5, 1, vocab, { eosBias: -4 });
    const o = refOptions({ numBeams: 3, maxLength: 10, ngram: 0 });
    const good = await runBeam(fn, 1, vocab, o);
    const lazy = new TrackingStepper(vocab, 1, 3, fn);
    lazy.reorder = () => {};
    const bad = await generate(lazy, 1, resolveGenerationConfig({}, hfOptions(o)));
    expect(good.out.sequences[0]!.length).toBe(10);
    expect(bad.sequences).not.toEqual(good.out.sequences);
  });
});

describe('beam search: pieces and errors', () => {
  it('BeamHypotheses keeps the num_beams best, worst score as HF', () => {
    const h = new BeamHypotheses(2, 1, false, 20);
    h.add([0, 5], -2, [0], [-2], 2); // -1
    h.add([0, 6], -3, [0], [-3], 2); // -1.5
    expect(h.worstScore).toBe(-1.5);
    h.add([0, 7], -4, [0], [-4], 2); // -2: not better than the worst, dropped
    expect(h.beams.map((b) => b.tokens[1])).toEqual([5, 6]);
    h.add([0, 8], -1, [0], [-1], 2); // -0.5 replaces -1.5
    expect(h.beams.map((b) => b.tokens[1])).toEqual([5, 8]);
    expect(h.worstScore).toBe(-1);
  });

  it('BeamHypotheses: among equally bad hypotheses the earliest added is dropped (Python sorted of (score, idx))', () => {
    const h = new BeamHypotheses(2, 1, false, 20);
    h.add([0, 5], -2, [0], [-2], 2); // -1
    h.add([0, 6], -2, [0], [-2], 2); // -1
    h.add([0, 7], -1, [0], [-1], 2); // -0.5: one of the two -1 goes, the first
    expect(h.beams.map((b) => b.tokens[1])).toEqual([6, 7]);
    expect(h.worstScore).toBe(-1);
  });

  it('is_done: early_stopping true / false (cur_len) / "never" (max_length when length_penalty > 0, else cur_len)', () => {
    const full = (es: EarlyStopping, lp: number): BeamHypotheses => {
      const h = new BeamHypotheses(1, lp, es, 11);
      h.add([0, 5, 6], -4, [0, 0], [-2, -2], 2); // score -4 / 2^lp
      return h;
    };
    expect(new BeamHypotheses(1, 1, true, 11).isDone(-1, 3, 1)).toBe(false); // not enough hypotheses
    expect(full(true, 1).isDone(-100, 3, 1)).toBe(true);
    // false: best running sum -5 over cur_len - 1 = 2 tokens: -2.5 < worst -2 -> done; -3 over 2: -1.5 > -2
    expect(full(false, 1).isDone(-5, 3, 1)).toBe(true);
    expect(full(false, 1).isDone(-3, 3, 1)).toBe(false);
    // never, lp 1: -5 over max_length - 1 = 10 tokens: -0.5 > -2 -> not done; -30/10 = -3 -> done
    expect(full('never', 1).isDone(-5, 3, 1)).toBe(false);
    expect(full('never', 1).isDone(-30, 3, 1)).toBe(true);
    // the denominator is max_length - decoder prompt length (10), not max_length: -21/10 = -2.1 <= -2 -> done
    expect(full('never', 1).isDone(-21, 3, 1)).toBe(true);
    // never, lp 0.5 (any positive penalty takes max_length): worst -4/sqrt 2 = -2.83; -5/sqrt 10 = -1.58 -> not
    // done (with cur_len it would be -5/sqrt 2 = -3.54 -> done)
    expect(full('never', 0.5).isDone(-5, 3, 1)).toBe(false);
    expect(full(false, 0.5).isDone(-5, 3, 1)).toBe(true);
    // never, lp -1: score -4 * 2 = -8; best -5 * 2 = -10 < -8 -> done; -3 * 2 = -6 -> not
    expect(full('never', -1).isDone(-5, 3, 1)).toBe(true);
    expect(full('never', -1).isDone(-3, 3, 1)).toBe(false);
  });

  it('topKCandidates: best first over [beams x vocab] plus beam scores, lowest flat index first among ties, -inf counts', () => {
    // input 1 of a batch with 2 beams x 4 tokens; input 0's rows must not be read
    const scores = Float32Array.from([9, 9, 9, 9, 9, 9, 9, 9, 1, 3, 3, -Infinity, 2, 1, -Infinity, 0]);
    const beamScores = Float32Array.from([5, 5, 0, 1]);
    const t = topKCandidates(scores, beamScores, 2, 2, 4, 6);
    // values: beam 0: 1 3 3 -inf; beam 1 (+1): 3 2 -inf 1
    expect(Array.from(t.index)).toEqual([1, 2, 4, 5, 0, 7]);
    expect(Array.from(t.value)).toEqual([3, 3, 3, 2, 1, 1]);
    const all = topKCandidates(scores, beamScores, 2, 2, 4, 8);
    expect(Array.from(all.index)).toEqual([1, 2, 4, 5, 0, 7, 3, 6]);
    expect(() => topKCandidates(scores, beamScores, 2, 2, 4, 9)).toThrow(/9 requested of 8/);
    // float32 sums: 0.1 + 0.2 rounds as torch's float32 add does
    const f = topKCandidates(Float32Array.from([0.1]), Float32Array.from([0.2]), 0, 1, 1, 1);
    expect(f.value[0]).toBe(Math.fround(Math.fround(0.1) + Math.fround(0.2)));
  });

  it('topKCandidates: the sorted float32 sums on random rows with ties, -inf and large beam scores; NaN found', () => {
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    for (const [numBeams, vocab, k] of [[1, 1, 1], [3, 37, 6], [4, 101, 8], [2, 13, 26]] as const) {
      // coarse values so that sums tie, some -inf (banned), beam scores from 0 to the dead -1e9
      const scores = Float32Array.from({ length: (numBeams + 1) * vocab }, () => (rand() < 0.1 ? -Infinity : -Math.round(rand() * 40) / 8));
      const beamScores = Float32Array.from({ length: numBeams + 1 }, (_, i) => (i === 2 ? -1e9 : -rand() * 3));
      const got = topKCandidates(scores, beamScores, 1, numBeams, vocab, k);
      const all = Array.from({ length: numBeams * vocab }, (_, flat) => ({
        flat,
        v: Math.fround(scores[vocab + flat]! + beamScores[1 + Math.floor(flat / vocab)]!),
      })).sort((a, b) => b.v - a.v || a.flat - b.flat); // -inf - -inf is NaN: falls to the index
      expect(Array.from(got.index)).toEqual(all.slice(0, k).map((c) => c.flat));
      expect(Array.from(got.value)).toEqual(all.slice(0, k).map((c) => c.v));
      expect(got.nanAt).toBe(-1);
    }
    const rows = Float32Array.from([0, NaN, -1, -2, -3, NaN]); // two rows of 3 tokens, one beam per input
    expect(topKCandidates(rows, new Float32Array(2), 0, 1, 3, 1).nanAt).toBe(1);
    expect(topKCandidates(rows, new Float32Array(2), 1, 1, 3, 2).nanAt).toBe(5);
    expect(topKCandidates(Float32Array.from([0, 1, 2, NaN]), new Float32Array(2), 0, 1, 2, 1).nanAt).toBe(-1); // row 1 not read
  });

  it('reports bad configurations and bad steps with the option named', async () => {
    const fn = tableLogits(1, 1, 4);
    const stepper = (): TrackingStepper => new TrackingStepper(4, 1, 2, fn);
    await expect(beamSearch(stepper(), 1, { ...resolveGenerationConfig({}, { num_beams: 2, decoder_start_token_id: 0 }), numBeams: 1 })).rejects.toThrow(/num_beams/);
    await expect(beamSearch(stepper(), 1, resolveGenerationConfig({}, { num_beams: 2, decoder_start_token_id: 0, eos_token_id: 9, pad_token_id: 0 }))).rejects.toThrow(/`eos_token_id` 9 is outside the vocabulary/);
    await expect(beamSearch(stepper(), 1, resolveGenerationConfig({}, { num_beams: 2, decoder_start_token_id: 0, max_length: 1 }))).rejects.toThrow(/max_length/);
    const short: DecoderStepper = { vocabSize: 4, step: async () => new Float32Array(3), reorder: () => {} };
    await expect(generate(short, 1, resolveGenerationConfig({}, { num_beams: 2, decoder_start_token_id: 0 }))).rejects.toThrow(/returned 3 values, expected rows 2 x vocab 4/);
    const nan: DecoderStepper = { vocabSize: 4, step: async () => new Float32Array(8).fill(NaN), reorder: () => {} };
    await expect(generate(nan, 1, resolveGenerationConfig({}, { num_beams: 2, decoder_start_token_id: 0 }))).rejects.toThrow(/NaN/);
  });

  it('takes the log-probs from stepLogProbs when the stepper has it (the GPU log_softmax), never calling step', async () => {
    const vocab = 6;
    const fn = tableLogits(11, 2, vocab, { eosBias: 1.5 });
    const o = refOptions({ numBeams: 3, maxLength: 9, ngram: 2, numReturn: 2 });
    const inner = new TrackingStepper(vocab, 2, 3, fn);
    let calls = 0;
    const onDevice: DecoderStepper = {
      vocabSize: vocab,
      step: () => Promise.reject(new Error('step called although stepLogProbs is there')),
      async stepLogProbs(tokens) {
        calls++;
        return logSoftmaxRows(await inner.step(tokens), tokens.length, vocab);
      },
      reorder: (beamIdx) => inner.reorder(beamIdx),
    };
    const out = await generate(onDevice, 2, resolveGenerationConfig({}, hfOptions(o)));
    expect(calls).toBe(inner.fed.length);
    expectSameOutput(out, refBeamSearch(fn, 2, vocab, o), 'stepLogProbs');
    const nan: DecoderStepper = { ...onDevice, stepLogProbs: async () => new Float32Array(6 * vocab).fill(NaN) };
    await expect(generate(nan, 2, resolveGenerationConfig({}, hfOptions(o)))).rejects.toThrow(/decoder step 0 returned NaN/);
    // one NaN in the last row (a beam of the second input), found by the top-k pass itself
    const oneNaN: DecoderStepper = {
      ...onDevice,
      stepLogProbs: async (tokens) => {
        const lp = await onDevice.stepLogProbs!(tokens);
        lp[lp.length - 2] = NaN;
        return lp;
      },
    };
    await expect(generate(oneNaN, 2, resolveGenerationConfig({}, hfOptions(o)))).rejects.toThrow(
      new RegExp(`decoder step 0 returned NaN logits \\(row 5, token ${vocab - 2}\\)`),
    );
  });

  it('output_scores returns the processed scores of every step, [rows, vocab]', async () => {
    const fn = tableLogits(2, 2, 5, { eosBias: 1 });
    const o = refOptions({ numBeams: 2, maxLength: 6 });
    const stepper = new TrackingStepper(5, 2, 2, fn);
    const out = await generate(stepper, 2, resolveGenerationConfig({}, { ...hfOptions(o), output_scores: true }));
    expect(out.scores!.length).toBe(stepper.fed.length);
    for (const s of out.scores!) expect(s.length).toBe(4 * 5);
    const lse = Math.log(Array.from(out.scores![0]!.subarray(0, 5)).reduce((a, x) => a + Math.exp(x), 0));
    expect(Math.abs(lse)).toBeLessThanOrEqual(1e-6);
    const without = await generate(new TrackingStepper(5, 2, 2, fn), 2, resolveGenerationConfig({}, hfOptions(o)));
    expect(without.scores).toBeUndefined();
    expect(without.sequences).toEqual(out.sequences);
  });
});
