// savePretrained: the golden model saved again reproduces HF's model.safetensors, config.json and
// generation_config.json byte for byte; save -> fromPretrained round trips bit-exactly (tied and untied);
// stale files from an earlier model are replaced or removed; bad options touch nothing.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor } from '../engine/tensor.ts';
import { loadT5Config, parseT5Config, serializeT5Config } from '../model/config.ts';
import { loadT5WebgpuSettings, loadTokenizerConfig } from '../hf/hf-folder.ts';
import { initT5Tensors } from '../model/init-weights.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import { readSafetensorsHeader } from '../hf/safetensors.ts';
import { savePretrained } from '../hf/save-model.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { ParamMap } from '../model/t5.ts';
import { preprocessConfig } from '../util/text-clean.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
const SPIECE = join(GOLDEN, 'spiece.model');
const tmp = mkdtempSync(join(tmpdir(), 't5-save-'));
let golden: T5ForConditionalGeneration;

beforeAll(async () => {
  await initGpu();
  golden = await fromPretrained(GOLDEN);
});
afterAll(() => {
  golden?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const bytes = (p: string): Buffer => readFileSync(p);

async function expectSameParams(a: T5ForConditionalGeneration, b: T5ForConditionalGeneration): Promise<void> {
  expect([...b.params.keys()]).toEqual([...a.params.keys()]);
  for (const [name, p] of a.params) {
    const x = await p.toFloat32();
    const y = await b.params.get(name)!.toFloat32();
    // bit-exact: compare the raw bits, so -0 vs 0 or NaN payloads would show too
    expect(Buffer.from(y.buffer, y.byteOffset, y.byteLength).equals(Buffer.from(x.buffer, x.byteOffset, x.byteLength)), name).toBe(true);
  }
}

describe('savePretrained', () => {
  it('saving the golden model reproduces HF’s model.safetensors, config.json and generation_config.json byte for byte', async () => {
    const out = join(tmp, 'golden');
    const r = await savePretrained(golden, out, { tokenizerModel: SPIECE });
    for (const f of ['model.safetensors', 'config.json', 'generation_config.json', 'spiece.model']) {
      expect(bytes(join(out, f)).equals(bytes(join(GOLDEN, f))), f).toBe(true);
    }
    expect(readdirSync(out).sort()).toEqual(
      ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'spiece.model', 'tokenizer_config.json'],
    );
    expect(r.files.at(-1)).toBe(join(out, 'model.safetensors'));
    expect(loadTokenizerConfig(out)).toEqual({ extraIds: 100, modelMaxLength: 512, legacy: true, tokenizerClass: 'T5Tokenizer', cleanUpTokenizationSpaces: true });
    // loading the folder gives a tokenizer that decodes as HF does with that file: spaces before punctuation go
    const loaded = await loadModelForCli(out);
    try {
      expect(loaded.tokenizer.decode(loaded.tokenizer.encode("dallas 's signature , ok ."))).toBe("dallas's signature, ok.");
    } finally {
      loaded.model.dispose();
    }
    const reloaded = await fromPretrained(out);
    try {
      await expectSameParams(golden, reloaded);
    } finally {
      reloaded.dispose();
    }
  });

  it('untied embeddings, gated-gelu, unequal depths: lm_head.weight stored, round trip bit-exact, preprocess kept', async () => {
    const cfg = parseT5Config(
      { ...JSON.parse(serializeT5Config(loadT5Config(GOLDEN))), tie_word_embeddings: false, feed_forward_proj: 'gated-gelu', num_decoder_layers: 3, dense_act_fn: 'gelu_new', is_gated_act: true },
      'test config',
    );
    const init = initT5Tensors(cfg, { seed: 7 });
    const params: ParamMap = new Map();
    for (const [name, t] of init) params.set(name, tensor(t.data, t.shape, { name }).keep());
    const model = new T5ForConditionalGeneration(cfg, params);
    try {
      const out = join(tmp, 'untied');
      const preprocess = preprocessConfig({ lowercase: false });
      await savePretrained(model, out, { tokenizerModel: SPIECE, preprocess, generation: { num_beams: 4, max_length: 32 } });
      const names = [...readSafetensorsHeader(join(out, 'model.safetensors')).tensors.keys()];
      expect(names).toContain('lm_head.weight');
      expect(names).toContain('shared.weight');
      expect(names).toContain('decoder.block.2.layer.2.DenseReluDense.wi_1.weight');
      expect(names.filter((n) => n.includes('embed_tokens'))).toEqual([]);
      expect(loadT5WebgpuSettings(out).preprocess).toEqual(preprocess);
      expect(JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'))).toMatchObject({ num_beams: 4, max_length: 32 });
      const loaded = await loadModelForCli(out);
      try {
        expect(loaded.preprocess).toEqual(preprocess);
        expect(loaded.config).toEqual(cfg);
        await expectSameParams(model, loaded.model);
      } finally {
        loaded.model.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it('replaces an earlier model in place: no temp files left, stale shards, index and t5_webgpu.json removed', async () => {
    const out = join(tmp, 'over');
    mkdirSync(out);
    writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'shared.weight': 'model-00001-of-00002.safetensors' } }));
    writeFileSync(join(out, 'model-00001-of-00002.safetensors'), 'old shard');
    writeFileSync(join(out, 't5_webgpu.json'), '{"format": "t5-webgpu", "version": 1}');
    writeFileSync(join(out, 'model.safetensors'), 'old weights');
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const r = await savePretrained(golden, out, { tokenizerModel: SPIECE });
    expect(r.removed.sort()).toEqual(
      [join(out, 'model-00001-of-00002.safetensors'), join(out, 'model.safetensors.index.json'), join(out, 't5_webgpu.json')].sort(),
    );
    expect(bytes(join(out, 'model.safetensors')).equals(bytes(join(GOLDEN, 'model.safetensors')))).toBe(true);
    expect(readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(existsSync(join(out, 'notes.txt'))).toBe(true);
  });

  it('a tokenizer that does not fit, or inconsistent generation options, write nothing', async () => {
    const out = join(tmp, 'refused');
    await expect(savePretrained(golden, out, { tokenizerModel: SPIECE, extraIds: 200 })).rejects.toThrow(/more than the model's vocab_size 1128/);
    await expect(savePretrained(golden, out, { tokenizerModel: SPIECE, generation: { early_stopping: true } })).rejects.toThrow(/early_stopping/);
    await expect(savePretrained(golden, out, { tokenizerModel: join(tmp, 'nope.model') })).rejects.toThrow(/nope\.model: no such file/);
    expect(existsSync(out)).toBe(false);
  });

  it('loadModelForCli takes a Hub id: a snapshot in the huggingface_hub cache layout, used offline', async () => {
    const commit = 'c0ffee'.padEnd(40, '0');
    const repo = join(tmp, 'hub', 'models--org--t5-tiny');
    mkdirSync(join(repo, 'refs'), { recursive: true });
    writeFileSync(join(repo, 'refs', 'main'), commit);
    await savePretrained(golden, join(repo, 'snapshots', commit), { tokenizerModel: SPIECE });
    const loaded = await loadModelForCli('org/t5-tiny', { cacheDir: join(tmp, 'hub'), offline: true, quiet: true });
    try {
      expect(loaded.dir).toBe(join(repo, 'snapshots', commit));
      expect(loaded.preprocess).toBeUndefined();
      expect(loaded.tokenizer.vocabSize).toBe(1128);
      await expectSameParams(golden, loaded.model);
    } finally {
      loaded.model.dispose();
    }
    await expect(loadModelForCli('org/absent', { cacheDir: join(tmp, 'hub'), offline: true, quiet: true })).rejects.toThrow(/not fully cached/);
  });

  it('loadModelForCli names the folder when spiece.model is missing', async () => {
    const out = join(tmp, 'no-spiece');
    await savePretrained(golden, out, { tokenizerModel: SPIECE });
    rmSync(join(out, 'spiece.model'));
    await expect(loadModelForCli(out)).rejects.toThrow(`model folder ${out} has no spiece.model`);
  });
});
