// Writing CSV as RFC 4180 defines it (csv-stringify is not a dependency): a field is quoted when it holds a
// comma, a double quote, CR or LF (quotes inside are doubled), or starts or ends with whitespace that a reader
// might trim. Records end in "\n", as pandas' to_csv writes them; csv-parse, pandas and Python's csv module
// read both that and RFC 4180's "\r\n".

const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

/** One field, quoted only when it must be. */
export function csvField(value: string | number | null | undefined): string {
  const s = value === null || value === undefined ? '' : String(value);
  return NEEDS_QUOTES.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One record with its line ending. */
export function csvRecord(fields: readonly (string | number | null | undefined)[]): string {
  return `${fields.map(csvField).join(',')}\n`;
}
