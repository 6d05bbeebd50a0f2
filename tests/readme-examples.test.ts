// The README's TypeScript examples are the package's promise to a Node user ("every command is a call into
// exported functions"), and vitest strips types without checking them, so nothing else would notice an example
// going stale. Here: the examples and the whole project pass `tsc` (the examples with 't5-webgpu' resolved to
// index.ts, as a user's import resolves to the package), and the engine example runs. The model example trains
// t5-small from the Hub, so it is only type-checked.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, test, vi } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const WORK = join(ROOT, '.cache', 'readme-examples');

/** The ```ts blocks of the README, in order. */
function readmeExamples(): string[] {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** tsc over the given example files (relative to WORK), and the whole project with `project`; its exit status
 * and output. */
function typecheck(files: string[], project: boolean): { status: number | null; output: string } {
  const root = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
  const config = {
    extends: '../../tsconfig.json',
    compilerOptions: { paths: { 't5-webgpu': ['../../index.ts'] } },
    include: [...(project ? root.include.map((p) => `../../${p}`) : []), ...files],
  };
  writeFileSync(join(WORK, 'tsconfig.json'), JSON.stringify(config, null, 2));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', join(WORK, 'tsconfig.json')], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('README examples', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test('the README has the engine and the model example', () => {
    const examples = readmeExamples();
    expect(examples.length).toBeGreaterThanOrEqual(2);
    for (const e of examples) expect(e).toMatch(/from 't5-webgpu'/);
  });

  test('they and the whole project pass tsc', () => {
    rmSync(WORK, { recursive: true, force: true });
    mkdirSync(WORK, { recursive: true });
    const files = readmeExamples().map((code, i) => {
      const name = `example-${i + 1}.ts`;
      writeFileSync(join(WORK, name), code);
      return name;
    });
    const r = typecheck(files, true);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  test('a type error in an example fails the check', () => {
    mkdirSync(WORK, { recursive: true });
    writeFileSync(join(WORK, 'broken.ts'), "import { tensor } from 't5-webgpu';\nconst t: string = tensor([1], [1]);\n");
    const r = typecheck(['broken.ts'], false);
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/broken\.ts.*Type 'Tensor' is not assignable to type 'string'/);
  });

  test('the engine example runs and prints a finite loss', async () => {
    const engine = readmeExamples().find((e) => e.includes('backward('));
    expect(engine).toBeDefined();
    mkdirSync(WORK, { recursive: true });
    const file = join(WORK, 'engine-example.ts');
    writeFileSync(file, engine!.replace("from 't5-webgpu'", `from ${JSON.stringify(join(ROOT, 'index.ts'))}`));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    await import(pathToFileURL(file).href);
    expect(log).toHaveBeenCalledTimes(1);
    const printed = log.mock.calls[0]![0] as unknown;
    expect(typeof printed).toBe('number');
    // 10 classes from near-zero logits: about ln 10
    expect(printed as number).toBeGreaterThan(1.5);
    expect(printed as number).toBeLessThan(3.5);
  });
});
