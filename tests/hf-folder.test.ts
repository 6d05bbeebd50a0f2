import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadT5Config, parseT5Config, presetConfig, type T5Config } from '../model/config.ts';
import { loadT5WebgpuSettings, loadTokenizerConfig, parseT5WebgpuSettings, serializeSpecialTokensMap, serializeTokenizerConfig, tokenizerFilesFor, writeHfFolderFiles, writeT5WebgpuSettings } from '../hf/hf-folder.ts';
import { readGenerationConfigFile } from '../generate/generation-config-file.ts';
import { describeCheckpointMismatch, matchCheckpoint } from '../hf/checkpoint-match.ts';
import { expectedParameters, parameterCount, storedParameters } from '../model/parameters.ts';
import { readSafetensorsHeader } from '../hf/safetensors.ts';
import { preprocessConfig } from '../util/text-clean.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
const SPIECE = join(GOLDEN, 'spiece.model');
const golden = loadT5Config(GOLDEN);
const tmp = mkdtempSync(join(tmpdir(), 't5-folder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const shapesOf = (file: string): Map<string, number[]> =>
  new Map([...readSafetensorsHeader(file).tensors].map(([n, i]) => [n, i.shape]));

describe('parameter names and shapes', () => {
  it('the stored parameters are exactly the golden checkpoint’s names and shapes', () => {
    const want = shapesOf(join(GOLDEN, 'model.safetensors'));
    const got = new Map(storedParameters(golden).map((p) => [p.name, p.shape]));
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, shape] of want) expect(got.get(name), name).toEqual(shape);
    expect(got.size).toBe(47);
  });

  it('lists the tied aliases HF keeps in state_dict(), in state_dict order', () => {
    const all = expectedParameters(golden);
    const aliases = all.filter((p) => p.tiedTo).map((p) => p.name);
    expect(aliases).toEqual(['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight']);
    expect(all[0]!.name).toBe('shared.weight');
    expect(all[1]!.name).toBe('encoder.embed_tokens.weight');
    expect(all.at(-1)!.name).toBe('decoder.final_layer_norm.weight');
    expect(all.some((p) => p.name === 'lm_head.weight')).toBe(false);
  });

  it('HF parameter counts: t5-small 60,506,624 and t5-base 222,903,552', () => {
    expect(parameterCount(presetConfig('t5-small'))).toBe(60_506_624);
    expect(parameterCount(presetConfig('t5-base'))).toBe(222_903_552);
  });

  it('gated, untied, d_kv * heads != d_model: wi_0/wi_1, lm_head.weight, q [384, 512], o [512, 384]', () => {
    const cfg = parseT5Config({ model_type: 't5', d_model: 512, d_kv: 64, num_heads: 6, d_ff: 1024, num_layers: 1, num_decoder_layers: 1, feed_forward_proj: 'gated-gelu', tie_word_embeddings: false }, 'f.json');
    const p = new Map(expectedParameters(cfg).map((x) => [x.name, x]));
    expect(p.get('encoder.block.0.layer.0.SelfAttention.q.weight')!.shape).toEqual([384, 512]);
    expect(p.get('decoder.block.0.layer.1.EncDecAttention.o.weight')!.shape).toEqual([512, 384]);
    expect(p.get('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight')!.shape).toEqual([32, 6]);
    expect(p.get('decoder.block.0.layer.2.DenseReluDense.wi_0.weight')!.shape).toEqual([1024, 512]);
    expect(p.get('decoder.block.0.layer.2.DenseReluDense.wi_1.weight')!.kind).toBe('wi_1');
    expect(p.get('encoder.block.0.layer.1.DenseReluDense.wo.weight')!.shape).toEqual([512, 1024]);
    expect(p.has('encoder.block.0.layer.1.DenseReluDense.wi.weight')).toBe(false);
    expect(p.get('lm_head.weight')).toMatchObject({ shape: [32128, 512], kind: 'lm_head' });
    expect(expectedParameters(cfg).at(-1)!.name).toBe('lm_head.weight');
  });
});

describe('matchCheckpoint (HF from_pretrained rules)', () => {
  const goldenShapes = shapesOf(join(GOLDEN, 'model.safetensors'));
  const clean = { ok: true, missing: [], unexpected: [], misshaped: [], aliasesPresent: [], ignored: [] };

  it('the golden checkpoint matches its config', () => {
    expect(matchCheckpoint(goldenShapes, golden)).toEqual(clean);
  });

  it('tied aliases may be present or stand in for shared.weight; tied lm_head.weight is allowed', () => {
    const withAliases = new Map(goldenShapes);
    withAliases.set('encoder.embed_tokens.weight', [1128, 64]);
    withAliases.set('lm_head.weight', [1128, 64]);
    expect(matchCheckpoint(withAliases, golden)).toEqual({ ...clean, aliasesPresent: ['encoder.embed_tokens.weight', 'lm_head.weight'] });
    const onlyAlias = new Map(goldenShapes);
    onlyAlias.delete('shared.weight');
    onlyAlias.set('decoder.embed_tokens.weight', [1128, 64]);
    expect(matchCheckpoint(onlyAlias, golden).ok).toBe(true);
    onlyAlias.delete('decoder.embed_tokens.weight');
    expect(matchCheckpoint(onlyAlias, golden).missing).toEqual(['shared.weight']);
  });

  it('reports missing, unexpected, mis-shaped and ignored tensors by name', () => {
    const bad = new Map(goldenShapes);
    bad.delete('encoder.block.1.layer.0.SelfAttention.k.weight');
    bad.set('encoder.block.2.layer.0.SelfAttention.k.weight', [64, 64]);
    bad.set('decoder.final_layer_norm.weight', [65]);
    bad.set('encoder.embed_tokens.weight', [1128, 32]);
    bad.set('decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight', [8, 4]);
    const m = matchCheckpoint(bad, golden);
    expect(m.ok).toBe(false);
    expect(m.missing).toEqual(['encoder.block.1.layer.0.SelfAttention.k.weight']);
    expect(m.unexpected).toEqual(['encoder.block.2.layer.0.SelfAttention.k.weight']);
    expect(m.misshaped).toEqual([
      { name: 'decoder.final_layer_norm.weight', expected: [64], got: [65] },
      { name: 'encoder.embed_tokens.weight', expected: [1128, 64], got: [1128, 32] },
    ]);
    expect(m.ignored).toEqual(['decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight']);
    const line = describeCheckpointMismatch(m, 'dir/model.safetensors');
    expect(line).toBe(
      'dir/model.safetensors: checkpoint does not match the config: missing encoder.block.1.layer.0.SelfAttention.k.weight; ' +
        'unexpected encoder.block.2.layer.0.SelfAttention.k.weight; wrong shape: decoder.final_layer_norm.weight is [65], ' +
        'expected [64], encoder.embed_tokens.weight is [1128, 32], expected [1128, 64]',
    );
  });

  it('an untied config needs lm_head.weight; a tied checkpoint loaded as untied reports it missing', () => {
    const untied: T5Config = { ...golden, tie_word_embeddings: false };
    expect(matchCheckpoint(goldenShapes, untied).missing).toEqual(['lm_head.weight']);
    const withHead = new Map(goldenShapes).set('lm_head.weight', [1128, 64]);
    expect(matchCheckpoint(withHead, untied)).toEqual(clean);
  });
});

describe('tokenizer files (slow T5Tokenizer.save_pretrained, 4.36)', () => {
  it('tokenizer_config.json and special_tokens_map.json as HF writes them (2 sentinels shown in full)', () => {
    const tok = tokenizerFilesFor(SPIECE, { extraIds: 2 });
    expect(tok).toEqual({ pieceCount: 1000, padToken: '<pad>', eosToken: '</s>', unkToken: '<unk>', extraIds: 2, modelMaxLength: 512 });
    const added = (content: string, strip: boolean): string =>
      `{\n      "content": "${content}",\n      "lstrip": ${strip},\n      "normalized": false,\n      "rstrip": ${strip},\n      "single_word": false,\n      "special": true\n    }`;
    expect(serializeTokenizerConfig(tok)).toBe(`{
  "added_tokens_decoder": {
    "0": ${added('<pad>', false)},
    "1": ${added('</s>', false)},
    "2": ${added('<unk>', false)},
    "1000": ${added('<extra_id_1>', true)},
    "1001": ${added('<extra_id_0>', true)}
  },
  "additional_special_tokens": [
    "<extra_id_0>",
    "<extra_id_1>"
  ],
  "clean_up_tokenization_spaces": true,
  "eos_token": "</s>",
  "extra_ids": 2,
  "legacy": true,
  "model_max_length": 512,
  "pad_token": "<pad>",
  "sp_model_kwargs": {},
  "tokenizer_class": "T5Tokenizer",
  "unk_token": "<unk>"
}
`);
    const plain = (content: string): string =>
      `{\n    "content": "${content}",\n    "lstrip": false,\n    "normalized": false,\n    "rstrip": false,\n    "single_word": false\n  }`;
    expect(serializeSpecialTokensMap(tok)).toBe(`{
  "additional_special_tokens": [
    "<extra_id_0>",
    "<extra_id_1>"
  ],
  "eos_token": ${plain('</s>')},
  "pad_token": ${plain('<pad>')},
  "unk_token": ${plain('<unk>')}
}
`);
  });

  it('100 sentinels: <extra_id_N> = pieces + 99 - N, as hf/tokenizer.ts numbers them', () => {
    const j = JSON.parse(serializeTokenizerConfig(tokenizerFilesFor(SPIECE)));
    const ids = Object.keys(j.added_tokens_decoder).map(Number);
    expect(ids.length).toBe(103);
    expect(ids.slice(0, 4)).toEqual([0, 1, 2, 1000]);
    expect(j.added_tokens_decoder['1099'].content).toBe('<extra_id_0>');
    expect(j.added_tokens_decoder['1000'].content).toBe('<extra_id_99>');
    expect(j.additional_special_tokens.length).toBe(100);
  });
});

describe('folder round trip', () => {
  it('writes every non-weight file and reads them back', async () => {
    const dir = join(tmp, 'model');
    const preprocess = preprocessConfig({ lowercase: false });
    const files = await writeHfFolderFiles(dir, { config: golden, spieceModel: SPIECE, generation: { num_beams: 4 }, preprocess });
    expect(files.map((f) => f.slice(dir.length + 1)).sort()).toEqual(
      ['config.json', 'generation_config.json', 'special_tokens_map.json', 'spiece.model', 't5_webgpu.json', 'tokenizer_config.json'],
    );
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
    expect(loadT5Config(dir)).toEqual(golden);
    expect((await readGenerationConfigFile(dir)).config).toMatchObject({ num_beams: 4, decoder_start_token_id: 0 });
    // our folders say clean_up_tokenization_spaces true, as 4.36 wrote: HF then cleans up when decoding, and so do we
    expect(loadTokenizerConfig(dir)).toEqual({ extraIds: 100, modelMaxLength: 512, legacy: true, tokenizerClass: 'T5Tokenizer', cleanUpTokenizationSpaces: true });
    expect(readFileSync(join(dir, 'spiece.model')).equals(readFileSync(SPIECE))).toBe(true);
    expect(loadT5WebgpuSettings(dir)).toEqual({ preprocess, extra: {} });
    expect(JSON.parse(readFileSync(join(dir, 't5_webgpu.json'), 'utf8'))).toEqual({ format: 't5-webgpu', version: 1, preprocess });
  });

  it('missing optional files give defaults', () => {
    expect(loadTokenizerConfig(GOLDEN)).toEqual({ extraIds: 100, modelMaxLength: null, legacy: true, tokenizerClass: null, cleanUpTokenizationSpaces: false });
    expect(loadT5WebgpuSettings(GOLDEN)).toEqual({ extra: {} });
  });

  it('refuses a tokenizer that does not fit the vocabulary, before writing anything', async () => {
    const dir = join(tmp, 'too-small');
    await expect(writeHfFolderFiles(dir, { config: { ...golden, vocab_size: 1050 }, spieceModel: SPIECE }))
      .rejects.toThrow(`${SPIECE}: 1000 pieces + 100 <extra_id_N> = 1100 token ids, more than the model's vocab_size 1050`);
    expect(() => readFileSync(join(dir, 'config.json'))).toThrow();
  });

  it('t5_webgpu.json and tokenizer_config.json errors name the file and key', async () => {
    expect(() => parseT5WebgpuSettings({ format: 't5-webgpu', version: 2 }, 'd/t5_webgpu.json')).toThrow('d/t5_webgpu.json: "version" 2 is not supported');
    expect(() => parseT5WebgpuSettings({ format: 'x', version: 1 }, 'f')).toThrow('f: "format" must be "t5-webgpu"');
    expect(() => parseT5WebgpuSettings({ format: 't5-webgpu', version: 1, preprocess: { version: 1 } }, 'd/t5_webgpu.json'))
      .toThrow('d/t5_webgpu.json: "preprocess": "fillNa" must be true or false');
    const kept = parseT5WebgpuSettings({ format: 't5-webgpu', version: 1, trainedSteps: 10 }, 'f');
    expect(kept).toEqual({ extra: { trainedSteps: 10 } });
    const settingsDir = join(tmp, 'settings');
    mkdirSync(settingsDir, { recursive: true });
    const both = { ...kept, preprocess: preprocessConfig() };
    await writeT5WebgpuSettings(settingsDir, both);
    expect(loadT5WebgpuSettings(settingsDir)).toEqual(both);
    const dir = join(tmp, 'bad-tok');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ legacy: 'yes' }));
    expect(() => loadTokenizerConfig(dir)).toThrow(`${join(dir, 'tokenizer_config.json')}: "legacy" must be true or false`);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ clean_up_tokenization_spaces: 1 }));
    expect(() => loadTokenizerConfig(dir)).toThrow(/"clean_up_tokenization_spaces" must be true or false, got 1/);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 1e30, extra_ids: 0, legacy: false }));
    expect(loadTokenizerConfig(dir)).toEqual({ extraIds: 0, modelMaxLength: null, legacy: false, tokenizerClass: null, cleanUpTokenizationSpaces: false });
  });
});
