// A small question-answering CSV already in memory (a file dropped on a web page): the rows streamQaCsv would
// give for the same file, with the same column lookup, cleaning and rules for empty answers, minus streaming and
// the line-number bookkeeping of multi-line cells (a dropped file is small; a bad row is skipped and counted).
import { parse } from 'csv-parse/sync';
import { DataError } from '../util/data-error.ts';
import { cleanText, isBlank, preprocessConfig } from '../util/text-clean.ts';
import { findColumns, type QaCsvOptions, type QaRow } from './csv-data.ts';

export interface QaTextData {
  rows: QaRow[];
  /** data rows left out: wrong cell count or empty answer */
  skipped: number;
}

export function qaRowsFromText(text: string, file: string, options: QaCsvOptions = {}): QaTextData {
  const cfg = preprocessConfig(options);
  let records: string[][];
  try {
    records = parse(text, { bom: true, relax_column_count: true, relax_quotes: true, skip_empty_lines: true }) as string[][];
  } catch (e) {
    throw new DataError(`${file}: not a readable CSV (${(e as Error).message})`, file);
  }
  if (records.length === 0) throw new DataError(`${file}: the file is empty (expected a header row)`, file);
  const header = records[0]!;
  const columns = findColumns(file, header, cfg, true);
  const rows: QaRow[] = [];
  let skipped = 0;
  for (const [i, record] of records.slice(1).entries()) {
    if (record.length === 1 && isBlank(record[0]!)) continue;
    const answer = record.length === header.length ? cleanText(record[columns.answer], { ...cfg, fillNa: false }) : '';
    if (answer === '') {
      skipped++;
      continue;
    }
    rows.push({ context: cleanText(record[columns.context], cfg), question: cleanText(record[columns.question], cfg), answer, line: i + 2 });
  }
  if (rows.length === 0) throw new DataError(`${file}: no usable rows (each needs a context, a question and a non-empty ${cfg.answerColumn})`, file);
  return { rows, skipped };
}
