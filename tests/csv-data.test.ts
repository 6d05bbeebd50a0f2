import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeBadRows, readQaCsv, streamQaCsv, type QaCsvOptions } from '../tasks/csv-data.ts';
import { cleanText, parsePreprocessConfig, preprocessConfig } from '../util/text-clean.ts';
import { DataError } from '../util/data-error.ts';

const tiny = fileURLToPath(new URL('./fixtures/data/qa_tiny.csv', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'csv-data-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function csvFile(text: string | Buffer): string {
  const file = join(dir, `f${n++}.csv`);
  writeFileSync(file, text);
  return file;
}

const RAW: QaCsvOptions = { fillNa: false, collapseWhitespace: false, lowercase: false };

async function dataError(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    const err = e as DataError;
    expect(err.message).not.toContain('\n');
    return err;
  }
  throw new Error('expected a DataError');
}

describe('qa_tiny.csv', () => {
  it('reads 50 cleaned rows, one per line', async () => {
    const { rows, report } = await readQaCsv(tiny);
    expect(rows).toHaveLength(50);
    expect(report).toMatchObject({ header: ['context', 'question', 'text'], hasAnswers: true, rows: 50, badRowCount: 0, reachedLimit: false });
    expect(rows.map((r) => r.line)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    expect(rows[0]!.question).toBe('where does jacob wrestle with an angel in the bible');
    expect(rows[0]!.answer).toBe('genesis ( 32 : 22 - 32 ; also referenced in hosea 12 : 4 )');
    expect(rows[1]).toEqual({
      context:
        'the brisbane cricket ground , commonly known as the gabba , is a major sports stadium in brisbane , the capital of queensland , australia . the nickname gabba derives from the suburb of woolloongabba , in which it is located .',
      question: 'the cricket ground gaba is located in which country',
      answer: 'australia',
      line: 3,
    });
    for (const r of rows) {
      for (const s of [r.context, r.question, r.answer]) {
        expect(s).toBe(s.toLowerCase());
        expect(s).toBe(s.trim());
        expect(s).not.toMatch(/\s\s/);
      }
    }
  });

  it('keeps raw text when cleaning is off', async () => {
    const { rows } = await readQaCsv(tiny, RAW);
    expect(rows[0]!.answer).toBe('Genesis ( 32 : 22 - 32 ; also referenced in Hosea 12 : 4 )');
    expect(rows[6]!.question).toBe('What was a first for this network ');
    const cleaned = await readQaCsv(tiny);
    expect(cleaned.rows[6]!.question).toBe('what was a first for this network');
  });

  it('streams, and stops at limit', async () => {
    const stream = streamQaCsv(tiny, { limit: 7 });
    const lines: number[] = [];
    for await (const r of stream) lines.push(r.line);
    expect(lines).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(stream.report.rows).toBe(7);
    expect(stream.report.reachedLimit).toBe(true);
    const all = await readQaCsv(tiny, { limit: 500 });
    expect(all.rows).toHaveLength(50);
    expect(all.report.reachedLimit).toBe(false);
  });

  it('lets a consumer stop early', async () => {
    let count = 0;
    const stream = streamQaCsv(tiny);
    for await (const _ of stream) if (++count === 3) break;
    expect(count).toBe(3);
    expect(stream.report.rows).toBe(3);
  });
});

describe('CSV format', () => {
  it('strips a BOM and reads CRLF with quoted CRLF, commas and quotes, keeping line numbers', async () => {
    const text = '\ufeffcontext,question,text\r\n' + '"a, b ""c""\r\nd",q1,ans1\r\n' + '\r\n' + 'ctx2,"q\r\n\r\n2",ans2\r\n' + 'ctx3,q3,ans3\r\n';
    const { rows, report } = await readQaCsv(csvFile(text), RAW);
    expect(report.header).toEqual(['context', 'question', 'text']);
    expect(rows).toEqual([
      { context: 'a, b "c"\r\nd', question: 'q1', answer: 'ans1', line: 2 },
      { context: 'ctx2', question: 'q\r\n\r\n2', answer: 'ans2', line: 5 },
      { context: 'ctx3', question: 'q3', answer: 'ans3', line: 8 },
    ]);
  });

  it('reads LF without a final newline and with quoted LF', async () => {
    const text = 'context,question,text\n"x\ny\nz",q,a\nc2,q2,"last, one"';
    const { rows } = await readQaCsv(csvFile(text), RAW);
    expect(rows.map((r) => [r.line, r.context, r.answer])).toEqual([
      [2, 'x\ny\nz', 'a'],
      [5, 'c2', 'last, one'],
    ]);
  });

  it('accepts columns in any order and ignores extra ones', async () => {
    const text = 'id,text,title,question,context\n1,Paris,France,capital?,Paris is the capital.\n';
    const { rows, report } = await readQaCsv(csvFile(text));
    expect(report.header).toEqual(['id', 'text', 'title', 'question', 'context']);
    expect(rows).toEqual([{ context: 'paris is the capital.', question: 'capital?', answer: 'paris', line: 2 }]);
  });

  it('uses renamed columns', async () => {
    const text = 'passage,query,answer\nSome Passage,Some Query,Some Answer\n';
    const { rows } = await readQaCsv(csvFile(text), { contextColumn: 'passage', questionColumn: 'query', answerColumn: 'answer' });
    expect(rows).toEqual([{ context: 'some passage', question: 'some query', answer: 'some answer', line: 2 }]);
  });

  it('matches header names after trimming spaces', async () => {
    const { rows } = await readQaCsv(csvFile('context, question , text\nc,q,a\n'));
    expect(rows).toHaveLength(1);
  });

  it('reads a file with no answer column when answers are optional', async () => {
    const file = csvFile('question,context\nWho?,Me.\nWhen?,Now.\n');
    const { rows, report } = await readQaCsv(file, { requireAnswer: false });
    expect(report.hasAnswers).toBe(false);
    expect(rows).toEqual([
      { context: 'me.', question: 'who?', line: 2 },
      { context: 'now.', question: 'when?', line: 3 },
    ]);
    const withAnswers = await readQaCsv(csvFile('context,question,text\nc,q,\nc,q,A\n'), { requireAnswer: false });
    expect(withAnswers.rows).toEqual([
      { context: 'c', question: 'q', line: 2 },
      { context: 'c', question: 'q', answer: 'a', line: 3 },
    ]);
    expect(withAnswers.report.badRowCount).toBe(0);
  });
});

describe('cleaning', () => {
  it('fills missing context and question with "none", collapses whitespace and lowercases', async () => {
    const text = 'context,question,text\n,"  Two\t\tWords \n here ",ANSWER\n"   ",,x\n';
    const { rows } = await readQaCsv(csvFile(text));
    expect(rows).toEqual([
      { context: 'none', question: 'two words here', answer: 'answer', line: 2 },
      { context: 'none', question: 'none', answer: 'x', line: 4 },
    ]);
  });

  it('switches each step off', async () => {
    const text = 'context,question,text\n,"  A  B ",Ans\n';
    const read = async (o: QaCsvOptions) => (await readQaCsv(csvFile(text), o)).rows[0]!;
    expect(await read({ fillNa: false })).toMatchObject({ context: '', question: 'a b', answer: 'ans' });
    expect(await read({ collapseWhitespace: false })).toMatchObject({ context: 'none', question: '  a  b ', answer: 'ans' });
    expect(await read({ lowercase: false })).toMatchObject({ context: 'none', question: 'A B', answer: 'Ans' });
  });

  it('cleanText follows Python str.split whitespace and str.lower', () => {
    const opts = { fillNa: true, collapseWhitespace: true, lowercase: true };
    expect(cleanText(' \u00a0A\u2003b\u3000\x1cC\x85 \n', opts)).toBe('a b c');
    // U+FEFF is not whitespace to Python.
    expect(cleanText('a\ufeffb', opts)).toBe('a\ufeffb');
    expect(cleanText('ÀÉÎ ΣΑΣ', opts)).toBe('àéî σας');
    expect(cleanText(undefined, opts)).toBe('none');
    expect(cleanText(' \t ', opts)).toBe('none');
    expect(cleanText('', { ...opts, fillNa: false })).toBe('');
    expect(cleanText(' X ', { fillNa: true, collapseWhitespace: false, lowercase: false })).toBe(' X ');
    expect(cleanText(' Hello  World ')).toBe('hello world');
  });

  it('builds and checks a JSON preprocess config', () => {
    const cfg = preprocessConfig({ lowercase: false, answerColumn: 'answer' });
    expect(cfg).toEqual({
      version: 1,
      fillNa: true,
      collapseWhitespace: true,
      lowercase: false,
      contextColumn: 'context',
      questionColumn: 'question',
      answerColumn: 'answer',
    });
    expect(parsePreprocessConfig(JSON.parse(JSON.stringify(cfg)), 'model/preprocess.json')).toEqual(cfg);
    expect(() => parsePreprocessConfig({ ...cfg, lowercase: 'yes' }, 'model/preprocess.json')).toThrow(
      'model/preprocess.json: "lowercase" must be true or false',
    );
    expect(() => parsePreprocessConfig({ ...cfg, version: 2 }, 'p.json')).toThrow(DataError);
    expect(() => parsePreprocessConfig([], 'p.json')).toThrow('p.json: preprocess config is not a JSON object');
  });

  it('reading with a stored config applies the same cleaning', async () => {
    const cfg = preprocessConfig({ lowercase: false, questionColumn: 'q' });
    const { rows } = await readQaCsv(csvFile('context,q\nA  B,C\n'), { ...cfg, requireAnswer: false });
    expect(rows).toEqual([{ context: 'A B', question: 'C', line: 2 }]);
  });
});

describe('bad rows', () => {
  const withBad =
    'context,question,text\n' +
    'c1,q1,a1\n' + // 2
    'c2,q2,\n' + // 3: empty answer
    'c3,q3,"  \t "\n' + // 4: blank answer
    'c4,q4\n' + // 5: too few cells
    'c5,q5,a5,extra\n' + // 6: too many cells
    '"c6\nmore",q6,a6\n' + // 7-8
    '\n' + // 9: blank line, ignored
    '   \n' + // 10: spaces only, ignored
    'c7,,a7\n'; // 11

  it('skips and reports them with line numbers', async () => {
    const { rows, report } = await readQaCsv(csvFile(withBad));
    expect(rows.map((r) => r.line)).toEqual([2, 7, 11]);
    expect(rows[2]!.question).toBe('none');
    expect(report.badRowCount).toBe(4);
    expect(report.badRows).toEqual([
      { line: 3, reason: 'empty answer in column "text"' },
      { line: 4, reason: 'empty answer in column "text"' },
      { line: 5, reason: 'has 2 cells, the header has 3' },
      { line: 6, reason: 'has 4 cells, the header has 3' },
    ]);
    expect(describeBadRows(report, 2)).toMatch(/f\d+\.csv: skipped 4 bad rows: line 3 \(empty answer in column "text"\), line 4 \(.*\), and 2 more$/);
  });

  it("throws at the first one with onBadRow: 'error'", async () => {
    const file = csvFile(withBad);
    const err = await dataError(readQaCsv(file, { onBadRow: 'error' }));
    expect(err.message).toBe(`${file}:3: empty answer in column "text"`);
    expect(err.file).toBe(file);
    expect(err.line).toBe(3);
    const err2 = await dataError(readQaCsv(csvFile('context,question,text\nc,q,a\nc,q,a,b\n'), { onBadRow: 'error' }));
    expect(err2.message).toMatch(/:3: has 4 cells, the header has 3$/);
  });

  it('reports a quote that is never closed at the line where its row starts', async () => {
    const text = 'context,question,text\nc1,q1,a1\n\nc2,"q2,a2\nc3,q3,a3\n';
    const { rows, report } = await readQaCsv(csvFile(text));
    expect(rows.map((r) => r.line)).toEqual([2]);
    expect(report.badRows).toEqual([{ line: 4, reason: expect.stringContaining('never closed') }]);
    const err = await dataError(readQaCsv(csvFile(text), { onBadRow: 'error' }));
    expect(err.message).toMatch(/\.csv:4: a quoted cell starting in this row is never closed/);
  });

  it('hints at an unbalanced quote when a multi-line record has the wrong cell count', async () => {
    const text = 'context,question,text\nc1,"q1\nc2,q2,a2\nc3,"q3,x",a3\nc4,q4,a4\n';
    const { rows, report } = await readQaCsv(csvFile(text));
    expect(report.badRows).toEqual([{ line: 2, reason: 'has 4 cells, the header has 3 (it runs to line 4: is a quote unbalanced?)' }]);
    expect(rows.map((r) => r.line)).toEqual([5]);
  });

  it('keeps stray quotes inside unquoted cells as text, like pandas', async () => {
    const { rows } = await readQaCsv(csvFile('context,question,text\nsay "hi" now,q,a\n'), RAW);
    expect(rows[0]!.context).toBe('say "hi" now');
  });

  it('fails with one line when no row is usable', async () => {
    const err = await dataError(readQaCsv(csvFile('context,question,text\nc,q,\nc,q\n')));
    expect(err.message).toMatch(/\.csv: no usable rows: all 2 data rows are bad, e\.g\. line 2 \(empty answer in column "text"\), line 3 \(has 2 cells/);
  });
});

describe('file errors', () => {
  it('names the missing column and the columns found', async () => {
    const file = csvFile('context,query,answer\nc,q,a\n');
    const err = await dataError(readQaCsv(file));
    expect(err.message).toBe(`${file}: missing columns "question", "text" (columns found: "context", "query", "answer")`);
    const err2 = await dataError(readQaCsv(file, { questionColumn: 'query' }));
    expect(err2.message).toBe(`${file}: missing column "text" (columns found: "context", "query", "answer")`);
    const err3 = await dataError(readQaCsv(csvFile('text\nx\n'), { requireAnswer: false }));
    expect(err3.message).toMatch(/missing columns "context", "question" \(columns found: "text"\)$/);
  });

  it('rejects a duplicated column', async () => {
    const err = await dataError(readQaCsv(csvFile('context,question,text,text\nc,q,a,b\n')));
    expect(err.message).toMatch(/:1: column "text" appears 2 times in the header \(columns 3, 4\)$/);
  });

  it('rejects empty files, header-only files and missing files', async () => {
    expect((await dataError(readQaCsv(csvFile('')))).message).toMatch(/: the file is empty \(expected a header row\)$/);
    expect((await dataError(readQaCsv(csvFile('\ufeff\n\n')))).message).toMatch(/: the file is empty/);
    expect((await dataError(readQaCsv(csvFile('context,question,text\n')))).message).toMatch(/: no data rows after the header$/);
    const missing = join(dir, 'nope.csv');
    expect((await dataError(readQaCsv(missing))).message).toBe(`${missing}: cannot read: no such file`);
    expect((await dataError(readQaCsv(dir))).message).toBe(`${dir}: cannot read: not a file`);
  });

  it('rejects a file that is not UTF-8, naming the line', async () => {
    const latin1 = Buffer.concat([Buffer.from('context,question,text\nc,q,a\r\nc2,\n'), Buffer.from('caf\xe9,a\n', 'latin1')]);
    const file = csvFile(latin1);
    expect((await dataError(readQaCsv(file))).message).toBe(`${file}:4: not valid UTF-8 (byte 0xe9); save the file as UTF-8`);
    const cut = csvFile(Buffer.concat([Buffer.from('context,question,text\nc,q,caf'), Buffer.from([0xc3])]));
    expect((await dataError(readQaCsv(cut))).message).toMatch(/:2: not valid UTF-8 \(the file ends inside a character\)$/);
    const surrogate = csvFile(Buffer.concat([Buffer.from('context,question,text\nc,q,'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('\n')]));
    expect((await dataError(readQaCsv(surrogate))).message).toMatch(/:2: not valid UTF-8 \(byte 0xed\)/);
    const utf16 = csvFile(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('context,question,text\nc,q,a\n', 'utf16le')]));
    expect((await dataError(readQaCsv(utf16))).message).toBe(`${utf16}: the file is UTF-16; save it as UTF-8`);
    // A real U+FFFD and 4-byte characters are valid UTF-8.
    const { rows } = await readQaCsv(csvFile('context,question,text\nc\ufffd,q\u{1F600},a\u00e9\n'));
    expect(rows[0]).toMatchObject({ context: 'c\ufffd', question: 'q\u{1F600}', answer: 'a\u00e9' });
  });

  it('rejects bad options with a DataError', async () => {
    expect((await dataError(readQaCsv(tiny, { limit: 0 }))).message).toMatch(/limit must be a whole number/);
    expect((await dataError(readQaCsv(tiny, { limit: 1.5 }))).message).toMatch(/got 1\.5/);
    expect((await dataError(readQaCsv(tiny, { questionColumn: 'context' }))).message).toBe(
      'context, question and answer columns must differ (got "context", "context", "text")',
    );
  });
});
