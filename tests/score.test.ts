// engine-cli score against the golden fixture: qa0's source/target as a raw --input gives HF's loss (relative
// 1e-5, the fixture README's loss tolerance) and token count; pair0 (built by the fixture from the lowercased,
// whitespace-collapsed CSV cells) through --context/--question in a folder whose t5_webgpu.json records that
// cleaning, fed messy text that only the cleaning turns back into pair0's input; CLI flags and errors.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { writeT5WebgpuSettings } from '../hf/hf-folder.ts';
import { loadModelForCli, type LoadedModel } from '../hf/load-model.ts';
import { encodeScoreInput, scoreTarget } from '../tasks/score.ts';
import { scoreCommand } from '../cli/score.ts';
import { preprocessConfig } from '../util/text-clean.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
interface Case { name: string; source: string | [string, string]; target: string; input_ids: number[][]; labels: number[][]; loss: number }
const cases: Case[] = JSON.parse(readFileSync(join(GOLDEN, 'cases.json'), 'utf8')).cases;
const qa0 = cases.find((c) => c.name === 'qa0')!;
const pair0 = cases.find((c) => c.name === 'pair0')!;

const tmp = mkdtempSync(join(tmpdir(), 't5-score-'));
const cleanDir = join(tmp, 'cleaned');
let raw: LoadedModel;

beforeAll(async () => {
  await initGpu();
  raw = await loadModelForCli(GOLDEN);
  cpSync(GOLDEN, cleanDir, { recursive: true });
  await writeT5WebgpuSettings(cleanDir, { preprocess: preprocessConfig({ lowercase: true, collapseWhitespace: true }), extra: {} });
});
afterAll(() => {
  raw?.model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** Messy but equivalent after cleaning: upper case and runs of mixed whitespace. */
const mess = (s: string): string => `  ${s.replace(/ /g, ' \t ').replace(/warsaw/g, 'WarSaw')}\n`;

async function runCli(argv: string[]): Promise<string> {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    chunks.push(String(c));
    return true;
  });
  try {
    await scoreCommand(argv);
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

describe('score', () => {
  it('qa0 as raw --input: HF’s loss and 5 target tokens', async () => {
    expect(encodeScoreInput(raw, { input: qa0.source as string, target: qa0.target })).toEqual({ source: qa0.input_ids[0], target: qa0.labels[0] });
    const r = await scoreTarget(raw, { input: qa0.source as string, target: qa0.target });
    expect(r.tokens).toBe(qa0.labels[0]!.length);
    expect(Math.abs(r.loss - qa0.loss) / qa0.loss).toBeLessThanOrEqual(1e-5);
  });

  it('pair0 via --context/--question with the folder’s cleaning; without it the messy text is scored as given', async () => {
    const [context, question] = pair0.source as [string, string];
    const cleaned = await loadModelForCli(cleanDir);
    try {
      expect(cleaned.preprocess?.lowercase).toBe(true);
      const inp = { context: mess(context), question: mess(question), target: ` ${pair0.target} ` };
      expect(encodeScoreInput(cleaned, inp).source).toEqual(pair0.input_ids[0]);
      const r = await scoreTarget(cleaned, inp);
      expect(r.tokens).toBe(4);
      expect(Math.abs(r.loss - pair0.loss) / pair0.loss).toBeLessThanOrEqual(1e-5);
      // a raw --input is never cleaned, even in a folder that records cleaning
      expect(encodeScoreInput(cleaned, { input: 'Hello  World', target: 'x' }).source).toEqual(raw.tokenizer.encode('Hello  World'));
    } finally {
      cleaned.model.dispose();
    }
    // the golden folder records no cleaning: the messy text gives other ids
    expect(encodeScoreInput(raw, { context: mess(context), question: mess(question), target: pair0.target }).source).not.toEqual(pair0.input_ids[0]);
  });

  it('CLI: --json prints {"loss", "tokens"}; the text form; errors name the option', async () => {
    const out = await runCli(['--model', cleanDir, '--context', pair0.source[0]!, '--question', pair0.source[1]!, '--target', pair0.target, '--json']);
    const j = JSON.parse(out);
    expect(Object.keys(j)).toEqual(['loss', 'tokens']);
    expect(j.tokens).toBe(4);
    expect(Math.abs(j.loss - pair0.loss) / pair0.loss).toBeLessThanOrEqual(1e-5);
    expect(await runCli(['--model', GOLDEN, '--input', qa0.source as string, '--target', qa0.target])).toMatch(/^loss 29\.869\d* over 5 target tokens/);
    await expect(scoreCommand(['--model', GOLDEN, '--target', 'x'])).rejects.toThrow('score: give --input TEXT, or --context TEXT with --question TEXT');
    await expect(scoreCommand(['--model', GOLDEN, '--input', 'a', '--context', 'b', '--question', 'c', '--target', 'x'])).rejects.toThrow(/either --input or --context/);
    await expect(scoreCommand(['--model', GOLDEN, '--context', 'b', '--target', 'x'])).rejects.toThrow('score: --context needs --question');
    await expect(scoreCommand(['--model', GOLDEN, '--input', 'a'])).rejects.toThrow('score: --target is required');
    await expect(scoreCommand(['--model', GOLDEN, '--context', '', '--question', 'q', '--target', 'x'])).rejects.toThrow('score: --context is empty');
    await expect(scoreCommand(['--model', join(tmp, 'missing'), '--input', 'a', '--target', 'x'])).rejects.toThrow(/no such folder/);
    await expect(scoreCommand(['--model', GOLDEN, '--input', 'a', '--target', 'x', '--bogus'])).rejects.toThrow(/^score: Unknown option '--bogus'/);
  });

  it('long sources are truncated only_first to --max-source-length (the question kept)', async () => {
    const [context, question] = pair0.source as [string, string];
    const { source } = encodeScoreInput(raw, { context, question, target: 'x' }, { maxSourceLength: 20 });
    const q = raw.tokenizer.encode(question);
    expect(source.length).toBe(20);
    expect(source.slice(-q.length)).toEqual(q);
  });
});
