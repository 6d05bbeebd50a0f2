// The flag tables (cli/flags.ts). The CLI is bundled as scripts/build.mjs does and run as a user runs it, for
// the exit codes and where the text goes; none of these runs opens a device.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flagOptions, helpText, parseFlags, parseNumber, type Flags } from '../cli/flags.ts';

const COMMANDS = ['train', 'eval', 'predict', 'score', 'report', 'init', 'info', 'bench', 'serve'];

let dir: string;
let cli: string;

beforeAll(async () => {
  // inside the checkout (.cache/ is ignored) so that the bundle finds the packages in node_modules
  mkdirSync('.cache', { recursive: true });
  dir = mkdtempSync(join('.cache', 'cli-flags-'));
  cli = join(dir, 'engine-cli.mjs');
  await build({ entryPoints: ['cli/engine-cli.ts'], outfile: cli, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'warning' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: process.cwd() });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('engine-cli <command> --help', () => {
  const help = new Map<string, string>();
  for (const cmd of COMMANDS) {
    it(`${cmd} --help and -h: every flag with its default, on stdout, exit 0`, () => {
      const long = run(cmd, '--help');
      help.set(cmd, long.stdout);
      expect(long.stderr).toBe('');
      expect(long.code).toBe(0);
      expect(long.stdout).toMatch(new RegExp(`^usage: engine-cli ${cmd}`));
      expect(long.stdout).toContain('-h, --help');
      expect(run(cmd, '-h').stdout).toBe(long.stdout);
    });
  }

  it('lists the defaults: the CLI applies some, the library others', () => {
    const bench = help.get('bench')!;
    expect(bench).toMatch(/--repeat N +timed batches.*\(default: 5\)/);
    expect(bench).toMatch(/--sizes A,B /);
    expect(bench).toMatch(/--backend vulkan\|metal\|d3d12/);
    const train = help.get('train')!;
    for (const flag of ['--lr X', '--adam-betas B1,B2', '--no-fillna', '--eval-max-new-tokens N', '--resume OUT', '-q, --quiet', '--lr-schedule constant|constant_with_warmup|linear|cosine|cosine_with_restarts|polynomial|inverse_sqrt', '--warmup-ratio X']) {
      expect(train).toContain(flag);
    }
    expect(train).toMatch(/--epochs N .*\(default: 5\)/);
    // a flag whose choices are spelled out long has its text on the next line; the others keep a narrow column
    expect(train).toMatch(/--lr-schedule constant\|[^\n]*\|inverse_sqrt\n {30,}Hugging Face's lr_scheduler_type/);
    expect(train).toMatch(/\n {6}--lr X {20,50}learning rate/);
    expect(train).toMatch(/--lr X .*\(default: 1e-4\)/);
    expect(help.get('init')).toMatch(/--seed N .*\(default: 0\)/);
    expect(help.get('eval')).toMatch(/--model DIR\|HUB_ID .*\(required\)/);
  });

  it("the README's command table names every flag of every command", () => {
    // --help, --quiet, --backend and --adapter are described once, under the table
    const everywhere = new Set(['--help', '--quiet', '--backend', '--adapter']);
    const readme = readFileSync('README.md', 'utf8');
    for (const cmd of COMMANDS) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${cmd} `) || l.startsWith(`| \`${cmd}\``));
      expect(row, `README: no table row for ${cmd}`).toBeDefined();
      const flags = new Set(help.get(cmd)!.match(/--[a-z][a-z0-9-]*/g));
      const missing = [...flags].filter((f) => !everywhere.has(f) && !new RegExp(`${f}(?![a-z0-9-])`).test(row!));
      expect(missing, `README's ${cmd} row`).toEqual([]);
    }
  });
});

describe('engine-cli errors: one line on stderr, exit 1', () => {
  it('an unknown flag', () => {
    const r = run('bench', '--bogus');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^engine-cli: bench: Unknown option '--bogus'[^\n]*\n$/);
  });

  it('an unknown command: one line naming the nearest command and the list', () => {
    const typo = run('trian');
    expect(typo.code).toBe(1);
    expect(typo.stdout).toBe('');
    expect(typo.stderr).toBe(
      "engine-cli: unknown command 'trian' (did you mean 'train'?); " +
        'commands: train, eval, predict, report, info, init, score, serve, bench (engine-cli --help)\n',
    );
    // nothing near: no suggestion
    expect(run('xyzzy').stderr).toBe(
      "engine-cli: unknown command 'xyzzy'; commands: train, eval, predict, report, info, init, score, serve, bench (engine-cli --help)\n",
    );
  });

  it('a bad number, a bad choice, a missing flag', () => {
    const lr = run('train', '--data', 'x.csv', '--model', 'm', '--out', 'o', '--lr', 'abc');
    expect(lr.code).toBe(1);
    expect(lr.stderr).toBe("engine-cli: train: --lr: expected a number, got 'abc'\n");
    const repeat = run('bench', '--repeat', '0');
    expect(repeat.code).toBe(1);
    expect(repeat.stderr).toBe("engine-cli: bench: --repeat: expected a positive integer, got '0'\n");
    expect(run('eval', '--model', 'm', '--data', 'd.csv', '--bad-rows', 'maybe').stderr)
      .toBe("engine-cli: eval: --bad-rows: expected skip or error, got 'maybe'\n");
    expect(run('init', '--config', 't5-tiny').stderr).toBe('engine-cli: init: --tokenizer is required (engine-cli init --help)\n');
  });
});

describe('parseFlags and flagOptions', () => {
  interface Lib { rate?: number; steps?: number; betas?: [number, number]; mode?: 'a' | 'b'; nested?: { off?: boolean }; cache?: string | null }
  const FLAGS = {
    rate: { type: 'number', help: 'r', to: 'rate' },
    steps: { type: 'int', min: 1, default: 3, help: 's', to: 'steps' },
    betas: { type: 'list', of: 'number', length: 2, help: 'b', to: 'betas' },
    mode: { type: 'string', choices: ['a', 'b'], help: 'm', to: 'mode' },
    'no-x': { type: 'boolean', help: 'x', to: 'nested.off', as: () => true },
    'no-cache': { type: 'boolean', help: 'c', to: 'cache', as: () => null },
    name: { type: 'string', required: true, help: 'n' },
    quiet: { type: 'boolean', short: 'q', help: 'q' },
  } satisfies Flags<Lib>;
  const parse = (...argv: string[]) => parseFlags('t', 'usage: t\n', FLAGS, argv)!;

  it('typed values, defaults, negative numbers after a flag, the mapping', () => {
    const { values } = parse('--name', 'n', '--rate', '-0.5', '--betas', '0.9, 0.99', '-q', '--no-x', '--no-cache');
    expect(values).toEqual({ rate: -0.5, steps: 3, betas: [0.9, 0.99], mode: undefined, 'no-x': true, 'no-cache': true, name: 'n', quiet: true });
    expect(flagOptions<Lib>(FLAGS, values)).toEqual({ rate: -0.5, steps: 3, betas: [0.9, 0.99], nested: { off: true }, cache: null });
    // absent flags are left out, so the library applies its own defaults
    expect(flagOptions<Lib>(FLAGS, parse('--name', 'n', '--mode', 'b').values)).toEqual({ steps: 3, mode: 'b' });
  });

  it('one-line errors naming the flag', () => {
    expect(() => parse('--name', 'n', '--steps', '1.5')).toThrow("t: --steps: expected a positive integer, got '1.5'");
    expect(() => parse('--name', 'n', '--steps', '1e3')).toThrow("t: --steps: expected a positive integer, got '1e3'");
    expect(() => parse('--name', 'n', '--rate', '')).toThrow("t: --rate: expected a number, got ''");
    expect(() => parse('--name', 'n', '--betas', '0.9')).toThrow("t: --betas: expected 2 comma-separated values, got '0.9'");
    expect(() => parse('--name', 'n', '--betas', '0.9,x')).toThrow("t: --betas: expected a number, got 'x'");
    expect(() => parse('--name', 'n', '--mode', 'c')).toThrow("t: --mode: expected a or b, got 'c'");
    expect(() => parse('--rate', '1')).toThrow('t: --name is required (engine-cli t --help)');
    expect(() => parse('--name', '')).toThrow('t: --name is required');
    expect(() => parse('--name', 'n', 'extra')).toThrow(/^t: Unexpected argument 'extra'/);
    expect(() => parse('--name', 'n', '--what')).toThrow(/^t: Unknown option '--what'[^\n]*$/);
  });

  it('parseNumber', () => {
    expect(parseNumber('lr', ' 1e-4 ')).toBe(1e-4);
    expect(parseNumber('n', '+7', { integer: true })).toBe(7);
    expect(() => parseNumber('lr', 'abc')).toThrow("--lr: expected a number, got 'abc'");
    expect(() => parseNumber('lr', 'Infinity')).toThrow('expected a number');
    expect(() => parseNumber('seed', '-1', { integer: true, min: 0 })).toThrow("--seed: expected an integer >= 0, got '-1'");
    expect(() => parseNumber('n', '9007199254740993', { integer: true })).toThrow('expected an integer');
  });

  it('helpText: usage, then every flag with its placeholder and default, aligned', () => {
    const text = helpText('usage: t [options]\n', FLAGS);
    expect(text.split('\n').slice(0, 3)).toEqual(['usage: t [options]', '', 'options:']);
    expect(text).toContain('    --steps N ');
    expect(text).toMatch(/--steps N +s \(default: 3\)\n/);
    expect(text).toMatch(/--mode a\|b +m\n/);
    expect(text).toMatch(/--name NAME +n \(required\)\n/);
    expect(text).toMatch(/-q, --quiet +q\n/);
    // the flag part has single spaces inside; the padding after it is the first run of two or more
    const cols = text.split('\n').filter((l) => l.startsWith('  ')).map((l) => /^\s+\S.*?\s{2,}(?=\S)/.exec(l)![0].length);
    expect(new Set(cols).size).toBe(1);
  });
});
