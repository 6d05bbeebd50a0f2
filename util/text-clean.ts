// The tutorial's text cleaning (pandas fillna, whitespace collapse, lowercase) and the preprocessing settings a
// model folder stores (t5_webgpu.json), so that training, predict, score and eval clean text the same way.
import { DataError } from './data-error.ts';

export interface CleanOptions {
  /**
   * Missing or blank cells become `none`, as pandas `fillna("none")` does in the tutorial. The reader applies
   * it to context and question only: an empty answer is reported as a bad row.
   */
  fillNa: boolean;
  /** Runs of whitespace become one space and the ends are stripped: Python's `" ".join(s.split())`. */
  collapseWhitespace: boolean;
  lowercase: boolean;
}

export const DEFAULT_CLEAN: Readonly<CleanOptions> = { fillNa: true, collapseWhitespace: true, lowercase: true };

export interface ColumnNames {
  contextColumn: string;
  questionColumn: string;
  answerColumn: string;
}

export const DEFAULT_COLUMNS: Readonly<ColumnNames> = { contextColumn: 'context', questionColumn: 'question', answerColumn: 'text' };

/** Written into the model folder so that predict and score clean their input exactly as training did. */
export interface PreprocessConfig extends CleanOptions, ColumnNames {
  version: 1;
}

// Python's str.split() whitespace (str.isspace), which differs from JS `\s`: it has \x1c-\x1f and \x85, not \ufeff.
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

const FILL_VALUE = 'none';

/**
 * Cleans one cell as the tutorial does: fill missing, collapse whitespace, lowercase.
 * A whitespace-only cell counts as missing once collapsed (pandas would keep it as an empty string).
 * pandas also turns cells such as `NA` or `null` into NaN; that is not copied, since it would erase real answers.
 */
export function cleanText(text: string | undefined, opts: CleanOptions = DEFAULT_CLEAN): string {
  let s = text ?? '';
  if (opts.collapseWhitespace) s = s.replace(PY_WHITESPACE, ' ').trim();
  if (opts.lowercase) s = s.toLowerCase();
  if (opts.fillNa && isBlank(s)) s = FILL_VALUE;
  return s;
}

/** True for a cell that is empty or only Python whitespace. */
export function isBlank(s: string): boolean {
  return s.replace(PY_WHITESPACE, '') === '';
}

export function preprocessConfig(opts: Partial<CleanOptions> & Partial<ColumnNames> = {}): PreprocessConfig {
  return {
    version: 1,
    fillNa: opts.fillNa ?? DEFAULT_CLEAN.fillNa,
    collapseWhitespace: opts.collapseWhitespace ?? DEFAULT_CLEAN.collapseWhitespace,
    lowercase: opts.lowercase ?? DEFAULT_CLEAN.lowercase,
    contextColumn: opts.contextColumn ?? DEFAULT_COLUMNS.contextColumn,
    questionColumn: opts.questionColumn ?? DEFAULT_COLUMNS.questionColumn,
    answerColumn: opts.answerColumn ?? DEFAULT_COLUMNS.answerColumn,
  };
}

/** Checks a config read back from a model folder; `source` names that file in the error. */
export function parsePreprocessConfig(json: unknown, source: string): PreprocessConfig {
  const fail = (what: string): never => {
    throw new DataError(`${source}: ${what}`, source);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('preprocess config is not a JSON object');
  const o = json as Record<string, unknown>;
  if (o.version !== 1) return fail(`unsupported preprocess config version ${JSON.stringify(o.version)} (expected 1)`);
  const flag = (k: keyof CleanOptions): boolean => (typeof o[k] === 'boolean' ? (o[k] as boolean) : fail(`"${k}" must be true or false`));
  const name = (k: keyof ColumnNames): string =>
    typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : fail(`"${k}" must be a non-empty string`);
  return {
    version: 1,
    fillNa: flag('fillNa'),
    collapseWhitespace: flag('collapseWhitespace'),
    lowercase: flag('lowercase'),
    contextColumn: name('contextColumn'),
    questionColumn: name('questionColumn'),
    answerColumn: name('answerColumn'),
  };
}
