// Tokenized examples and batches: the tutorial's encoding (context </s> question </s>, only_first truncation;
// answer </s>), padding to each batch's own longest row with -100 labels, seeded epoch orders, length grouping,
// too-long rows reported by line, and the tokenization cache. Exact integer checks: nothing here is approximate.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { T5Tokenizer } from '../hf/tokenizer.ts';
import { readQaCsv, type QaRow } from '../tasks/csv-data.ts';
import { DataError } from '../util/data-error.ts';
import { collate, epochBatches, IGNORE_INDEX, paddingStats, tokenizeRows, tokenizeRowsCached, type Example } from '../train/dataset.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const cache = mkdtempSync(join(tmpdir(), 'dataset-test-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
let tok: T5Tokenizer;
let rows: QaRow[];

beforeAll(async () => {
  tok = await T5Tokenizer.load(join(fixtures, 'tokenizers/qa-8k.model'));
  rows = (await readQaCsv(join(fixtures, 'data/qa_tiny.csv'))).rows;
});

const ex = (source: number[], target: number[]): Example => ({ source, target, line: 2, context: '', question: '', answer: '' });

describe('tokenizeRows', () => {
  it('encodes context </s> question </s> and answer </s> as the tokenizer pair / target encodings', () => {
    const r = tokenizeRows(rows, tok, {});
    expect(r.examples.length).toBe(rows.length);
    expect(r.badRows).toEqual([]);
    for (const [i, e] of r.examples.slice(0, 5).entries()) {
      expect(e.source).toEqual(tok.encodePair(rows[i]!.context, rows[i]!.question, { maxLength: 512 }));
      expect(e.target).toEqual(tok.encodeTarget(rows[i]!.answer, 128));
    }
  });

  it('cuts the context only (only_first) and the answer, and counts both', () => {
    const r = tokenizeRows(rows, tok, { maxSourceLength: 40, maxTargetLength: 3 });
    for (const [i, e] of r.examples.entries()) {
      const q = tok.textToIds(rows[i]!.question);
      expect(e.source.length).toBeLessThanOrEqual(40);
      expect(e.source.slice(-q.length - 1)).toEqual([...q, 1]);
      expect(e.target.length).toBeLessThanOrEqual(3);
      expect(e.target.at(-1)).toBe(1);
    }
    expect(r.truncatedSources).toBeGreaterThan(0);
    expect(r.truncatedTargets).toBe(r.examples.filter((_, i) => tok.textToIds(rows[i]!.answer).length > 2).length);
  });

  it('reports rows whose question cannot fit, by line; onBadRow error throws', () => {
    const r = tokenizeRows(rows, tok, { maxSourceLength: 8 });
    const long = rows.filter((x) => tok.textToIds(x.question).length + 2 >= 8);
    expect(long.length).toBeGreaterThan(0);
    expect(r.badRows.map((b) => b.line)).toEqual(long.map((x) => x.line));
    expect(r.examples.length).toBe(rows.length - long.length);
    expect(() => tokenizeRows(rows, tok, { maxSourceLength: 8, onBadRow: 'error' }, 'f.csv')).toThrow(DataError);
    expect(() => tokenizeRows(rows, tok, { maxSourceLength: 8, onBadRow: 'error' }, 'f.csv')).toThrow(new RegExp(`f\\.csv:${long[0]!.line}: question`));
  });

  it('caches by content: a second call reads the file and gives the same examples', async () => {
    const a = await tokenizeRowsCached(rows.slice(0, 10), tok, { maxSourceLength: 64 }, cache);
    const b = await tokenizeRowsCached(rows.slice(0, 10), tok, { maxSourceLength: 64 }, cache);
    const c = await tokenizeRowsCached(rows.slice(0, 10), tok, { maxSourceLength: 65 }, cache);
    expect([a.cached, b.cached, c.cached]).toEqual([false, true, false]);
    expect(b.examples).toEqual(a.examples);
    expect(readdirSync(cache).length).toBe(2);
  });
});

describe('collate', () => {
  it('pads to the longest row of the batch: pad 0, attention 0, labels -100', () => {
    const b = collate([ex([5, 6, 1], [7, 1]), ex([8, 1], [9, 10, 11, 1])]);
    expect([b.batchSize, b.sourceLength, b.targetLength]).toEqual([2, 3, 4]);
    expect([...b.inputIds]).toEqual([5, 6, 1, 8, 1, 0]);
    expect([...b.attentionMask]).toEqual([1, 1, 1, 1, 1, 0]);
    expect([...b.labels]).toEqual([7, 1, IGNORE_INDEX, IGNORE_INDEX, 9, 10, 11, 1]);
    expect(b.tokens).toBe(3 + 2 + 2 + 4);
    expect(b.labelTokens).toBe(6);
  });
});

describe('epochBatches', () => {
  const lengths = Array.from({ length: 23 }, (_, i) => (i * 7919) % 31 + 1);
  it('without shuffling: the file order in batches, the last one short', () => {
    const b = epochBatches(lengths, 0, { batchSize: 5, shuffle: false, seed: 1 });
    expect(b.flat()).toEqual([...Array(23).keys()]);
    expect(b.map((x) => x.length)).toEqual([5, 5, 5, 5, 3]);
  });
  it('shuffled: a permutation fixed by (seed, epoch), different across epochs and seeds', () => {
    const o = { batchSize: 4, shuffle: true, seed: 100 };
    const e0 = epochBatches(lengths, 0, o).flat();
    expect([...e0].sort((a, b) => a - b)).toEqual([...Array(23).keys()]);
    expect(epochBatches(lengths, 0, o).flat()).toEqual(e0);
    expect(epochBatches(lengths, 1, o).flat()).not.toEqual(e0);
    expect(epochBatches(lengths, 0, { ...o, seed: 101 }).flat()).not.toEqual(e0);
  });
  it('grouping by length covers every example once and pads less', () => {
    const ex23 = lengths.map((l) => ex(Array(l).fill(5), [1]));
    for (const shuffle of [false, true]) {
      const plain = epochBatches(lengths, 0, { batchSize: 4, shuffle, seed: 3 });
      const grouped = epochBatches(lengths, 0, { batchSize: 4, shuffle, seed: 3, groupByLength: true });
      expect([...grouped.flat()].sort((a, b) => a - b)).toEqual([...Array(23).keys()]);
      expect(paddingStats(ex23, grouped, 512, 128).paddedPositions).toBeLessThan(paddingStats(ex23, plain, 512, 128).paddedPositions);
    }
  });
  it('paddingStats counts real tokens, per-batch padded and fully padded positions', () => {
    const e = [ex([1, 1, 1], [1]), ex([1], [1, 1])];
    expect(paddingStats(e, [[0, 1]], 10, 5)).toEqual({ tokens: 7, paddedPositions: 2 * (3 + 2), fullPositions: 2 * 15 });
  });
});
