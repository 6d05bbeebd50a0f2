// The web page (engine-cli serve + web/ + dist/t5-webgpu.browser.js) in headless Chromium with its SwiftShader
// WebGPU adapter, driven by playwright-core, on the golden tiny T5: greedy and 4-beam ids equal to Node's
// predict, two training steps' losses equal to Node's (rel <= 1e-5), the downloaded folder loads in Node with the
// weights Node's same two steps give, and the on-page messages for a folder without spiece.model, a CSV without
// the columns, and a browser without WebGPU. Skipped (visibly) where /usr/bin/chromium or playwright-core is
// missing: scripts/setup.sh installs Debian's chromium. T5_WEBGPU_SCREENSHOT=1 rewrites docs/web-page.png.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../tasks/web-server.ts';
import { initGpu } from '../engine/gpu.ts';
import { AdamW } from '../optim/adamw.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import { T5Tokenizer } from '../hf/tokenizer.ts';
import { predictOne } from '../tasks/predict.ts';
import { qaRowsFromText } from '../tasks/qa-csv-text.ts';
import { collate, tokenizeRows, type Example } from '../train/dataset.ts';
import { trainStep } from '../train/train-step.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';

// page.evaluate callbacks run in the page; the project's tsconfig has no DOM types
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GOLDEN = join(ROOT, 'tests/fixtures/golden/t5-tiny-relu');
const CSV = join(ROOT, 'tests/fixtures/data/qa_tiny.csv');
const CHROMIUM = '/usr/bin/chromium';
const playwright = await import('playwright-core').catch(() => null);
const canRun = existsSync(CHROMIUM) && playwright !== null;
// SwiftShader's Vulkan in Chromium's GPU process; --no-sandbox because tests may run as root
const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--no-sandbox', '--headless=new'];

const context = 'The Brisbane Cricket Ground, commonly known as the Gabba, is a major sports stadium in Brisbane, Australia.';
const question = 'where is the gabba';
const STEPS = 2;
const TRAIN = { steps: STEPS, batchSize: 4, lr: 1e-3, seed: 100 };

type Browser = Awaited<ReturnType<NonNullable<typeof playwright>['chromium']['launch']>>;
type Page = Awaited<ReturnType<Browser['newPage']>>;
interface PageAnswer { text: string; ids: number[]; ms: number; newTokens: number }

let browser: Browser;
let server: Server;
let url: string;
let tmp: string;

/** A page of `at`, after its model has loaded (or failed to: then the page shows why). */
async function openPage(at: string, init?: string): Promise<Page> {
  const page = await browser.newPage();
  if (init) await page.addInitScript(init);
  await page.goto(at);
  await page.waitForFunction(() => window.t5page !== undefined || document.getElementById('error').textContent !== '', null, { timeout: 60_000 });
  await page.evaluate(() => window.t5page?.ready.catch(() => {}));
  return page;
}

const errorText = (page: Page): Promise<string> => page.locator('#error').textContent().then((t) => t ?? '');

describe.skipIf(!canRun)('web page in headless Chromium (engine-cli serve)', () => {
  let page: Page;
  let node: T5ForConditionalGeneration;
  let tokenizer: T5Tokenizer;

  beforeAll(async () => {
    execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), 'browser'], { cwd: ROOT });
    tmp = mkdtempSync(join(tmpdir(), 'web-page-test-'));
    ({ url, server } = await startServer({ dir: GOLDEN, port: 0 }));
    browser = await playwright!.chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const t0 = performance.now();
    page = await openPage(url);
    console.log(`page load (golden t5-tiny-relu): ${(performance.now() - t0).toFixed(0)} ms to ready, model ${(await page.evaluate(() => window.t5page.timings.loadMs)).toFixed(0)} ms`);
    await initGpu();
    node = await fromPretrained(GOLDEN);
    tokenizer = await T5Tokenizer.load(join(GOLDEN, 'spiece.model'), { vocabSize: node.config.vocab_size });
  });
  afterAll(async () => {
    node?.dispose();
    await browser?.close();
    server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('loads the folder and shows the adapter', async () => {
    expect(await errorText(page)).toBe('');
    expect(await page.locator('#status').textContent()).toMatch(/^ready: 0\.\d+ M parameters on /);
  });

  for (const [name, generation] of [['greedy', { num_beams: 1 }], ['4 beams (the folder\'s and tutorial\'s settings)', {}]] as const) {
    it(`${name}: the same ids as Node's predict`, async () => {
      const t0 = performance.now();
      const want = await predictOne(node, tokenizer, { context, question }, { modelDir: GOLDEN, generation });
      const nodeMs = performance.now() - t0;
      const got: PageAnswer = await page.evaluate(([c, q, g]) => window.t5page.answer(c, q, g), [context, question, generation] as const);
      expect(got.ids).toEqual(want.sequences[0]!.ids);
      expect(got.text).toBe(want.sequences[0]!.text);
      const n = got.newTokens;
      console.log(`${name}: ${n} new tokens, page ${(n / (got.ms / 1000)).toFixed(1)} tokens/s, Node ${(n / (nodeMs / 1000)).toFixed(1)} tokens/s`);
    });
  }

  it('the answer button shows the answer (docs/web-page.png with T5_WEBGPU_SCREENSHOT=1)', async () => {
    await page.fill('#context', context);
    await page.fill('#question', question);
    await page.click('#answer-button');
    await page.waitForFunction(() => document.getElementById('answer').textContent !== '', null, { timeout: 60_000 });
    expect(await errorText(page)).toBe('');
    const shot = process.env.T5_WEBGPU_SCREENSHOT ? join(ROOT, 'docs/web-page.png') : join(tmp, 'web-page.png');
    mkdirSync(join(shot, '..'), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
  });

  it('a CSV without the columns: the message names them', async () => {
    await page.setInputFiles('#csv-file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from('passage,query,answer\na,b,c\n') });
    await expect.poll(() => errorText(page)).toMatch(/bad\.csv: missing columns "context", "question", "text" \(columns found: "passage", "query", "answer"\)/);
  });

  it(`${STEPS} training steps: losses equal to Node's (rel <= 1e-5), and the download loads in Node with Node's weights`, async () => {
    const csvText = readFileSync(CSV, 'utf8');
    const pageLosses: { losses: number[]; ms: number; pooledAfter: number } = await page.evaluate(async ([text, o]) => {
      const p = window.t5page;
      const { examples } = p.examplesFrom(text, 'qa_tiny.csv');
      const t0 = performance.now();
      const losses = await p.train(examples, o);
      return { losses, ms: performance.now() - t0, pooledAfter: p.memory().bytesPooled };
    }, [csvText, TRAIN] as const);
    // the fine-tune gives its freed buffers back to the browser
    expect(pageLosses.pooledAfter).toBe(0);

    const trained = await fromPretrained(GOLDEN, { requiresGrad: true });
    const { examples } = tokenizeRows(qaRowsFromText(csvText, 'qa_tiny.csv').rows, tokenizer, { maxSourceLength: 512, maxTargetLength: 128 });
    const opt = new AdamW(trained.parameters().map(([, p]) => p), { lr: TRAIN.lr, eps: 1e-6, weightDecay: 0, variant: 'hf' });
    const nodeLosses: number[] = [];
    const t0 = performance.now();
    for (let s = 0; s < STEPS; s++) {
      const batch: Example[] = Array.from({ length: TRAIN.batchSize }, (_, i) => examples[(s * TRAIN.batchSize + i) % examples.length]!);
      nodeLosses.push((await trainStep(trained, opt, [collate(batch)], { seed: TRAIN.seed, firstMicro: s, lr: TRAIN.lr, dropout: 0 })).loss);
    }
    const nodeMs = performance.now() - t0;
    console.log(`training step (batch ${TRAIN.batchSize}): page ${(pageLosses.ms / STEPS).toFixed(0)} ms, Node ${(nodeMs / STEPS).toFixed(0)} ms; losses page ${pageLosses.losses.join(', ')} Node ${nodeLosses.join(', ')}`);
    for (let s = 0; s < STEPS; s++) expect(Math.abs(pageLosses.losses[s]! - nodeLosses[s]!) / Math.abs(nodeLosses[s]!)).toBeLessThanOrEqual(1e-5);

    const download = page.waitForEvent('download');
    await page.click('#download-button');
    const zip = join(tmp, 'model.zip');
    await (await download).saveAs(zip);
    const folder = join(tmp, 'unzipped');
    for (const [name, bytes] of readStoredZip(readFileSync(zip))) {
      mkdirSync(join(folder, name, '..'), { recursive: true });
      writeFileSync(join(folder, name), bytes);
    }
    const dir = join(folder, 't5-finetuned');
    for (const f of ['config.json', 'generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json', 'spiece.model', 'model.safetensors']) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    const loaded = await loadModelForCli(dir);
    const want = new Map(await trained.stateDict());
    const got = await readSafetensors(join(dir, 'model.safetensors'));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    // Each AdamW step moves a weight by about lr (m/√v is about ±1); another adapter's rounding changes that by a
    // small fraction, a different update by about lr. The weights must also have moved from the golden ones.
    const golden = await readSafetensors(join(GOLDEN, 'model.safetensors'));
    let worst = 0;
    let moved = 0;
    for (const [name, t] of got) {
      const w = want.get(name)!.data;
      const g0 = golden.get(name)?.data;
      for (let i = 0; i < w.length; i++) {
        worst = Math.max(worst, Math.abs(t.data[i]! - w[i]!));
        if (g0) moved = Math.max(moved, Math.abs(t.data[i]! - g0[i]!));
      }
    }
    console.log(`downloaded weights: max |page - Node| ${worst.toExponential(2)}, max move from the golden weights ${moved.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(0.1 * TRAIN.lr);
    expect(moved).toBeGreaterThan(0.5 * TRAIN.lr);
    loaded.model.dispose();
    trained.dispose();
  });

  it('a folder with pytorch_model.bin and no model.safetensors: the page reads it and answers as Node', async () => {
    const pt = join(tmp, 'pytorch-only');
    mkdirSync(pt);
    for (const f of ['config.json', 'generation_config.json', 'spiece.model']) copyFileSync(join(GOLDEN, f), join(pt, f));
    copyFileSync(join(ROOT, 'tests/fixtures/torch/t5-tiny-relu.bin'), join(pt, 'pytorch_model.bin'));
    const other = await startServer({ dir: pt, port: 0 });
    try {
      const p = await openPage(other.url);
      expect(await errorText(p)).toBe('');
      const generation = { num_beams: 1 };
      const want = await predictOne(node, tokenizer, { context, question }, { modelDir: GOLDEN, generation });
      const got: PageAnswer = await p.evaluate(([c, q, g]) => window.t5page.answer(c, q, g), [context, question, generation] as const);
      expect(got.ids).toEqual(want.sequences[0]!.ids);
      await p.close();
    } finally {
      other.server.close();
    }
  });

  it('a folder without spiece.model: the page says so', async () => {
    const bare = join(tmp, 'no-spiece');
    mkdirSync(bare);
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(GOLDEN, f), join(bare, f));
    const other = await startServer({ dir: bare, port: 0 });
    try {
      const p = await openPage(other.url);
      expect(await errorText(p)).toMatch(/the model folder has no spiece\.model \(the SentencePiece tokenizer/);
      await p.close();
    } finally {
      other.server.close();
    }
  });

  it('a browser without WebGPU: the page says so', async () => {
    const p = await openPage(url, 'delete Navigator.prototype.gpu;');
    expect(await errorText(p)).toMatch(/This browser has no WebGPU/);
    await p.close();
  });
});

/** The entries of a zip of stored (uncompressed) files, as util/zip-store.ts writes them. */
function readStoredZip(zip: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const v = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let at = 0;
  while (v.getUint32(at, true) === 0x04034b50) {
    const size = v.getUint32(at + 18, true);
    const nameLength = v.getUint16(at + 26, true);
    const extra = v.getUint16(at + 28, true);
    const name = new TextDecoder().decode(zip.subarray(at + 30, at + 30 + nameLength));
    const start = at + 30 + nameLength + extra;
    out.set(name, zip.subarray(start, start + size));
    at = start + size;
  }
  return out;
}
