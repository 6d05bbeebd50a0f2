// The data of a training run: the training CSV (and a validation CSV, or a seeded split of the training rows),
// cleaned and tokenized (through the cache when there is one), with what was skipped or cut reported in the log.
import { describeBadRows, readQaCsv, type QaRow } from '../tasks/csv-data.ts';
import { DataError } from '../util/data-error.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { tokenizeRowsCached, type Example } from './dataset.ts';
import { splitRows } from './split.ts';
import type { ResolvedTrainOptions } from './train-options.ts';

export interface PreparedData {
  train: Example[];
  valid: Example[];
}

async function readRows(file: string, o: ResolvedTrainOptions, limit: number | undefined, log: (s: string) => void): Promise<QaRow[]> {
  const { rows, report } = await readQaCsv(file, { ...o.csv, onBadRow: o.onBadRow, limit });
  if (report.badRowCount > 0) log(describeBadRows(report));
  if (rows.length === 0) throw new DataError(`${file}: no usable rows`, file);
  return rows;
}

/** Reads, cleans, splits and tokenizes the data as the options say. */
export async function prepareData(o: ResolvedTrainOptions, tokenizer: T5Tokenizer, log: (s: string) => void): Promise<PreparedData> {
  const rows = await readRows(o.data, o, o.limit, log);
  let trainRows: QaRow[];
  let validRows: QaRow[];
  if (o.valid) {
    trainRows = rows;
    validRows = await readRows(o.valid, o, undefined, log);
  } else {
    ({ train: trainRows, valid: validRows } = splitRows(rows, { validFraction: o.validSplit, seed: o.splitSeed }));
  }
  if (o.validLimit !== undefined) validRows = validRows.slice(0, o.validLimit);
  const tokOpts = { maxSourceLength: o.maxSourceLength, maxTargetLength: o.maxTargetLength, onBadRow: o.onBadRow };
  const t = await tokenizeRowsCached(trainRows, tokenizer, tokOpts, o.cacheDir, o.data);
  const v = await tokenizeRowsCached(validRows, tokenizer, tokOpts, o.cacheDir, o.valid ?? o.data);
  for (const [rep, file] of [[t, o.data], [v, o.valid ?? o.data]] as const) {
    if (rep.badRows.length > 0) {
      log(`${file}: skipped ${rep.badRows.length} rows too long for --max-source-length ${o.maxSourceLength}: ` +
        rep.badRows.slice(0, 5).map((b) => `line ${b.line}`).join(', ') + (rep.badRows.length > 5 ? ', …' : ''));
    }
  }
  if (t.examples.length === 0) throw new DataError(`${o.data}: no usable training rows`, o.data);
  log(`data: ${t.examples.length} training, ${v.examples.length} validation examples` +
    (o.valid ? ` (from ${o.valid})` : o.validSplit > 0 ? ` (split ${1 - o.validSplit}/${o.validSplit}, seed ${o.splitSeed})` : '') +
    `; ${t.truncatedSources + v.truncatedSources} contexts cut to ${o.maxSourceLength} tokens, ${t.truncatedTargets + v.truncatedTargets} answers cut to ${o.maxTargetLength}` +
    (t.cached ? '; tokenized data from cache' : ''));
  return { train: t.examples, valid: v.examples };
}
