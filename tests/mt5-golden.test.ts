// mT5 (MT5ForConditionalGeneration: T5 v1.1's model under model_type "mt5", with its own config defaults)
// against transformers (tests/fixtures/golden/mt5.py, 4.57.6): a random tiny model HF saved, its encoder states,
// logits and loss for a padded batch; MT5Config's defaults for keys a file leaves out; and a save that keeps the
// model type, architecture and tokenizer class HF wrote.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tidy } from '../engine/scope.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { fromPretrained, saveWeights } from '../hf/pretrained.ts';
import { parseT5Config, serializeT5Config } from '../model/config.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/mt5-tiny/', import.meta.url));
const ref = JSON.parse(readFileSync(`${dir}outputs.json`, 'utf8')) as {
  input_ids: number[][]; attention_mask: number[][]; labels: number[][]; loss: number; mt5_defaults: Record<string, unknown>;
};
const fileConfig = JSON.parse(readFileSync(`${dir}config.json`, 'utf8')) as Record<string, unknown>;

let model: T5ForConditionalGeneration;
const tmp = mkdtempSync(join(tmpdir(), 'mt5-'));
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
});
afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

describe('mT5 matches transformers', () => {
  it('encoder states, logits and loss of a padded batch', async () => {
    expect(model.config.model_type).toBe('mt5');
    const out = tidy(() => model.forward({
      batchSize: 2, sourceLength: 6, targetLength: 3,
      inputIds: Int32Array.from(ref.input_ids.flat()), attentionMask: Int32Array.from(ref.attention_mask.flat()), labels: Int32Array.from(ref.labels.flat()),
    }));
    const want = await readSafetensors(`${dir}outputs.safetensors`);
    expect(relMaxErr(await out.encoderHidden.toFloat32(), want.get('encoder_last_hidden_state')!.data)).toBeLessThanOrEqual(1e-5);
    expect(relMaxErr(await out.logits.toFloat32(), want.get('logits')!.data)).toBeLessThanOrEqual(1e-5);
    expect(Math.abs((await out.loss!.item()) - ref.loss) / ref.loss).toBeLessThanOrEqual(1e-5);
    for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
  });

  it("keys a file leaves out take MT5Config's defaults, not T5Config's", () => {
    const bare = parseT5Config({ model_type: 'mt5', d_model: 32 }, 'bare.json');
    expect(bare).toMatchObject(ref.mt5_defaults);
    expect(bare.dense_act_fn).toBe('gelu_new');
    expect(parseT5Config({ model_type: 't5' }, 't5.json')).toMatchObject({ vocab_size: 32128, d_ff: 2048, feed_forward_proj: 'relu', tie_word_embeddings: true });
    expect(() => parseT5Config({ model_type: 'umt5' }, 'u.json')).toThrow(/"model_type" must be "t5" or "mt5", got the string "umt5"/);
  });

  it('saves as HF does: model_type mt5, MT5ForConditionalGeneration, tokenizer_class, tie_word_embeddings', async () => {
    const written = JSON.parse(serializeT5Config(model.config)) as Record<string, unknown>;
    for (const key of ['model_type', 'architectures', 'tokenizer_class', 'tie_word_embeddings', 'feed_forward_proj', 'd_ff']) {
      expect(written[key], key).toEqual(fileConfig[key]);
    }
    await saveWeights(model, join(tmp, 'model.safetensors'));
    const back = await readSafetensors(join(tmp, 'model.safetensors'));
    expect(back.has('lm_head.weight')).toBe(true);
  });
});
