// One table per command describes its flags once; from it come node:util's parseArgs options, the --help text,
// the checked and typed values, and the library options they fill (flagOptions). Every bad flag or value is a
// one-line error naming the flag, prefixed with the command.
import { parseArgs } from 'node:util';

interface FlagCommon<O> {
  help: string;
  /** One-letter alias (-q). */
  short?: string;
  /** Where the value goes in the library's options; 'csv.fillNa' reaches into a nested object. */
  to?: OptionPath<O>;
}

interface ValueFlag<O> extends FlagCommon<O> {
  /** Placeholder in --help (N, FILE.csv, DIR|HUB_ID). */
  arg?: string;
  /** An absent or empty value is an error. */
  required?: true;
  /**
   * What the library does when the flag is absent, for --help only: it applies that default itself (so a
   * resumed run keeps its own, and a default derived from another option follows it).
   */
  libraryDefault?: string;
}

export type Flag<O = never> =
  | (FlagCommon<O> & { type: 'boolean'; as?: (v: true) => unknown })
  | (ValueFlag<O> & { type: 'string'; default?: string; choices?: readonly string[]; as?: (v: string) => unknown })
  | (ValueFlag<O> & { type: 'number'; default?: number; as?: (v: number) => unknown })
  | (ValueFlag<O> & { type: 'int'; default?: number; min?: number; as?: (v: number) => unknown })
  | (ValueFlag<O> & { type: 'list'; default?: string; of?: 'number'; length?: number; as?: (v: string[] | number[]) => unknown });

export type Flags<O = never> = Record<string, Flag<O>>;
/** Any command's table, whatever library options its `to` paths name. */
type AnyFlags = Flags<any>;

/** 'key' or 'key.sub' for an object-valued option (one level is all the commands need). */
type OptionPath<O> = {
  [K in keyof O & string]-?: K | (NonNullable<O[K]> extends readonly unknown[] | ((...a: never[]) => unknown) ? never
    : NonNullable<O[K]> extends object ? `${K}.${keyof NonNullable<O[K]> & string}` : never);
}[keyof O & string];

type ValueOf<F> = F extends { type: 'boolean' } ? boolean
  : F extends { type: 'int' | 'number' } ? number
  : F extends { type: 'list'; of: 'number' } ? number[]
  : F extends { type: 'list' } ? string[]
  : string;
/** A boolean is false when absent; a flag with a default or a required one always has a value. */
type Absent<F> = F extends { type: 'boolean' } | { default: unknown } | { required: true } ? never : undefined;
export type FlagValues<T> = { -readonly [K in keyof T]: ValueOf<T[K]> | Absent<T[K]> };

const HELP_FLAG: Flag = { type: 'boolean', short: 'h', help: 'print this help' };

/** The one number parser of the CLI: `--lr: expected a number, got 'abc'`. */
export function parseNumber(flag: string, text: string, opts: { integer?: boolean; min?: number } = {}): number {
  const t = text.trim();
  const v = Number(t);
  const ok = opts.integer ? /^[+-]?\d+$/.test(t) && Number.isSafeInteger(v) : t !== '' && Number.isFinite(v);
  if (!ok || (opts.min !== undefined && v < opts.min)) {
    const what = !opts.integer ? 'a number'
      : opts.min === 1 ? 'a positive integer'
      : opts.min !== undefined ? `an integer >= ${opts.min}` : 'an integer';
    throw new Error(`--${flag}: expected ${what}, got '${text}'`);
  }
  return v;
}

function convert(name: string, f: Flag, text: string): unknown {
  switch (f.type) {
    case 'number':
      return parseNumber(name, text);
    case 'int':
      return parseNumber(name, text, { integer: true, min: f.min });
    case 'list': {
      const items = text.split(',').map((s) => s.trim()).filter(Boolean);
      if (f.length !== undefined && items.length !== f.length) {
        throw new Error(`--${name}: expected ${f.length} comma-separated values, got '${text}'`);
      }
      return f.of === 'number' ? items.map((s) => parseNumber(name, s)) : items;
    }
    case 'string':
      if (f.choices && !f.choices.includes(text)) throw new Error(`--${name}: expected ${orList(f.choices)}, got '${text}'`);
      return text;
    default:
      return text;
  }
}

const orList = (xs: readonly string[]) => (xs.length > 1 ? `${xs.slice(0, -1).join(', ')} or ${xs.at(-1)}` : xs[0]!);

/**
 * A negative number after a flag that takes a value (`--length-penalty -0.5`) is that value: parseArgs alone
 * would refuse it as ambiguous.
 */
function joinNegativeValues(table: AnyFlags, argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const f = a.startsWith('--') ? table[a.slice(2)] : undefined;
    const next = argv[i + 1];
    if (f && f.type !== 'boolean' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function argText(name: string, f: Flag): string {
  if (f.type === 'boolean') return '';
  if (f.arg) return f.arg;
  if (f.type === 'string' && f.choices) return f.choices.join('|');
  return f.type === 'int' ? 'N' : f.type === 'number' ? 'X' : f.type === 'list' ? 'A,B' : name.toUpperCase();
}

/** `usage`, then one line per flag: name, placeholder, what it does, its default. */
export function helpText(usage: string, table: AnyFlags): string {
  const rows = Object.entries({ ...table, help: HELP_FLAG }).map(([name, f]) => {
    const left = `${f.short ? `-${f.short}, ` : '    '}--${name}${f.type === 'boolean' ? '' : ` ${argText(name, f)}`}`;
    let def = '';
    if (f.type !== 'boolean') {
      if (f.required) def = ' (required)';
      else if (f.default !== undefined) def = ` (default: ${f.default})`;
      else if (f.libraryDefault !== undefined) def = ` (default: ${f.libraryDefault})`;
    }
    return [left, `${f.help}${def}`];
  });
  // a flag with a long list of choices gets its text on the next line (as argparse does), not every row's width
  const width = Math.max(...rows.map(([l]) => l!.length).filter((n) => n <= HELP_LEFT_MAX)) + 2;
  const line = ([l, r]: string[]) => (l!.length <= HELP_LEFT_MAX ? `  ${l!.padEnd(width)}${r}` : `  ${l}\n  ${''.padEnd(width)}${r}`);
  return `${usage.trimEnd()}\n\noptions:\n${rows.map(line).join('\n')}\n`;
}

/** The widest flag column of --help; longer flags (their choices spelled out) put their text below. */
const HELP_LEFT_MAX = 44;

/**
 * Parses argv by the table. --help/-h prints the help to stdout and gives null. Otherwise every value is
 * converted and checked, defaults applied and required flags present.
 */
export function parseFlags<T extends AnyFlags>(
  command: string, usage: string, table: T, argv: string[], opts: { positionals?: boolean } = {},
): { values: FlagValues<T>; positionals: string[] } | null {
  const fail = (msg: string): never => {
    // node:util's messages span lines; the CLI prints one.
    throw new Error(`${command}: ${msg.replace(/\s*\n\s*/g, ' ')}`);
  };
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, f] of Object.entries({ ...table, help: HELP_FLAG })) {
    options[name] = { type: f.type === 'boolean' ? 'boolean' : 'string', ...(f.short ? { short: f.short } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(table, argv), options, allowPositionals: opts.positionals ?? false, strict: true });
  } catch (err) {
    return fail((err as Error).message);
  }
  const raw = parsed.values as Record<string, string | boolean | undefined>;
  if (raw.help) {
    process.stdout.write(helpText(usage, table));
    return null;
  }
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(table)) {
    const given = raw[name];
    if (f.type === 'boolean') {
      values[name] = given === true;
    } else if (f.required && !given) {
      fail(`--${name} is required (engine-cli ${command} --help)`);
    } else if (typeof given === 'string') {
      try {
        values[name] = convert(name, f, given);
      } catch (err) {
        fail((err as Error).message);
      }
    } else if (f.default !== undefined) {
      values[name] = f.type === 'list' ? convert(name, f, f.default) : f.default;
    }
  }
  return { values: values as FlagValues<T>, positionals: parsed.positionals };
}

/** The library options the given flags fill, as the table's `to` and `as` say; absent flags are left out. */
export function flagOptions<O>(table: Flags<O>, values: Record<string, unknown>): Partial<O> {
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(table)) {
    const v = values[name];
    if (!f.to || v === undefined || v === false) continue;
    const value = f.as ? (f.as as (x: unknown) => unknown)(v) : v;
    const [key, sub] = f.to.split('.') as [string, string | undefined];
    if (sub === undefined) out[key] = value;
    else ((out[key] ??= {}) as Record<string, unknown>)[sub] = value;
  }
  return out as Partial<O>;
}
