// Reads a question-answering CSV (`context, question, text`) as a stream of cleaned rows,
// the same data the Hugging Face + Lightning T5 tutorial loads with pandas.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { parse, type CsvError } from 'csv-parse';
import { DataError } from '../util/data-error.ts';
import { cleanText, isBlank, preprocessConfig, type CleanOptions, type ColumnNames } from '../util/text-clean.ts';

export interface QaCsvOptions extends Partial<CleanOptions>, Partial<ColumnNames> {
  /** false for prediction files: the answer column may then be absent, and an empty answer is not an error. */
  requireAnswer?: boolean;
  /** 'skip' (default) counts bad rows in the report and goes on; 'error' throws a DataError at the first. */
  onBadRow?: 'skip' | 'error';
  /** Stop after this many usable rows. */
  limit?: number;
}

export interface QaRow {
  context: string;
  question: string;
  answer: string;
  /** 1-based line where the record starts in the file. */
  line: number;
}

export interface QaInputRow {
  context: string;
  question: string;
  /** Present when the file has the answer column and the cell is not empty. */
  answer?: string;
  line: number;
}

export interface BadRow {
  line: number;
  reason: string;
}

export interface CsvReport {
  readonly file: string;
  /** Column names as the header spells them. */
  header: string[];
  hasAnswers: boolean;
  /** Usable rows yielded so far. */
  rows: number;
  badRowCount: number;
  /** The first MAX_LISTED_BAD_ROWS bad rows, in file order. */
  badRows: BadRow[];
  /** True when reading stopped at `limit` before the end of the file. */
  reachedLimit: boolean;
}

export type QaCsvStream<R> = AsyncIterable<R> & { readonly report: CsvReport };

// A broken file can make every line bad; listing all of them would cost memory and help nobody.
export const MAX_LISTED_BAD_ROWS = 1000;

/** One line for a CLI: how many rows were skipped and where. */
export function describeBadRows(report: CsvReport, shown = 5): string {
  if (report.badRowCount === 0) return `${report.file}: no bad rows`;
  const list = report.badRows
    .slice(0, shown)
    .map((b) => `line ${b.line} (${b.reason})`)
    .join(', ');
  const more = report.badRowCount > shown ? `, and ${report.badRowCount - shown} more` : '';
  const s = report.badRowCount === 1 ? '' : 's';
  return `${report.file}: skipped ${report.badRowCount} bad row${s}: ${list}${more}`;
}

export function streamQaCsv(file: string, options?: QaCsvOptions & { requireAnswer?: true }): QaCsvStream<QaRow>;
export function streamQaCsv(file: string, options: QaCsvOptions & { requireAnswer: false }): QaCsvStream<QaInputRow>;
export function streamQaCsv(file: string, options?: QaCsvOptions): QaCsvStream<QaRow | QaInputRow>;
export function streamQaCsv(file: string, options: QaCsvOptions = {}): QaCsvStream<QaRow | QaInputRow> {
  const report: CsvReport = { file, header: [], hasAnswers: false, rows: 0, badRowCount: 0, badRows: [], reachedLimit: false };
  return { report, [Symbol.asyncIterator]: () => readRows(file, options, report) };
}

export interface QaCsvData<R> {
  rows: R[];
  report: CsvReport;
}

/** Reads the whole file into memory; use streamQaCsv for files that need not fit. */
export async function readQaCsv(file: string, options?: QaCsvOptions & { requireAnswer?: true }): Promise<QaCsvData<QaRow>>;
export async function readQaCsv(file: string, options: QaCsvOptions & { requireAnswer: false }): Promise<QaCsvData<QaInputRow>>;
export async function readQaCsv(file: string, options?: QaCsvOptions): Promise<QaCsvData<QaRow | QaInputRow>>;
export async function readQaCsv(file: string, options: QaCsvOptions = {}): Promise<QaCsvData<QaRow | QaInputRow>> {
  const stream = streamQaCsv(file, options);
  const rows: (QaRow | QaInputRow)[] = [];
  for await (const row of stream) rows.push(row);
  return { rows, report: stream.report };
}

interface ParsedRecord {
  record: string[];
  info: { lines: number; empty_lines: number };
}

const LINE_BREAK = /\r\n|\r|\n/g;
const hasBreak = (s: string): boolean => s.includes('\n') || s.includes('\r');
const countBreaks = (s: string): number => (hasBreak(s) ? (s.match(LINE_BREAK)?.length ?? 0) : 0);
const countCrLf = (s: string): number => (s.includes('\r\n') ? (s.match(/\r\n/g)?.length ?? 0) : 0);

async function* readRows(file: string, options: QaCsvOptions, report: CsvReport): AsyncGenerator<QaRow | QaInputRow> {
  const cfg = preprocessConfig(options);
  const requireAnswer = options.requireAnswer ?? true;
  const onBadRow = options.onBadRow ?? 'skip';
  const limit = options.limit;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) {
    throw new DataError(`limit must be a whole number of rows, at least 1 (got ${limit})`);
  }
  const names = [cfg.contextColumn, cfg.questionColumn, cfg.answerColumn];
  if (new Set(names).size < 3) {
    throw new DataError(`context, question and answer columns must differ (got ${names.map((n) => JSON.stringify(n)).join(', ')})`);
  }
  if (onBadRow !== 'skip' && onBadRow !== 'error') throw new DataError(`onBadRow must be 'skip' or 'error' (got ${String(onBadRow)})`);
  await checkReadable(file);

  const bad = (line: number, reason: string): void => {
    if (onBadRow === 'error') throw new DataError(`${file}:${line}: ${reason}`, file, line);
    report.badRowCount++;
    if (report.badRows.length < MAX_LISTED_BAD_ROWS) report.badRows.push({ line, reason });
  };

  // Stray quotes are kept as text (relax_quotes), as pandas and Python's csv module do; with strict quotes,
  // csv-parse's recovery after a skipped quote error reads the rest of the file as one cell.
  // Errors are collected, not thrown: a stream error makes Node's async iterator drop records still buffered.
  const skipped: CsvError[] = [];
  const parser = parse({
    bom: true,
    info: true,
    relax_column_count: true,
    relax_quotes: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    on_skip: (err) => {
      if (err) skipped.push(err);
      return undefined;
    },
  });
  const input = createReadStream(file);
  const utf8 = new Utf8Check(file);
  input.on('error', (e) => parser.destroy(e));
  utf8.on('error', (e) => parser.destroy(e));
  input.pipe(utf8).pipe(parser);

  let columns: { context: number; question: number; answer: number } | undefined;
  // csv-parse counts a CRLF inside a quoted cell as two lines; this undoes that drift.
  let crlfInCells = 0;
  let lastEnd = 0;
  let lastEmptyLines = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<ParsedRecord>) {
      let breaks = 0;
      for (const cell of record) {
        breaks += countBreaks(cell);
        crlfInCells += countCrLf(cell);
      }
      const end = info.lines - crlfInCells;
      const line = end - breaks;
      lastEnd = end;
      lastEmptyLines = info.empty_lines;

      if (columns === undefined) {
        columns = findColumns(file, record, cfg, requireAnswer);
        report.header = record.slice();
        report.hasAnswers = columns.answer >= 0;
        continue;
      }
      // A line of spaces is a blank line to a reader, not a one-cell record.
      if (record.length === 1 && isBlank(record[0]!)) continue;
      if (record.length !== report.header.length) {
        const cells = `has ${record.length} cell${record.length === 1 ? '' : 's'}, the header has ${report.header.length}`;
        // A record running over several lines with the wrong cell count is the mark of a stray quote.
        bad(line, breaks > 0 ? `${cells} (it runs to line ${end}: is a quote unbalanced?)` : cells);
        continue;
      }
      const context = cleanText(record[columns.context], cfg);
      const question = cleanText(record[columns.question], cfg);
      let answer: string | undefined;
      if (columns.answer >= 0) {
        // A missing answer is never filled with `none`: that would teach the model to answer "none".
        answer = cleanText(record[columns.answer], { ...cfg, fillNa: false });
        if (answer === '') {
          if (requireAnswer) {
            bad(line, `empty answer in column "${cfg.answerColumn}"`);
            continue;
          }
          answer = undefined;
        }
      }
      // Counted before the yield: a consumer that stops here has still taken this row.
      report.rows++;
      yield answer === undefined ? { context, question, line } : { context, question, answer, line };
      if (limit !== undefined && report.rows >= limit) {
        report.reachedLimit = true;
        return;
      }
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new DataError(`${file}: cannot read: ${err.message ?? String(e)}`, file);
  } finally {
    input.destroy();
    utf8.destroy();
    parser.destroy();
  }

  // With the options above the only error left is a quote still open at the end of the file; the record
  // it opened starts right after the last good record and any blank lines.
  for (const err of skipped) {
    const emptyNow = typeof err.empty_lines === 'number' ? err.empty_lines : lastEmptyLines;
    const line = lastEnd + 1 + Math.max(0, emptyNow - lastEmptyLines);
    if (columns === undefined) throw new DataError(`${file}:${line}: header row: ${csvReason(err)}`, file, line);
    bad(line, csvReason(err));
  }

  if (columns === undefined) throw new DataError(`${file}: the file is empty (expected a header row)`, file);
  if (report.rows === 0) {
    if (report.badRowCount === 0) throw new DataError(`${file}: no data rows after the header`, file);
    const first = report.badRows.slice(0, 3).map((b) => `line ${b.line} (${b.reason})`).join(', ');
    throw new DataError(`${file}: no usable rows: all ${report.badRowCount} data rows are bad, e.g. ${first}`, file);
  }
}

function csvReason(err: CsvError): string {
  if (err.code === 'CSV_QUOTE_NOT_CLOSED') return 'a quoted cell starting in this row is never closed (it runs to the end of the file)';
  return `malformed CSV (${err.code}): ${err.message}`;
}

/** Where the context, question and answer columns are; a DataError naming the missing ones and the header. */
export function findColumns(
  file: string,
  header: string[],
  cfg: ColumnNames,
  requireAnswer: boolean,
): { context: number; question: number; answer: number } {
  // Header cells are matched after trimming: `context, question, text` is a common hand-written header.
  const names = header.map((h) => h.trim());
  const find = (name: string): number => {
    const at = names.flatMap((n, i) => (n === name ? [i] : []));
    if (at.length > 1) {
      const where = at.map((i) => i + 1).join(', ');
      throw new DataError(`${file}:1: column "${name}" appears ${at.length} times in the header (columns ${where})`, file, 1);
    }
    return at.length === 1 ? at[0]! : -1;
  };
  const context = find(cfg.contextColumn);
  const question = find(cfg.questionColumn);
  const answer = find(cfg.answerColumn);
  const missing = [
    context < 0 ? cfg.contextColumn : undefined,
    question < 0 ? cfg.questionColumn : undefined,
    answer < 0 && requireAnswer ? cfg.answerColumn : undefined,
  ].filter((n): n is string => n !== undefined);
  if (missing.length > 0) {
    const what = missing.length === 1 ? 'column' : 'columns';
    const found = names.map((n) => JSON.stringify(n)).join(', ');
    throw new DataError(`${file}: missing ${what} ${missing.map((n) => JSON.stringify(n)).join(', ')} (columns found: ${found})`, file, 1);
  }
  return { context, question, answer };
}

/** Throws a DataError naming the file unless it is a readable file: a caller checks before slow work (a model
 * download) that a mistyped path would waste. */
export async function checkReadable(file: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(file)).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new DataError(`${file}: cannot read: ${why}`, file);
  }
  if (!isFile) throw new DataError(`${file}: cannot read: not a file`, file);
}

/**
 * Passes bytes through unchanged, failing at the first byte that is not UTF-8. Without it, a file saved in a
 * legacy encoding (Excel's default "CSV" is Windows-1252) would train on U+FFFD where its accents were.
 * Follows the WHATWG decoder's rules: no overlong forms, no surrogates, nothing above U+10FFFF.
 */
class Utf8Check extends Transform {
  private need = 0;
  private lower = 0x80;
  private upper = 0xbf;
  private line = 1;
  private prevCr = false;
  private atStart = true;
  // Reported rather than the continuation byte that broke it: 0xe9 (Latin-1 é) is what the user can find.
  private lead = 0;

  constructor(private readonly file: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.atStart && chunk.length > 0) {
      this.atStart = false;
      if (chunk.length >= 2 && (chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff)) {
        done(new DataError(`${this.file}: the file is UTF-16; save it as UTF-8`, this.file, 1));
        return;
      }
    }
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.need === 0) {
        if (b < 0x80) {
          if (b === 0x0a) {
            if (!this.prevCr) this.line++;
            this.prevCr = false;
          } else {
            this.prevCr = b === 0x0d;
            if (this.prevCr) this.line++;
          }
          continue;
        }
        this.prevCr = false;
        this.lead = b;
        if (b >= 0xc2 && b <= 0xdf) this.need = 1;
        else if (b >= 0xe0 && b <= 0xef) {
          this.need = 2;
          if (b === 0xe0) this.lower = 0xa0;
          if (b === 0xed) this.upper = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
          this.need = 3;
          if (b === 0xf0) this.lower = 0x90;
          if (b === 0xf4) this.upper = 0x8f;
        } else {
          done(this.invalid(b));
          return;
        }
      } else {
        if (b < this.lower || b > this.upper) {
          done(this.invalid(this.lead));
          return;
        }
        this.lower = 0x80;
        this.upper = 0xbf;
        this.need--;
      }
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.need === 0) return done(null);
    done(new DataError(`${this.file}:${this.line}: not valid UTF-8 (the file ends inside a character)`, this.file, this.line));
  }

  private invalid(b: number): DataError {
    const hex = b.toString(16).padStart(2, '0');
    return new DataError(`${this.file}:${this.line}: not valid UTF-8 (byte 0x${hex}); save the file as UTF-8`, this.file, this.line);
  }
}
