// engine-cli predict and tasks/predict.ts on the golden tiny T5 (tests/fixtures/golden/t5-tiny-relu) and the
// tutorial-shaped qa_tiny.csv: single inputs against generateIds itself, whole files (CSV and JSONL well formed,
// one row per input in file order, the answer column kept, atomic output), batching invariance, the stored
// preprocessing, and one test per refused option. Ids are compared exactly; scores within 1e-4 absolute (the
// golden README's beam-score tolerance; a greedy score is a mean of float32 log-probabilities of size ~10).
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { predictCommand } from '../cli/predict.ts';
import { initGpu } from '../engine/gpu.ts';
import { csvField, csvRecord } from '../util/csv-write.ts';
import { generateIds, padBatch } from '../generate/generate.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import { T5_WEBGPU_FILE, serializeT5WebgpuSettings } from '../hf/hf-folder.ts';
import {
  encodeInput,
  predictEncoded,
  predictFile,
  predictOne,
  badWordsIds,
  resolvePredictSettings,
  type PredictedRow,
} from '../tasks/predict.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { T5Tokenizer } from '../hf/tokenizer.ts';
import { readQaCsv, type QaInputRow } from '../tasks/csv-data.ts';
import { preprocessConfig } from '../util/text-clean.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));
const csvFile = fileURLToPath(new URL('./fixtures/data/qa_tiny.csv', import.meta.url));
const ROWS = 7; // a prime: batch 7 is one call, batch 1 seven; batch 3 leaves a partial last batch
const SCORE_TOL = 1e-4;

let model: T5ForConditionalGeneration;
let tokenizer: T5Tokenizer;
let tmp: string;
const context = 'The Brisbane Cricket Ground, commonly known as the Gabba, is a major sports stadium in Brisbane, Australia.';
const question = 'where is the gabba';

beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
  tokenizer = await T5Tokenizer.load(join(dir, 'spiece.model'), { vocabSize: model.config.vocab_size });
  tmp = mkdtempSync(join(tmpdir(), 'predict-test-'));
});
afterAll(() => {
  model?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A fresh folder under tmp (outputs go there, so leftover temp files are visible). */
function freshDir(name: string): string {
  return mkdtempSync(join(tmp, `${name}-`));
}

async function captureStdout(fn: () => Promise<void>): Promise<string> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('csv-write', () => {
  it('quotes only what RFC 4180 requires (and edge whitespace), and csv-parse reads it back', () => {
    const cells = ['plain', 'a,b', 'say "hi"', 'two\nlines', 'cr\rlf\r\n', ' lead', 'trail ', '', 'ünï'];
    expect(csvField('plain')).toBe('plain');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField(-0.5)).toBe('-0.5');
    const text = csvRecord(cells) + csvRecord(['x', 'y', 'z', '', '', '', '', '', '']);
    expect(parse(text, { relax_column_count: false })).toEqual([cells, ['x', 'y', 'z', '', '', '', '', '', '']]);
  });
});

describe('predictOne', () => {
  it('a pair: the tutorial defaults (4 beams, no_repeat_ngram_size 2, early stopping) and generateIds itself', async () => {
    const p = await predictOne(model, tokenizer, { context, question }, { modelDir: dir });
    const settings = await resolvePredictSettings(model, { modelDir: dir });
    expect(settings.generation.numBeams).toBe(4);
    expect(settings.generation.noRepeatNgramSize).toBe(2);
    expect(settings.generation.earlyStopping).toBe(true);
    const config = await loadGenerationConfig(dir, { num_beams: 4, no_repeat_ngram_size: 2, early_stopping: true });
    const ids = tokenizer.encodePair(context, question, { maxLength: 512 });
    const ref = await generateIds(model, padBatch([ids]), config);
    expect(p.sequences).toHaveLength(1);
    const s = p.sequences[0]!;
    const refRow = ref.sequences[0]!;
    // ids end at the first </s> (after the start token); padding is cut
    const end = refRow.indexOf(1, 1);
    expect(s.ids).toEqual(end < 0 ? refRow : refRow.slice(0, end + 1));
    expect(s.ids[0]).toBe(0);
    expect(Math.abs(s.score - ref.sequencesScores![0]!)).toBeLessThanOrEqual(SCORE_TOL);
    expect(s.text).toBe(tokenizer.decode(s.ids));
  });

  it('greedy: the score is the mean log-probability of the chosen tokens (float64 log-softmax of HF scores)', async () => {
    const gen = { num_beams: 1, no_repeat_ngram_size: 0, max_new_tokens: 12 };
    const p = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: gen });
    const config = await loadGenerationConfig(dir, { ...gen, output_scores: true });
    const ref = await generateIds(model, padBatch([tokenizer.encodePair(context, question, { maxLength: 512 })]), config);
    const s = p.sequences[0]!;
    expect(s.ids).toEqual(ref.sequences[0]!.slice(0, s.ids.length));
    let sum = 0;
    for (let t = 0; t < s.ids.length - 1; t++) {
      // no processor is active, so the processed scores are the raw logits
      const row = Array.from(ref.scores![t]!);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
      sum += row[s.ids[t + 1]!]! - lse;
    }
    expect(Math.abs(s.score - sum / (s.ids.length - 1))).toBeLessThanOrEqual(SCORE_TOL);
  });

  it('output_scores: every step keeps its own array (the steps read into one array only without it)', async () => {
    const gen = { num_beams: 2, no_repeat_ngram_size: 0, max_new_tokens: 4, output_scores: true };
    const config = await loadGenerationConfig(dir, gen);
    const out = await generateIds(model, padBatch([tokenizer.encodePair(context, question, { maxLength: 512 })]), config);
    const scores = out.scores!;
    expect(scores.length).toBeGreaterThan(1);
    expect(new Set(scores).size).toBe(scores.length);
    expect(scores[0]![0]).not.toBe(scores[1]![0]); // step 0 and 1 differ (were they one array, they would agree)
    const plain = await generateIds(model, padBatch([tokenizer.encodePair(context, question, { maxLength: 512 })]), { ...config, outputScores: false });
    expect(plain.sequences).toEqual(out.sequences);
  });

  it('--input and num_return_sequences: raw source, k sequences best first', async () => {
    const input = `question: ${question} context: ${context}`;
    const p = await predictOne(model, tokenizer, { input }, { modelDir: dir, generation: { num_return_sequences: 3 } });
    expect(p.sequences).toHaveLength(3);
    for (let j = 1; j < 3; j++) expect(p.sequences[j]!.score).toBeLessThanOrEqual(p.sequences[j - 1]!.score);
    const config = await loadGenerationConfig(dir, { num_beams: 4, no_repeat_ngram_size: 2, early_stopping: true, num_return_sequences: 3 });
    const ref = await generateIds(model, padBatch([tokenizer.encode(input, { maxLength: 512 })]), config);
    p.sequences.forEach((s, j) => expect(s.ids).toEqual(ref.sequences[j]!.slice(0, s.ids.length)));
  });

  it('sampling on the model: top_k 1 answers as greedy search; k samples per input drawn from one encoder pass', async () => {
    const src = padBatch([tokenizer.encodePair(context, question, { maxLength: 512 }), tokenizer.encode(`question: ${question}`, { maxLength: 512 })]);
    const greedy = await generateIds(model, src, await loadGenerationConfig(dir, { max_new_tokens: 10 }), { greedyOnDevice: false });
    const top1 = await generateIds(model, src, await loadGenerationConfig(dir, { max_new_tokens: 10, do_sample: true, top_k: 1 }), { seed: 9 });
    expect(top1.sequences).toEqual(greedy.sequences);
    // 3 samples per input (rows input-major): each input's rows match that input alone, under the same seed's
    // draws only for the first input (the stream is shared by all rows), and a seed repeats itself
    const k3 = await loadGenerationConfig(dir, { max_new_tokens: 10, do_sample: true, top_k: 0, temperature: 2, num_return_sequences: 3 });
    const a = await generateIds(model, src, k3, { seed: 4 });
    expect(a.sequences).toHaveLength(6);
    expect((await generateIds(model, src, k3, { seed: 4 })).sequences).toEqual(a.sequences);
    const first = await generateIds(model, padBatch([tokenizer.encodePair(context, question, { maxLength: 512 })]), k3, { seed: 4 });
    // one draw per row and step: the first input's three rows take the stream's draws 0-2 of each step alone,
    // 0-2 of every 6 with the second input, so only the first step's first draws coincide
    expect(first.sequences.map((q) => q[1])).toEqual(a.sequences.slice(0, 3).map((q) => q[1]));
    expect(new Set(a.sequences.map((q) => q.join())).size).toBeGreaterThan(2);
  });

  it('--repetition-penalty reaches the search: the answer equals predictOne with repetition_penalty', async () => {
    const args = ['--model', dir, '--context', context, '--question', question, '--max-new-tokens', '10', '--quiet', '--json'];
    const got = JSON.parse(await captureStdout(() => predictCommand([...args, '--repetition-penalty', '3'])));
    const want = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 10, repetition_penalty: 3 } });
    expect(got.sequences).toEqual(want.sequences);
    const plain = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 10 } });
    expect(want.sequences[0]!.score).not.toBe(plain.sequences[0]!.score);
  });

  it('--bad-words: each word tokenized as HF\'s docs say reaches bad_words_ids, and the answer leaves it out', async () => {
    const args = ['--model', dir, '--context', context, '--question', question, '--max-new-tokens', '10', '--quiet', '--json'];
    const plain = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 10 } });
    // a generated token that is a whole word on its own
    const ids = plain.sequences[0]!.ids.slice(1);
    const word = ids.map((id) => tokenizer.decode([id]).trim()).find((w, i) => /^[a-z]+$/.test(w) && badWordsIds(tokenizer, [w])[0]!.join() === String(ids[i]));
    expect(word, `answer ${plain.sequences[0]!.text}`).toBeDefined();
    const banned = badWordsIds(tokenizer, [word!, 'two words']);
    expect(banned[1]!.length).toBeGreaterThan(1);
    const got = JSON.parse(await captureStdout(() => predictCommand([...args, '--bad-words', `${word}, two words`])));
    const want = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 10, bad_words_ids: banned } });
    expect(got.sequences).toEqual(want.sequences);
    expect(want.sequences[0]!.ids).not.toContain(banned[0]![0]);
    await expect(predictCommand([...args, '--bad-words', 'a,,b'])).rejects.toThrow('predict: --bad-words: word 2 of 3 is empty');
  });

  it('--num-beam-groups with --diversity-penalty: group beam search on the model, answers from different groups', async () => {
    const args = ['--model', dir, '--context', context, '--question', question, '--max-new-tokens', '6', '--quiet', '--json', '--num-beams', '4', '--num-return-sequences', '4'];
    const groups = JSON.parse(await captureStdout(() => predictCommand([...args, '--num-beam-groups', '4', '--diversity-penalty', '2'])));
    const plain = JSON.parse(await captureStdout(() => predictCommand(args)));
    expect(groups.sequences).toHaveLength(4);
    // one beam per group: the four first tokens are told apart by the penalty; plain beam search shares them
    const firsts = (out: { sequences: { ids: number[] }[] }) => new Set(out.sequences.map((q) => q.ids[1])).size;
    expect(firsts(groups)).toBeGreaterThan(firsts(plain));
    await expect(predictCommand([...args, '--num-beam-groups', '2'])).rejects.toThrow(/--diversity-penalty should be greater than/);
  });

  it('--penalty-alpha without --num-beams is contrastive search (one beam), not the tutorial\'s four beams', async () => {
    const settings = await resolvePredictSettings(model, { modelDir: dir, generation: { penalty_alpha: 0.6, top_k: 4 } });
    expect([settings.generation.numBeams, settings.generation.contrastiveTopK]).toEqual([1, 4]);
    const args = ['--model', dir, '--input', 'x', '--max-new-tokens', '5', '--quiet', '--json', '--penalty-alpha', '0.6', '--top-k', '4'];
    expect(JSON.parse(await captureStdout(() => predictCommand(args))).sequences).toHaveLength(1);
  });

  it('max_time 0 stops greedy search on the GPU after one token, as the host searches', async () => {
    const cut = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 8, num_beams: 1, max_time: 0 } });
    expect(cut.sequences[0]!.ids.length).toBe(2);
    const full = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 8, num_beams: 1 } });
    expect(full.sequences[0]!.ids.length).toBeGreaterThan(2);
  });

  it('the encoder-side processors see each input\'s padded source ids (HF\'s inputs_tensor), beams included', async () => {
    const sources = [tokenizer.encodePair(context, question), tokenizer.encode('a short one')];
    const batch = padBatch(sources);
    const config = await loadGenerationConfig(dir, { max_new_tokens: 2, num_beams: 2, encoder_no_repeat_ngram_size: 1, output_scores: true });
    const out = await generateIds(model, batch, config);
    const vocab = model.config.vocab_size;
    const first = out.scores![0]!;
    for (let r = 0; r < 4; r++) {
      const b = Math.floor(r / 2);
      // the shorter source is padded with 0, which HF's n-grams count too
      const banned = new Set(b === 1 ? [...sources[1]!, 0] : sources[0]);
      const got = [...first.subarray(r * vocab, (r + 1) * vocab).keys()].filter((t) => first[r * vocab + t] === -Infinity);
      expect(got, `row ${r}`).toEqual([...banned].sort((x, y) => x - y));
    }
  });

  it('--do-sample with --num-return-sequences and --seed: k answers, the same for the same seed, without beams', async () => {
    const args = ['--model', dir, '--context', context, '--question', question, '--max-new-tokens', '8', '--quiet', '--json',
      '--do-sample', '--temperature', '1.5', '--top-k', '0', '--top-p', '0.95', '--num-return-sequences', '3'];
    const a = JSON.parse(await captureStdout(() => predictCommand([...args, '--seed', '17'])));
    expect(a.sequences).toHaveLength(3);
    expect(JSON.parse(await captureStdout(() => predictCommand([...args, '--seed', '17'])))).toEqual(a);
    const p = await predictOne(model, tokenizer, { context, question }, {
      modelDir: dir, seed: 17, generation: { max_new_tokens: 8, do_sample: true, temperature: 1.5, top_k: 0, top_p: 0.95, num_return_sequences: 3 },
    });
    expect(p.sequences).toEqual(a.sequences);
    // the typical, epsilon and eta flags reach the warpers: the same answers as through the API
    const typical = await predictOne(model, tokenizer, { context, question }, {
      modelDir: dir, seed: 17, generation: { max_new_tokens: 8, do_sample: true, top_k: 0, typical_p: 0.2, epsilon_cutoff: 0.001, eta_cutoff: 0.001, num_return_sequences: 3 },
    });
    const typicalCli = JSON.parse(await captureStdout(() => predictCommand(['--model', dir, '--context', context, '--question', question,
      '--max-new-tokens', '8', '--quiet', '--json', '--do-sample', '--top-k', '0', '--typical-p', '0.2', '--epsilon-cutoff', '0.001',
      '--eta-cutoff', '0.001', '--num-return-sequences', '3', '--seed', '17'])));
    expect(typicalCli.sequences).toEqual(typical.sequences);
    // beam sampling: the best 2 of 4 sampled beams, repeatable with the seed
    const beamArgs = ['--model', dir, '--input', 'x', '--do-sample', '--num-beams', '4', '--num-return-sequences', '2', '--max-new-tokens', '6', '--quiet', '--json', '--seed', '5'];
    const beamSampled = JSON.parse(await captureStdout(() => predictCommand(beamArgs)));
    expect(beamSampled.sequences).toHaveLength(2);
    expect(beamSampled.sequences[0].score).toBeGreaterThanOrEqual(beamSampled.sequences[1].score);
    expect(JSON.parse(await captureStdout(() => predictCommand(beamArgs)))).toEqual(beamSampled);
    await expect(predictCommand(['--model', dir, '--input', 'x', '--do-sample', '--temperature', '0', '--quiet']))
      .rejects.toThrow(/--temperature \(=0\) has to be a strictly positive float/);
  });

  it('overlong inputs are truncated to 512 tokens, context first, never an error', async () => {
    const settings = await resolvePredictSettings(model, { modelDir: dir });
    const long = 'the gabba is a stadium in brisbane. '.repeat(300);
    const ids = encodeInput(tokenizer, { context: long, question }, settings);
    expect(ids).toHaveLength(512);
    expect(ids.slice(-tokenizer.encode(question).length)).toEqual(tokenizer.encode(question));
  });

  it('stored preprocessing (t5_webgpu.json) is applied: an uppercase, spaced input answers as its cleaned form', async () => {
    const copy = freshDir('preprocess');
    for (const f of ['config.json', 'generation_config.json', 'spiece.model']) copyFileSync(join(dir, f), join(copy, f));
    writeFileSync(join(copy, T5_WEBGPU_FILE), serializeT5WebgpuSettings({ preprocess: preprocessConfig({}), extra: {} }));
    const loud = { context: `  ${context.toUpperCase().replace(/ /g, '   ')}\n`, question: question.toUpperCase() };
    const quietInput = { context: context.toLowerCase(), question };
    // Without the file the two inputs encode differently, so the comparison below can fail.
    const raw = await resolvePredictSettings(model, { modelDir: dir });
    expect(encodeInput(tokenizer, loud, raw)).not.toEqual(encodeInput(tokenizer, quietInput, raw));
    const stored = await resolvePredictSettings(model, { modelDir: copy });
    expect(stored.preprocess?.lowercase).toBe(true);
    expect(encodeInput(tokenizer, loud, stored)).toEqual(encodeInput(tokenizer, quietInput, stored));
    const a = await predictOne(model, tokenizer, loud, { modelDir: copy, generation: { max_new_tokens: 8 } });
    const b = await predictOne(model, tokenizer, quietInput, { modelDir: dir, generation: { max_new_tokens: 8 } });
    expect(a.sequences.map((s) => s.ids)).toEqual(b.sequences.map((s) => s.ids));
  });

  it('refuses empty fields and bad generation options, naming them', async () => {
    await expect(predictOne(model, tokenizer, { context: ' ', question }, { modelDir: dir })).rejects.toThrow(/--context must not be empty/);
    await expect(predictOne(model, tokenizer, { context, question: '' }, { modelDir: dir })).rejects.toThrow(/--question must not be empty/);
    await expect(predictOne(model, tokenizer, { input: '\n' }, { modelDir: dir })).rejects.toThrow(/--input must not be empty/);
    await expect(predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { num_return_sequences: 5 } }))
      .rejects.toThrow(/num_return_sequences.*num_beams/);
    await expect(predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_length: 0 } }))
      .rejects.toThrow(/max_length/);
    await expect(predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: -3 } }))
      .rejects.toThrow(/max_new_tokens/);
  });
});

describe('predictFile', () => {
  // What predictFile reads from a folder without stored cleaning: text as given, blank cells "none".
  let csvRows: QaInputRow[] | undefined;
  const expected = async (): Promise<QaInputRow[]> =>
    (csvRows ??= (await readQaCsv(csvFile, { requireAnswer: false, fillNa: true, collapseWhitespace: false, lowercase: false, limit: ROWS })).rows);
  let csvIds: number[][] = [];

  it('CSV output: header, one row per input in file order, text kept; equals predictEncoded; no temp files', async () => {
    const out = freshDir('csv');
    const file = join(out, 'pred.csv');
    const seen: PredictedRow[] = [];
    const r = await predictFile({ model, tokenizer, data: csvFile, output: file, modelDir: dir, batchSize: ROWS, limit: ROWS, onPrediction: (row) => seen.push(row) });
    expect(r.rows).toBe(ROWS);
    expect(readdirSync(out)).toEqual(['pred.csv']);
    const records = parse(readFileSync(file, 'utf8'), { columns: true }) as Record<string, string>[];
    expect(Object.keys(records[0]!)).toEqual(['line', 'context', 'question', 'text', 'prediction', 'score']);
    expect(records).toHaveLength(ROWS);
    const rows = await expected();
    records.forEach((rec, i) => {
      expect(Number(rec.line)).toBe(rows[i]!.line);
      expect(rec.context).toBe(rows[i]!.context);
      expect(rec.question).toBe(rows[i]!.question);
      expect(rec.text).toBe(rows[i]!.answer ?? '');
      expect(rec.prediction).toBe(seen[i]!.sequences[0]!.text);
      expect(Number(rec.score)).toBe(seen[i]!.sequences[0]!.score);
    });
    csvIds = seen.map((s) => s.sequences[0]!.ids);
    // the same inputs through predictEncoded in one batch of two: the first two rows agree
    const settings = await resolvePredictSettings(model, { modelDir: dir });
    const two = await predictEncoded(model, tokenizer, rows.slice(0, 2).map((x) => tokenizer.encodePair(x.context, x.question, { maxLength: 512 })), settings);
    expect(two.map((p) => p.sequences[0]!.ids)).toEqual(csvIds.slice(0, 2));
  });

  it('JSONL output with batch size 1 (and 3): well formed, the same ids as batch 7', async () => {
    const out = freshDir('jsonl');
    const file = join(out, 'pred.jsonl');
    await predictFile({ model, tokenizer, data: csvFile, output: file, modelDir: dir, batchSize: 1, limit: ROWS });
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    const recs = lines.map((l) => JSON.parse(l) as { line: number; text: string | null; prediction: string; sequences: { ids: number[]; text: string; score: number }[] });
    expect(recs).toHaveLength(ROWS);
    expect(recs.map((r) => r.sequences[0]!.ids)).toEqual(csvIds);
    const rows = await expected();
    recs.forEach((r, i) => {
      expect(r.line).toBe(rows[i]!.line);
      expect(r.text).toBe(rows[i]!.answer ?? null);
      expect(r.prediction).toBe(r.sequences[0]!.text);
    });
    const file3 = join(out, 'pred3.jsonl');
    await predictFile({ model, tokenizer, data: csvFile, output: file3, modelDir: dir, batchSize: 3, limit: ROWS });
    expect(readFileSync(file3, 'utf8')).toBe(readFileSync(file, 'utf8'));
    expect(readdirSync(out).sort()).toEqual(['pred.jsonl', 'pred3.jsonl']);
  });

  it('a seeded sampling run over a file repeats itself, and each batch draws its own numbers', async () => {
    const out = freshDir('sample');
    const data = join(out, 'same.csv');
    // one question four times: in batches of one, a shared stream would answer all four alike
    writeFileSync(data, `context,question\n${`${csvField(context)},${csvField(question)}\n`.repeat(4)}`);
    const run = async (name: string, seed: number) => {
      const file = join(out, name);
      await predictFile({
        model, tokenizer, data, output: file, modelDir: dir, batchSize: 1, seed,
        generation: { do_sample: true, top_k: 0, temperature: 3, max_new_tokens: 8 },
      });
      return readFileSync(file, 'utf8');
    };
    const a = await run('a.jsonl', 21);
    expect(await run('b.jsonl', 21)).toBe(a);
    const answers = a.trim().split('\n').map((l) => (JSON.parse(l) as { sequences: { ids: number[] }[] }).sequences[0]!.ids.join());
    expect(new Set(answers).size).toBeGreaterThan(1);
  });

  it('a CSV without the question column: names it and the columns found; no output, no temp file', async () => {
    const out = freshDir('badcsv');
    const data = join(out, 'in.csv');
    writeFileSync(data, 'context,query,text\n"some context",what,x\n');
    const file = join(out, 'pred.csv');
    await expect(predictFile({ model, tokenizer, data, output: file, modelDir: dir }))
      .rejects.toThrow(/missing column "question" \(columns found: "context", "query", "text"\)/);
    expect(readdirSync(out)).toEqual(['in.csv']);
  });

  it('refuses an output name that is neither .csv nor .jsonl, a missing output folder, a bad batch size', async () => {
    await expect(predictFile({ model, tokenizer, data: csvFile, output: join(tmp, 'x.txt'), modelDir: dir })).rejects.toThrow(/--output .*\.csv or \.jsonl/);
    await expect(predictFile({ model, tokenizer, data: csvFile, output: join(tmp, 'nope', 'x.csv'), modelDir: dir })).rejects.toThrow(/--output .*does not exist/);
    await expect(predictFile({ model, tokenizer, data: csvFile, output: join(tmp, 'x.csv'), modelDir: dir, batchSize: 0 })).rejects.toThrow(/--batch-size must be a positive integer/);
  });
});

describe('engine-cli predict (in process)', () => {
  it('--json prints {"sequences": [...]} equal to predictOne; plain output prints one answer per line', async () => {
    // a negative value after a flag is taken as its value (parseArgs alone would refuse it)
    const args = ['--model', dir, '--context', context, '--question', question, '--max-new-tokens', '6', '--length-penalty', '-0.5', '--quiet'];
    const json = JSON.parse(await captureStdout(() => predictCommand([...args, '--json'])));
    const p = await predictOne(model, tokenizer, { context, question }, { modelDir: dir, generation: { max_new_tokens: 6, length_penalty: -0.5 } });
    expect(Object.keys(json)).toEqual(['sequences']);
    expect(json.sequences).toEqual(p.sequences);
    // a bare --early-stopping means true (the tutorial's default, so the answers do not change)
    const text = await captureStdout(() => predictCommand([...args, '--early-stopping', '--num-return-sequences', '2']));
    expect(text).toBe(`${p.sequences[0]!.text}\n${(await predictOne(model, tokenizer, { context, question }, {
      modelDir: dir, generation: { max_new_tokens: 6, length_penalty: -0.5, num_return_sequences: 2 },
    })).sequences[1]!.text}\n`);
  });

  const bad: [string[], RegExp][] = [
    [['--context', '', '--question', question], /--context must not be empty/],
    [['--context', context, '--question', '  '], /--question must not be empty/],
    [['--input', ''], /--input must not be empty/],
    [['--context', context], /--question is required/],
    [['--input', 'x', '--num-beams', '2', '--num-return-sequences', '3'], /--num-return-sequences 3 is more than --num-beams 2/],
    [['--input', 'x', '--max-length', '0'], /--max-length: expected a positive integer, got '0'/],
    [['--input', 'x', '--max-new-tokens', '-2'], /--max-new-tokens: expected a positive integer, got '-2'/],
    [['--input', 'x', '--min-length=-1'], /--min-length: expected an integer >= 0, got '-1'/],
    [['--input', 'x', '--num-beams', '0'], /--num-beams: expected a positive integer/],
    [['--input', 'x', '--early-stopping', 'maybe'], /--early-stopping: expected true, false or never/],
    [['--input', 'x', '--length-penalty', 'abc'], /--length-penalty: expected a number/],
    [['--input', 'x', '--repetition-penalty', '0'], /--repetition-penalty has to be a strictly positive float, but is 0/],
    [['--input', 'x', '--num-beams', '-1'], /--num-beams: expected a positive integer, got '-1'/],
    [['--data', csvFile], /--output is required with --data/],
    [['--data', csvFile, '--output', 'x.csv', '--batch-size', '0'], /--batch-size: expected a positive integer/],
    [['--input', 'x', '--do-sample', '--min-p', '1.5'], /--min-p has to be a float in the \[0, 1\] interval, but is 1.5/],
  ];
  for (const [args, re] of bad) {
    it(`refuses ${args.join(' ')}`, async () => {
      await expect(predictCommand(['--model', dir, ...args])).rejects.toThrow(re);
    });
  }

  it('refuses num_return_sequences above the default 4 beams, with the flag names', async () => {
    await expect(predictCommand(['--model', dir, '--input', 'x', '--num-return-sequences', '5', '--quiet']))
      .rejects.toThrow(/--num-return-sequences has to be smaller or equal to --num-beams \(4\)/);
  });

  it('names an option of the folder\'s generation_config.json that has no flag by its HF name', async () => {
    const copy = join(tmp, 'stop-strings-model');
    cpSync(dir, copy, { recursive: true });
    const file = join(copy, 'generation_config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), stop_strings: ['.'] }));
    await expect(predictCommand(['--model', copy, '--input', 'x', '--quiet'])).rejects.toThrow(/`stop_strings` is not supported, got \["\."\] \(from .*generation_config\.json\)/);
  });

  it('checks --data and --output before the model (a Hub download should not come first)', async () => {
    const nowhere = join(tmp, 'no-such-model');
    await expect(predictCommand(['--model', nowhere, '--data', join(tmp, 'missing.csv'), '--output', join(tmp, 'x.csv')]))
      .rejects.toThrow(/missing\.csv: cannot read: no such file/);
    await expect(predictCommand(['--model', nowhere, '--data', csvFile, '--output', join(tmp, 'nope', 'x.csv')]))
      .rejects.toThrow(/--output .*the folder .*nope does not exist/);
    await expect(predictCommand(['--model', nowhere, '--data', csvFile, '--output', join(tmp, 'x.txt')]))
      .rejects.toThrow(/--output .*must end in \.csv or \.jsonl/);
  });

  it('refuses a model folder without a tokenizer (spiece.model), naming --model', async () => {
    const copy = freshDir('notok');
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) copyFileSync(join(dir, f), join(copy, f));
    await expect(predictCommand(['--model', copy, '--input', 'x', '--quiet'])).rejects.toThrow(/^predict: --model .*spiece\.model/);
  });
});
