import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { initCommand } from '../cli/init.ts';
import { initModelFolder } from '../hf/init-model.ts';
import { loadT5Config, parseT5Config, presetConfig, serializeT5Config, type T5Config } from '../model/config.ts';
import { readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { matchCheckpoint } from '../hf/checkpoint-match.ts';
import { storedParameters } from '../model/parameters.ts';
import { NormalStream, initScale, initT5Weights } from '../model/init-weights.ts';
import { readSafetensorsFolder } from '../hf/safetensors-folder.ts';
import { T5Tokenizer } from '../hf/tokenizer.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
const SPIECE = join(GOLDEN, 'spiece.model');
const tmp = mkdtempSync(join(tmpdir(), 't5-init-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tiny = presetConfig('t5-tiny', { vocabSize: 1152 });

function stats(a: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const x of a) s += x;
  const mean = s / a.length;
  let v = 0;
  for (const x of a) v += (x - mean) ** 2;
  return { mean, std: Math.sqrt(v / a.length) };
}

describe('HF _init_weights scales', () => {
  it('per kind, for t5-small (hand-computed from modeling_t5.py 4.36)', () => {
    const c = presetConfig('t5-small');
    const scale = (name: string): number => initScale(storedParameters(c).find((p) => p.name === name)!, c);
    expect(scale('shared.weight')).toBe(1);
    expect(scale('encoder.final_layer_norm.weight')).toBe(1);
    expect(scale('encoder.block.0.layer.0.SelfAttention.q.weight')).toBeCloseTo(1 / Math.sqrt(512 * 64), 15);
    expect(scale('encoder.block.0.layer.0.SelfAttention.k.weight')).toBeCloseTo(1 / Math.sqrt(512), 15);
    expect(scale('decoder.block.3.layer.1.EncDecAttention.v.weight')).toBeCloseTo(1 / Math.sqrt(512), 15);
    expect(scale('decoder.block.3.layer.1.EncDecAttention.o.weight')).toBeCloseTo(1 / Math.sqrt(8 * 64), 15);
    expect(scale('decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight')).toBeCloseTo(1 / Math.sqrt(512), 15);
    expect(scale('encoder.block.5.layer.1.DenseReluDense.wi.weight')).toBeCloseTo(1 / Math.sqrt(512), 15);
    expect(scale('encoder.block.5.layer.1.DenseReluDense.wo.weight')).toBeCloseTo(1 / Math.sqrt(2048), 15);
  });

  // Bounds: a sample of n normal values has a standard deviation within ~1/sqrt(2n) (relative) of the true one
  // and a mean within std/sqrt(n) of 0; we allow 5 of those standard errors, so a correct generator fails about
  // once in 10^6 per tensor, while a wrong scale (the nearest alternative differs by >= 2x) fails always for every
  // tensor above ~100 elements. For the 4096-element attention weights that is 5.5%, for shared.weight 1.3%.
  function checkInit(cfg: T5Config, seed: number): void {
    const w = initT5Weights(cfg, { seed });
    expect([...w.keys()]).toEqual(storedParameters(cfg).map((p) => p.name));
    for (const spec of storedParameters(cfg)) {
      const data = w.get(spec.name)!;
      expect(data.length, spec.name).toBe(spec.shape.reduce((a, d) => a * d, 1));
      const scale = initScale(spec, cfg);
      if (spec.kind === 'layer_norm') {
        expect(data.every((x) => x === Math.fround(scale)), spec.name).toBe(true);
        continue;
      }
      const { mean, std } = stats(data);
      const n = data.length;
      expect(Math.abs(std / scale - 1), `${spec.name} std ${std} vs ${scale}`).toBeLessThan(5 / Math.sqrt(2 * n));
      expect(Math.abs(mean), `${spec.name} mean`).toBeLessThan((5 * scale) / Math.sqrt(n));
    }
  }

  it('t5-tiny: every tensor has HF’s std, layer norms are all ones', () => checkInit(tiny, 1));

  it('gated-gelu, untied lm_head, d_kv * heads != d_model, initializer_factor 0.5', () => {
    const cfg = parseT5Config({
      model_type: 't5', vocab_size: 512, d_model: 96, d_kv: 16, num_heads: 4, d_ff: 160, num_layers: 1, num_decoder_layers: 2,
      feed_forward_proj: 'gated-gelu', tie_word_embeddings: false, initializer_factor: 0.5,
    }, 'gated.json');
    checkInit(cfg, 5);
    const names = storedParameters(cfg).map((p) => p.name);
    expect(names).toContain('lm_head.weight');
    expect(names).toContain('decoder.block.1.layer.2.DenseReluDense.wi_1.weight');
    const w = initT5Weights(cfg, { seed: 5 });
    expect(w.get('encoder.final_layer_norm.weight')![0]).toBe(0.5);
    expect(initScale({ kind: 'lm_head', name: 'lm_head.weight' }, cfg)).toBe(0.5);
  });
});

describe('the seeded generator', () => {
  it('same seed, same bytes; another seed, other bytes', () => {
    const a = initT5Weights(tiny, { seed: 123 });
    const b = initT5Weights(tiny, { seed: 123 });
    const c = initT5Weights(tiny, { seed: 124 });
    const big = initT5Weights(tiny, { seed: 2 ** 40 + 123 });
    for (const [name, x] of a) {
      expect(Buffer.from(x.buffer).equals(Buffer.from(b.get(name)!.buffer)), name).toBe(true);
      if (!name.includes('layer_norm')) {
        expect(Buffer.from(x.buffer).equals(Buffer.from(c.get(name)!.buffer)), name).toBe(false);
        expect(Buffer.from(x.buffer).equals(Buffer.from(big.get(name)!.buffer)), name).toBe(false);
      }
    }
    expect(() => initT5Weights(tiny, { seed: -1 })).toThrow('seed must be a non-negative integer');
    expect(() => initT5Weights(tiny, { seed: 1.5 })).toThrow('seed must be a non-negative integer');
  });

  it('each tensor’s values depend only on (seed, name): adding layers changes no existing tensor', () => {
    const two = initT5Weights(tiny, { seed: 9 });
    const three = initT5Weights({ ...tiny, num_layers: 3 }, { seed: 9 });
    const name = 'encoder.block.1.layer.0.SelfAttention.q.weight';
    expect(Buffer.from(three.get(name)!.buffer).equals(Buffer.from(two.get(name)!.buffer))).toBe(true);
    // Two tensors of one model never share a stream.
    const q = two.get('encoder.block.0.layer.0.SelfAttention.q.weight')!;
    const k = two.get('encoder.block.0.layer.0.SelfAttention.k.weight')!;
    expect(q[0]! / initScale({ kind: 'q', name: '' }, tiny)).not.toBeCloseTo(k[0]! / initScale({ kind: 'k', name: '' }, tiny), 6);
  });

  it('xoshiro128** matches the reference outputs for state {1, 2, 3, 4}; the documented stream is pinned', () => {
    const s = NormalStream.fromState([1, 2, 3, 4]);
    expect([s.nextUint32(), s.nextUint32(), s.nextUint32()]).toEqual([11520, 0, 5927040]);
    // Pinned so that a change to the documented generator cannot go unnoticed (it would change every init).
    const p = new NormalStream(42, 'shared.weight');
    expect([p.nextUint32(), p.nextUint32(), p.nextUint32()]).toEqual([148721938, 1498883388, 2237275256]);
    const z = new Float32Array(5);
    new NormalStream(0, 'x').fill(z, 1);
    expect(Array.from(z)).toEqual([-1.0316295623779297, -1.0590295791625977, 1.0069315433502197, 1.1267164945602417, 0.7068833112716675]);
  });

  it('is standard normal: moments and the 1-sigma mass over 10^6 draws', () => {
    const n = 1_000_000;
    const z = new Float32Array(n);
    new NormalStream(7, 'moments').fill(z, 1);
    let m1 = 0;
    let m2 = 0;
    let m4 = 0;
    let inside = 0;
    let maxAbs = 0;
    for (const x of z) {
      m1 += x;
      m2 += x * x;
      m4 += x ** 4;
      if (Math.abs(x) < 1) inside++;
      maxAbs = Math.max(maxAbs, Math.abs(x));
    }
    // 5 standard errors each: mean 1/sqrt(n), variance sqrt(2/n), kurtosis sqrt(96/n), mass sqrt(p(1-p)/n).
    expect(Math.abs(m1 / n)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(m2 / n - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(m4 / n - 3)).toBeLessThan(5 * Math.sqrt(96 / n));
    expect(Math.abs(inside / n - 0.6826894921)).toBeLessThan(5 * Math.sqrt((0.6827 * 0.3173) / n));
    expect(maxAbs).toBeGreaterThan(4); // tails exist (P(max < 4) over 10^6 draws is ~e^-63)
    expect(maxAbs).toBeLessThan(7);
  });
});

describe('initModelFolder and engine-cli init', () => {
  it('writes a complete HF folder that reads back: weights equal initT5Weights, names match, tokenizer loads', async () => {
    const out = join(tmp, 'tiny');
    const r = await initModelFolder({ config: 't5-tiny', tokenizer: SPIECE, out, seed: 7, generation: { num_beams: 2, early_stopping: true } });
    expect(r.config.vocab_size).toBe(1152); // 1000 pieces + 100 sentinels, padded to a multiple of 128
    expect(r.files.map((f) => f.slice(out.length + 1))).toEqual([
      'config.json', 'generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json', 'spiece.model', 'model.safetensors',
    ]);
    const cfg = loadT5Config(out);
    expect(cfg).toEqual(r.config);
    expect((await readGenerationConfigFile(out)).config).toMatchObject({ num_beams: 2, early_stopping: true });
    const stored = await readSafetensorsFolder(out);
    expect(matchCheckpoint(new Map([...stored].map(([n, t]) => [n, t.shape])), cfg).ok).toBe(true);
    const want = initT5Weights(cfg, { seed: 7 });
    expect([...stored.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, t] of stored) {
      expect(t.dtype).toBe('F32');
      expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(want.get(name)!.buffer)), name).toBe(true);
    }
    expect(r.parameterCount).toBe([...want.values()].reduce((n, a) => n + a.length, 0));
    const tok = await T5Tokenizer.load(join(out, 'spiece.model'), { vocabSize: cfg.vocab_size });
    expect(tok.extraId(0)).toBe(1099);

    await expect(initModelFolder({ config: 't5-tiny', tokenizer: SPIECE, out })).rejects.toThrow(`--out ${out} already holds a model (config.json); pass --force to replace it`);
    const again = await initModelFolder({ config: 't5-tiny', tokenizer: SPIECE, out, seed: 8, overwrite: true });
    expect(again.seed).toBe(8);
  });

  it('engine-cli init: flags, a config.json path, and one-line errors', async () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const out = join(tmp, 'cli');
      await initCommand(['--config', 't5-tiny', '--tokenizer', SPIECE, '--out', out, '--seed', '3']);
      expect(String(write.mock.calls.at(-1)![0])).toMatch(new RegExp(`^wrote ${out}: t5-tiny, 0\\.\\d\\dM parameters \\(vocab 1152, d_model 64, 4 heads x d_kv 16, d_ff 128, 2\\+2 layers, relu\\), seed 3\\n$`));
      const w3 = initT5Weights(loadT5Config(out), { seed: 3 });
      const stored = await readSafetensorsFolder(out);
      const q = 'decoder.block.1.layer.1.EncDecAttention.q.weight';
      expect(Array.from(stored.get(q)!.data)).toEqual(Array.from(w3.get(q)!));

      // A config.json keeps its own vocab_size, which must hold the tokenizer.
      const small: T5Config = { ...loadT5Config(GOLDEN), vocab_size: 1099 };
      const cfgFile = join(tmp, 'small.json');
      writeFileSync(cfgFile, serializeT5Config(small));
      await expect(initCommand(['--config', cfgFile, '--tokenizer', SPIECE, '--out', join(tmp, 'x')]))
        .rejects.toThrow(`${SPIECE}: 1000 pieces + 100 <extra_id_N> = 1100 token ids, more than the model's vocab_size 1099`);
      writeFileSync(cfgFile, serializeT5Config(loadT5Config(GOLDEN)));
      const out2 = join(tmp, 'from-json');
      await initCommand(['--config', cfgFile, '--tokenizer', SPIECE, '--out', out2]);
      expect(readFileSync(join(out2, 'config.json'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
      // A model folder works as --config too (its config.json is used).
      const out3 = join(tmp, 'from-folder');
      await initCommand(['--config', GOLDEN, '--tokenizer', SPIECE, '--out', out3, '--seed', '4']);
      expect(loadT5Config(out3)).toEqual(loadT5Config(GOLDEN));

      await expect(initCommand(['--config', 't5-tiny', '--tokenizer', SPIECE])).rejects.toThrow('init: --out is required');
      await expect(initCommand(['--config', 't5-tiny', '--tokenizer', SPIECE, '--out', out2, '--seed=-1'])).rejects.toThrow("init: --seed: expected an integer >= 0, got '-1'");
      await expect(initCommand(['--config', 't5-tiny', '--tokenizer', SPIECE, '--out', out2, '--seed', '1e3'])).rejects.toThrow("init: --seed: expected an integer >= 0, got '1e3'");
      // a negative number after a flag is its value (and then a bad one), not parseArgs' "ambiguous"
      await expect(initCommand(['--config', 't5-tiny', '--tokenizer', SPIECE, '--out', out2, '--seed', '-1'])).rejects.toThrow("init: --seed: expected an integer >= 0, got '-1'");
      await expect(initCommand(['--config', 't5-tiny', '--seed', '1'])).rejects.toThrow('init: --tokenizer is required (engine-cli init --help)');
      await expect(initCommand(['--bogus'])).rejects.toThrow(/^init: Unknown option '--bogus'/);
      await expect(initCommand(['--config', 't5-large', '--tokenizer', SPIECE, '--out', out2])).rejects.toThrow('init: --config t5-large is neither a preset');
      await expect(initCommand(['--config', 't5-tiny', '--tokenizer', join(tmp, 'none.model'), '--out', join(tmp, 'y')])).rejects.toThrow('no such file');
    } finally {
      write.mockRestore();
    }
  });
});
