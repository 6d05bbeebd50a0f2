// Tokenized question-answering examples and the batches a training step consumes, as the tutorial's
// `T5Tokenizer(context, question, max_length=512, truncation="only_first")` / `T5Tokenizer(answer, max_length=128)`
// builds them, except that a batch is padded to its own longest sequence rather than to 512 / 128: padding
// costs compute and does not change the loss (padded keys are masked, padded labels are -100).
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { Seq2SeqBatch } from '../model/t5.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { type BadRow, type QaRow } from '../tasks/csv-data.ts';
import { DataError } from '../util/data-error.ts';
import { mulberry32 } from '../util/mulberry32.ts';

/** Hugging Face's ignore index: label positions that do not count in the loss. */
export const IGNORE_INDEX = -100;

export interface TokenizeOptions {
  /** Source tokens including both `</s>`; the context is cut (only_first). Default 512. */
  maxSourceLength?: number;
  /** Answer tokens including `</s>`; longer answers are cut as the tutorial's tokenizer does. Default 128. */
  maxTargetLength?: number;
  /** 'skip' (default): a bad row is counted and left out; 'error': the first one throws a DataError. */
  onBadRow?: 'skip' | 'error';
}

export interface Example {
  /** `context </s> question </s>` ids */
  source: number[];
  /** `answer </s>` ids */
  target: number[];
  /** 1-based line of the record in its CSV */
  line: number;
  context: string;
  question: string;
  answer: string;
}

export interface TokenizeReport {
  examples: Example[];
  /** rows left out: the question alone does not fit maxSourceLength (only_first cannot cut it) */
  badRows: BadRow[];
  /** sources whose context was cut to fit */
  truncatedSources: number;
  /** answers cut to maxTargetLength */
  truncatedTargets: number;
}

export function resolveTokenizeOptions(o: TokenizeOptions = {}): Required<TokenizeOptions> {
  const r = { maxSourceLength: o.maxSourceLength ?? 512, maxTargetLength: o.maxTargetLength ?? 128, onBadRow: o.onBadRow ?? 'skip' } as const;
  for (const k of ['maxSourceLength', 'maxTargetLength'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 2) throw new DataError(`${k} must be an integer >= 2, got ${r[k]}`);
  }
  return r;
}

/**
 * Tokenizes cleaned rows. A row is bad (counted, listed with its line, skipped or fatal by `onBadRow`) when its
 * question and the two `</s>` do not fit maxSourceLength: only_first truncation would have to drop the whole
 * context, and the model could not see the passage the answer comes from.
 */
export function tokenizeRows(rows: readonly QaRow[], tok: T5Tokenizer, options: TokenizeOptions = {}, file = 'data'): TokenizeReport {
  const o = resolveTokenizeOptions(options);
  const out: TokenizeReport = { examples: [], badRows: [], truncatedSources: 0, truncatedTargets: 0 };
  for (const r of rows) {
    const ctx = tok.textToIds(r.context);
    const q = tok.textToIds(r.question);
    if (q.length + 2 >= o.maxSourceLength) {
      const reason = `question is ${q.length} tokens: with the context it cannot fit max source length ${o.maxSourceLength}`;
      if (o.onBadRow === 'error') throw new DataError(`${file}:${r.line}: ${reason}`, file, r.line);
      out.badRows.push({ line: r.line, reason });
      continue;
    }
    const room = o.maxSourceLength - 2 - q.length;
    if (ctx.length > room) out.truncatedSources++;
    const source = [...ctx.slice(0, room), tok.eosTokenId, ...q, tok.eosTokenId];
    const a = tok.textToIds(r.answer);
    if (a.length + 1 > o.maxTargetLength) out.truncatedTargets++;
    const target = [...a.slice(0, o.maxTargetLength - 1), tok.eosTokenId];
    out.examples.push({ source, target, line: r.line, context: r.context, question: r.question, answer: r.answer });
  }
  return out;
}

/**
 * tokenizeRows with a cache: a JSON file keyed by the rows' content hash, the tokenizer file's hash and the
 * options. Rows are hashed after cleaning, so any change of data, cleaning or split gives a new key.
 */
export async function tokenizeRowsCached(
  rows: readonly QaRow[], tok: T5Tokenizer, options: TokenizeOptions, cacheDir: string | null, file = 'data',
): Promise<TokenizeReport & { cached: boolean }> {
  if (!cacheDir) return { ...tokenizeRows(rows, tok, options, file), cached: false };
  const o = resolveTokenizeOptions(options);
  const h = createHash('sha256');
  h.update(createHash('sha256').update(await readFile(tok.path)).digest('hex'));
  h.update(JSON.stringify({ v: 1, s: o.maxSourceLength, t: o.maxTargetLength, e: tok.extraIds, n: tok.vocabSize }));
  for (const r of rows) h.update(`${r.line}\u0000${r.context}\u0000${r.question}\u0000${r.answer}\u0001`);
  const path = join(cacheDir, `tokenized-${h.digest('hex').slice(0, 32)}.json`);
  if (existsSync(path)) {
    try {
      const c = JSON.parse(await readFile(path, 'utf8')) as { src: number[][]; tgt: number[][]; keep: number[]; badRows: BadRow[]; ts: number; tt: number };
      if (c.badRows.length > 0 && o.onBadRow === 'error') {
        const b = c.badRows[0]!;
        throw new DataError(`${file}:${b.line}: ${b.reason}`, file, b.line);
      }
      const examples = c.keep.map((i, k) => {
        const r = rows[i]!;
        return { source: c.src[k]!, target: c.tgt[k]!, line: r.line, context: r.context, question: r.question, answer: r.answer };
      });
      return { examples, badRows: c.badRows, truncatedSources: c.ts, truncatedTargets: c.tt, cached: true };
    } catch (e) {
      if (e instanceof DataError) throw e;
      // a damaged cache file is rebuilt
    }
  }
  const rep = tokenizeRows(rows, tok, options, file);
  const keptRows = new Set(rep.examples.map((e) => e.line));
  const keep = rows.flatMap((r, i) => (keptRows.has(r.line) ? [i] : []));
  await mkdir(cacheDir, { recursive: true });
  await writeFileAtomic(path, JSON.stringify({
    src: rep.examples.map((e) => e.source), tgt: rep.examples.map((e) => e.target), keep, badRows: rep.badRows,
    ts: rep.truncatedSources, tt: rep.truncatedTargets,
  }));
  return { ...rep, cached: false };
}

export interface Batch extends Seq2SeqBatch {
  labels: Int32Array;
  /** non-pad source tokens + label tokens: what tokens/s counts */
  tokens: number;
  /** label tokens (not -100): the weight of this batch's mean loss in a token mean */
  labelTokens: number;
}

/** Pads a batch to its longest source and target: input pad = pad id, attention 0, labels -100. */
export function collate(examples: readonly Example[], padId = 0): Batch {
  if (examples.length === 0) throw new RangeError('collate: empty batch');
  const b = examples.length;
  const ls = Math.max(...examples.map((e) => e.source.length));
  const lt = Math.max(...examples.map((e) => e.target.length));
  const inputIds = new Int32Array(b * ls).fill(padId);
  const attentionMask = new Int32Array(b * ls);
  const labels = new Int32Array(b * lt).fill(IGNORE_INDEX);
  let tokens = 0;
  let labelTokens = 0;
  examples.forEach((e, i) => {
    inputIds.set(e.source, i * ls);
    attentionMask.fill(1, i * ls, i * ls + e.source.length);
    labels.set(e.target, i * lt);
    tokens += e.source.length + e.target.length;
    labelTokens += e.target.length;
  });
  return { batchSize: b, sourceLength: ls, targetLength: lt, inputIds, attentionMask, labels, tokens, labelTokens };
}

export interface OrderOptions {
  batchSize: number;
  shuffle: boolean;
  seed: number;
  /**
   * Group examples of similar source length into the same batch (less padding): the shuffled order is cut into
   * windows of 50 batches, each window sorted by length, and the batches shuffled again (the idea of HF's
   * LengthGroupedSampler). Without shuffling, the examples are simply sorted by length.
   */
  groupByLength?: boolean;
}

/** Fisher-Yates seeded by (seed, epoch): the order of an epoch is a pure function, so resuming at a
 * batch index needs no RNG state beyond the seed. */
function shuffleInPlace<T>(a: T[], seed: number, epoch: number, salt = 0): void {
  const next = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b) ^ salt) >>> 0);
  for (let i = a.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

/** The batches of one epoch as lists of example indices. The last batch may be smaller (drop_last=False). */
export function epochBatches(lengths: readonly number[], epoch: number, o: OrderOptions): number[][] {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${o.batchSize}`);
  const idx = lengths.map((_, i) => i);
  if (o.shuffle) shuffleInPlace(idx, o.seed, epoch);
  if (o.groupByLength) {
    const window = o.shuffle ? o.batchSize * 50 : idx.length;
    for (let s = 0; s < idx.length; s += window) {
      const part = idx.slice(s, s + window).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
      idx.splice(s, part.length, ...part);
    }
  }
  const batches: number[][] = [];
  for (let s = 0; s < idx.length; s += o.batchSize) batches.push(idx.slice(s, s + o.batchSize));
  if (o.groupByLength && o.shuffle) shuffleInPlace(batches, o.seed, epoch, 0x5bd1e995);
  return batches;
}

export interface PaddingStats {
  /** real tokens (source + target) */
  tokens: number;
  /** positions computed when padding each batch to its longest sequence */
  paddedPositions: number;
  /** positions computed when padding every row to maxSourceLength + maxTargetLength (the tutorial) */
  fullPositions: number;
}

export function paddingStats(examples: readonly Example[], batches: readonly number[][], maxSource: number, maxTarget: number): PaddingStats {
  let tokens = 0;
  let padded = 0;
  for (const b of batches) {
    let ls = 0;
    let lt = 0;
    for (const i of b) {
      const e = examples[i]!;
      tokens += e.source.length + e.target.length;
      ls = Math.max(ls, e.source.length);
      lt = Math.max(lt, e.target.length);
    }
    padded += b.length * (ls + lt);
  }
  const rows = batches.reduce((n, b) => n + b.length, 0);
  return { tokens, paddedPositions: padded, fullPositions: rows * (maxSource + maxTarget) };
}

/** One log line: how much padding the per-batch lengths leave, against padding everything to the limits, and
 * that the training step skips it outside attention (skipPadding, model/token-rows.ts). */
export function describePadding(s: PaddingStats): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const own = 1 - s.tokens / Math.max(1, s.paddedPositions);
  const full = 1 - s.tokens / Math.max(1, s.fullPositions);
  return `padding: ${pct(own)} of positions with per-batch lengths (${pct(full)} when padded to the limits); ` +
    'the model skips it outside attention';
}
