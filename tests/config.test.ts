import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadT5Config,
  parseFeedForwardProj,
  parseT5Config,
  presetConfig,
  pyFloat,
  pythonFloatRepr,
  pythonJsonDumps,
  serializeT5Config,
  t5VocabSize,
} from '../model/config.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
const goldenText = readFileSync(join(GOLDEN, 'config.json'), 'utf8');
const golden = (): Record<string, unknown> => JSON.parse(goldenText);
const tmp = mkdtempSync(join(tmpdir(), 't5-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// google/flan-t5-small's config.json (HF hub, transformers 4.23.1): gated-gelu, untied, d_kv * heads = 384 != 512,
// and keys T5Config does not know (n_positions, output_past, task_specific_params).
const FLAN_T5_SMALL = {
  architectures: ['T5ForConditionalGeneration'],
  d_ff: 1024,
  d_kv: 64,
  d_model: 512,
  decoder_start_token_id: 0,
  dense_act_fn: 'gelu_new',
  dropout_rate: 0.1,
  eos_token_id: 1,
  feed_forward_proj: 'gated-gelu',
  initializer_factor: 1.0,
  is_encoder_decoder: true,
  is_gated_act: true,
  layer_norm_epsilon: 1e-6,
  model_type: 't5',
  n_positions: 512,
  num_decoder_layers: 8,
  num_heads: 6,
  num_layers: 8,
  output_past: true,
  pad_token_id: 0,
  relative_attention_max_distance: 128,
  relative_attention_num_buckets: 32,
  task_specific_params: { summarization: { early_stopping: true, length_penalty: 2.0, prefix: 'summarize: ' } },
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  transformers_version: '4.23.1',
  use_cache: true,
  vocab_size: 32128,
};

describe('parseT5Config', () => {
  it('reads the golden config.json with HF values', () => {
    const c = loadT5Config(GOLDEN);
    expect(c).toMatchObject({
      model_type: 't5', vocab_size: 1128, d_model: 64, d_kv: 16, d_ff: 128, num_layers: 2, num_decoder_layers: 2,
      num_heads: 4, relative_attention_num_buckets: 8, relative_attention_max_distance: 20, dropout_rate: 0.1,
      classifier_dropout: 0, layer_norm_epsilon: 1e-6, initializer_factor: 1, feed_forward_proj: 'relu',
      dense_act_fn: 'relu', is_gated_act: false, tie_word_embeddings: true, decoder_start_token_id: 0,
      pad_token_id: 0, eos_token_id: 1, use_cache: true,
    });
    expect(c.extra).toEqual({});
    // A file path works as well as the folder.
    expect(loadT5Config(join(GOLDEN, 'config.json'))).toEqual(c);
  });

  it('writes the golden config.json back byte for byte (HF 4.36 save_pretrained)', () => {
    expect(serializeT5Config(loadT5Config(GOLDEN))).toBe(goldenText);
  });

  it('fills HF T5Config defaults for missing keys; num_decoder_layers follows num_layers', () => {
    const c = parseT5Config({ model_type: 't5', num_layers: 3 }, 'c.json');
    expect(c).toMatchObject({
      vocab_size: 32128, d_model: 512, d_kv: 64, d_ff: 2048, num_layers: 3, num_decoder_layers: 3, num_heads: 8,
      relative_attention_num_buckets: 32, relative_attention_max_distance: 128, dropout_rate: 0.1,
      layer_norm_epsilon: 1e-6, initializer_factor: 1, feed_forward_proj: 'relu', tie_word_embeddings: true,
      pad_token_id: 0, eos_token_id: 1, decoder_start_token_id: 0, use_cache: true,
    });
    expect(parseT5Config({ model_type: 't5', num_layers: 3, num_decoder_layers: null }, 'c.json').num_decoder_layers).toBe(3);
    // decoder_start_token_id defaults to pad_token_id (T5's convention)
    expect(parseT5Config({ model_type: 't5', pad_token_id: 5 }, 'c.json').decoder_start_token_id).toBe(5);
  });

  it('parses gated-gelu as HF does (gelu_new, gated), allows d_kv * num_heads != d_model, keeps unknown keys', () => {
    const c = parseT5Config(FLAN_T5_SMALL, 'flan/config.json');
    expect(c.dense_act_fn).toBe('gelu_new');
    expect(c.is_gated_act).toBe(true);
    expect(c.tie_word_embeddings).toBe(false);
    expect(c.num_heads * c.d_kv).toBe(384);
    expect(c.extra).toEqual({ n_positions: 512, output_past: true, task_specific_params: FLAN_T5_SMALL.task_specific_params });
    // Without the derived keys in the file, feed_forward_proj alone gives the same.
    const { dense_act_fn: _a, is_gated_act: _b, ...bare } = FLAN_T5_SMALL;
    expect(parseT5Config(bare, 'x.json')).toMatchObject({ dense_act_fn: 'gelu_new', is_gated_act: true });
  });

  it('round-trips a Flan-T5 config: every key kept, transformers_version updated, floats in Python spelling', () => {
    const text = serializeT5Config(parseT5Config(FLAN_T5_SMALL, 'flan/config.json'));
    const back = JSON.parse(text);
    expect(back).toEqual({ ...FLAN_T5_SMALL, transformers_version: '4.36.2', classifier_dropout: 0 });
    expect(text).toContain('"tie_word_embeddings": false');
    expect(text).toContain('"initializer_factor": 1.0,');
    expect(text).toContain('"layer_norm_epsilon": 1e-06,');
    expect(text).toContain('"length_penalty": 2,'); // an extra key keeps JS's number: Python's 2.0 becomes 2
    expect(serializeT5Config(parseT5Config(back, 'again.json'))).toBe(text);
  });

  it('accepts HF attribute_map aliases (hidden_size, num_attention_heads, num_hidden_layers)', () => {
    const c = parseT5Config({ model_type: 't5', hidden_size: 256, num_attention_heads: 4, num_hidden_layers: 2 }, 'a.json');
    expect([c.d_model, c.num_heads, c.num_layers, c.num_decoder_layers]).toEqual([256, 4, 2, 2]);
    expect(c.extra).toEqual({});
  });

  // Every rejection is one line naming the file and the key.
  const rejections: [string, Record<string, unknown>, string][] = [
    ['model_type', { model_type: 'bart' }, 'must be "t5"'],
    ['model_type', { model_type: undefined }, 'is missing'],
    ['d_model', { d_model: 0 }, 'must be positive'],
    ['d_model', { d_model: '64' }, 'must be an integer'],
    ['d_kv', { d_kv: 16.5 }, 'must be an integer'],
    ['d_ff', { d_ff: -1 }, 'must be positive'],
    ['num_layers', { num_layers: 0 }, 'must be positive'],
    ['num_decoder_layers', { num_decoder_layers: 0 }, 'must be positive'],
    ['num_heads', { num_heads: true }, 'must be an integer'],
    ['vocab_size', { vocab_size: 0 }, 'must be positive'],
    ['relative_attention_num_buckets', { relative_attention_num_buckets: 2 }, 'at least 4'],
    ['relative_attention_max_distance', { relative_attention_max_distance: 4 }, 'must exceed relative_attention_num_buckets // 2 = 4'],
    ['dropout_rate', { dropout_rate: 1 }, 'in [0, 1)'],
    ['dropout_rate', { dropout_rate: 'high' }, 'must be a number'],
    ['classifier_dropout', { classifier_dropout: -0.1 }, 'in [0, 1)'],
    ['layer_norm_epsilon', { layer_norm_epsilon: 0 }, 'in (0, 1)'],
    ['initializer_factor', { initializer_factor: 0 }, 'positive'],
    ['feed_forward_proj', { feed_forward_proj: 'gated-quick_gelu' }, '"gated-quick_gelu", which this engine does not implement'],
    ['feed_forward_proj', { feed_forward_proj: 'gelu' }, '"gelu", which this engine does not implement'],
    ['feed_forward_proj', { feed_forward_proj: 'fast-gelu' }, 'not of the form'],
    ['feed_forward_proj', { feed_forward_proj: 'gated-gelu-x' }, 'not of the form'],
    ['feed_forward_proj', { feed_forward_proj: 3 }, 'must be a string'],
    ['dense_act_fn', { dense_act_fn: 'gelu' }, 'ungated gelu feed-forward'],
    ['is_gated_act', { feed_forward_proj: 'gated-gelu', dense_act_fn: 'gelu_new', is_gated_act: false }, 'an ungated gelu_new'],
    ['is_gated_act', { is_gated_act: 'yes' }, 'must be true or false'],
    ['tie_word_embeddings', { tie_word_embeddings: 'no' }, 'must be true or false'],
    ['use_cache', { use_cache: 1 }, 'must be true or false'],
    ['pad_token_id', { pad_token_id: -1 }, 'must be >= 0'],
    ['eos_token_id', { eos_token_id: [1, 2] }, 'must be one integer'],
    ['eos_token_id', { eos_token_id: 5000 }, 'outside the vocabulary (vocab_size 1128)'],
    ['decoder_start_token_id', { decoder_start_token_id: 1128 }, 'outside the vocabulary'],
    ['is_encoder_decoder', { is_encoder_decoder: false }, 'must be true'],
    ['architectures', { architectures: 'T5ForConditionalGeneration' }, 'must be a list'],
    ['torch_dtype', { torch_dtype: 32 }, 'must be a string'],
    ['hidden_size', { hidden_size: 128 }, 'keep one'],
  ];
  for (const [key, patch, what] of rejections) {
    it(`rejects ${key} = ${JSON.stringify(Object.values(patch)[0]) ?? 'missing'} naming file and key`, () => {
      const bad = { ...golden(), ...patch };
      let message = '';
      try {
        parseT5Config(bad, 'models/x/config.json');
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message.startsWith(`models/x/config.json: "${key}" `), message).toBe(true);
      expect(message).toContain(what);
      expect(message).not.toContain('\n');
    });
  }

  it('rejects non-objects and reports missing or broken files by name', () => {
    expect(() => parseT5Config([1], 'c.json')).toThrow(/^c\.json: expected a JSON object, got a list/);
    const missing = join(tmp, 'nothing');
    expect(() => loadT5Config(missing)).toThrow(`${missing}: no such file`);
    const broken = join(tmp, 'broken.json');
    writeFileSync(broken, '{"model_type": "t5",');
    expect(() => loadT5Config(broken)).toThrow(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON`));
  });

  it('parseFeedForwardProj is HF’s split on "-"', () => {
    expect(parseFeedForwardProj('relu', 'f')).toEqual({ act: 'relu', gated: false });
    expect(parseFeedForwardProj('gated-gelu', 'f')).toEqual({ act: 'gelu_new', gated: true });
    expect(parseFeedForwardProj('gated-silu', 'f')).toEqual({ act: 'silu', gated: true });
    expect(parseFeedForwardProj('gated-relu', 'f')).toEqual({ act: 'relu', gated: true });
    expect(() => parseFeedForwardProj('gated-tanh', 'f.json')).toThrow('f.json: "feed_forward_proj" is "gated-tanh"');
  });
});

describe('presets', () => {
  it('t5-small is HF t5-small exactly (60,506,624 parameters checked in hf-folder.test)', () => {
    const c = presetConfig('t5-small');
    expect(c).toMatchObject({
      vocab_size: 32128, d_model: 512, d_kv: 64, num_heads: 8, d_ff: 2048, num_layers: 6, num_decoder_layers: 6,
      relative_attention_num_buckets: 32, relative_attention_max_distance: 128, feed_forward_proj: 'relu',
      dense_act_fn: 'relu', is_gated_act: false, dropout_rate: 0.1, layer_norm_epsilon: 1e-6, initializer_factor: 1,
      tie_word_embeddings: true, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1,
    });
    // What HF writes for T5Config(...t5-small...) saved from a float32 model.
    expect(serializeT5Config(c)).toBe(`{
  "architectures": [
    "T5ForConditionalGeneration"
  ],
  "classifier_dropout": 0.0,
  "d_ff": 2048,
  "d_kv": 64,
  "d_model": 512,
  "decoder_start_token_id": 0,
  "dense_act_fn": "relu",
  "dropout_rate": 0.1,
  "eos_token_id": 1,
  "feed_forward_proj": "relu",
  "initializer_factor": 1.0,
  "is_encoder_decoder": true,
  "is_gated_act": false,
  "layer_norm_epsilon": 1e-06,
  "model_type": "t5",
  "num_decoder_layers": 6,
  "num_heads": 8,
  "num_layers": 6,
  "pad_token_id": 0,
  "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 32,
  "torch_dtype": "float32",
  "transformers_version": "4.36.2",
  "use_cache": true,
  "vocab_size": 32128
}
`);
  });

  it('t5-base and t5-tiny', () => {
    expect(presetConfig('t5-base')).toMatchObject({ vocab_size: 32128, d_model: 768, d_kv: 64, num_heads: 12, d_ff: 3072, num_layers: 12, num_decoder_layers: 12 });
    expect(presetConfig('t5-tiny', { vocabSize: 1152 })).toMatchObject({
      vocab_size: 1152, d_model: 64, d_kv: 16, num_heads: 4, d_ff: 128, num_layers: 2, num_decoder_layers: 2,
      relative_attention_num_buckets: 32, relative_attention_max_distance: 128, feed_forward_proj: 'relu',
    });
    expect(() => presetConfig('t5-tiny')).toThrow('vocabSize is required');
    expect(() => presetConfig('t5-large')).toThrow('unknown preset "t5-large"');
    // A preset serialises to a file parseT5Config accepts and maps back to the same config.
    for (const name of ['t5-small', 't5-base']) {
      const c = presetConfig(name);
      expect(parseT5Config(JSON.parse(serializeT5Config(c)), 'p.json')).toEqual(c);
    }
  });

  it('t5VocabSize pads pieces + sentinels to a multiple of 128', () => {
    expect(t5VocabSize(32000)).toBe(32128);
    expect(t5VocabSize(1000)).toBe(1152);
    expect(t5VocabSize(8000)).toBe(8192);
    expect(t5VocabSize(28, 100)).toBe(128);
    expect(t5VocabSize(29, 100)).toBe(256);
    expect(t5VocabSize(1000, 0, 1)).toBe(1000);
    expect(() => t5VocabSize(0)).toThrow('pieceCount');
  });
});

describe('Python json.dumps', () => {
  it('repr(float) spelling', () => {
    const cases: [number, string][] = [
      [1e-6, '1e-06'], [0.1, '0.1'], [1, '1.0'], [0, '0.0'], [-0, '-0.0'], [1e-5, '1e-05'], [1e-4, '0.0001'],
      [0.00012, '0.00012'], [123.456, '123.456'], [1e16, '1e+16'], [1.5e16, '1.5e+16'], [9999999999999998, '9999999999999998.0'],
      [1e22, '1e+22'], [2.5e-7, '2.5e-07'], [-3.25, '-3.25'], [1e100, '1e+100'], [5e-324, '5e-324'], [0.3, '0.3'],
    ];
    for (const [x, want] of cases) expect(pythonFloatRepr(x), String(x)).toBe(want);
  });

  it('indent 2, sorted keys, int-keyed dicts in numeric order, ensure_ascii', () => {
    const value = { b: [1, pyFloat(2), 2.5, []], a: {}, c: new Map([[10, 'x'], [2, 'y']]), d: 'é\u2581"\n', e: null, f: undefined };
    expect(pythonJsonDumps(value, { ensureAscii: true })).toBe(
      '{\n  "a": {},\n  "b": [\n    1,\n    2.0,\n    2.5,\n    []\n  ],\n  "c": {\n    "2": "y",\n    "10": "x"\n  },\n' +
        '  "d": "\\u00e9\\u2581\\"\\n",\n  "e": null\n}\n',
    );
    expect(pythonJsonDumps({ d: 'é😀' }, { ensureAscii: true })).toBe('{\n  "d": "\\u00e9\\ud83d\\ude00"\n}\n');
    expect(pythonJsonDumps({ d: 'é\u2581' }, { ensureAscii: false })).toBe('{\n  "d": "é\u2581"\n}\n');
  });
});
