// A T5 v1.1-style model against transformers itself (tests/fixtures/golden/t5-v11.py, 4.57.6): gated-gelu
// (gelu_new), an untied lm_head, 3 + 2 layers, num_heads x d_kv != d_model, 7 buckets with sources past the
// max distance, vocabulary 97, a padded batch. The folder is HF's own save_pretrained (its 4.57 config.json
// says "dtype", not "torch_dtype"). t5-reference.test.ts covers such configs against our float64 restatement;
// this holds that restatement's reading of modeling_t5.py to HF. Tolerances as the golden README's.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward, zeroGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { readSafetensors, type SafeTensor } from '../hf/safetensors.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import { generateIds } from '../generate/generate.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { Seq2SeqBatch } from '../model/t5.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-v11-tiny/', import.meta.url));
const ref = JSON.parse(readFileSync(`${dir}outputs.json`, 'utf8')) as {
  input_ids: number[][]; attention_mask: number[][]; labels: number[][]; loss: number;
  generate: Record<string, { kwargs: Record<string, unknown>; sequences: number[][]; sequences_scores?: number[] }>;
};
const batch: Seq2SeqBatch = {
  batchSize: ref.input_ids.length, sourceLength: ref.input_ids[0]!.length, targetLength: ref.labels[0]!.length,
  inputIds: Int32Array.from(ref.input_ids.flat()), attentionMask: Int32Array.from(ref.attention_mask.flat()), labels: Int32Array.from(ref.labels.flat()),
};

let model: T5ForConditionalGeneration;
let outputs: Map<string, SafeTensor>;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir, { requiresGrad: true });
  outputs = await readSafetensors(`${dir}outputs.safetensors`);
});
afterAll(() => model?.dispose());

describe("a T5 v1.1-style model matches transformers'", () => {
  it('is the shape the fixture says: gated-gelu, untied, 3 + 2 layers, 3 x 12 heads in d_model 40', () => {
    expect(model.config).toMatchObject({ feed_forward_proj: 'gated-gelu', tie_word_embeddings: false, num_layers: 3, num_decoder_layers: 2, num_heads: 3, d_kv: 12, d_model: 40 });
    expect(model.params.has('lm_head.weight')).toBe(true);
  });

  for (const skipPadding of [false, true]) {
    it(`encoder states, logits, loss and every gradient${skipPadding ? ' (skipPadding)' : ''}`, async () => {
      const out = tidy(() => model.forward(batch, { training: true, dropoutRate: 0, skipPadding }));
      const enc = await out.encoderHidden.toFloat32();
      const logits = await out.logits.toFloat32();
      const loss = await out.loss!.item();
      backward(out.loss!);
      for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
      const mask = ref.attention_mask.flat();
      const d = model.config.d_model;
      const labels = ref.labels.flat();
      const v = model.config.vocab_size;
      // skipPadding leaves zeros at padded positions, where HF has values: compare the real ones
      const realSource = (_: number, i: number) => !skipPadding || mask[Math.floor(i / d)] === 1;
      const realTarget = (_: number, i: number) => !skipPadding || labels[Math.floor(i / v)] !== -100;
      expect(relMaxErr(Array.from(enc).filter(realSource), Array.from(outputs.get('encoder_last_hidden_state')!.data).filter(realSource))).toBeLessThanOrEqual(1e-5);
      expect(relMaxErr(Array.from(logits).filter(realTarget), Array.from(outputs.get('logits')!.data).filter(realTarget))).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(loss - ref.loss) / ref.loss).toBeLessThanOrEqual(1e-5);
      let checked = 0;
      for (const [name, p] of model.parameters()) {
        const want = outputs.get(`grad.${name}`);
        expect(want, name).toBeDefined();
        expect(relMaxErr(await p.grad!.toFloat32(), want!.data), name).toBeLessThanOrEqual(1e-4);
        checked++;
      }
      expect(checked).toBe(61);
      zeroGrad(model.params.values());
    });
  }

  for (const [key, g] of Object.entries(ref.generate)) {
    it(`${key} search ${JSON.stringify(g.kwargs)}`, async () => {
      const config = await loadGenerationConfig(dir, g.kwargs);
      const out = await generateIds(model, { inputIds: batch.inputIds, attentionMask: batch.attentionMask, batchSize: batch.batchSize, sourceLength: batch.sourceLength }, config);
      expect(out.sequences).toEqual(g.sequences);
      g.sequences_scores?.forEach((s, i) => expect(Math.abs(out.sequencesScores![i]! - s)).toBeLessThanOrEqual(1e-4));
    });
  }
});
