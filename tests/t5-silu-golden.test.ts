// T5 feed-forwards beyond relu and gated-gelu, against transformers (tests/fixtures/golden/t5-silu.py, 4.57.6):
// "gated-silu" (UL2's) with untied embeddings and "gated-relu" with tied ones, random tiny models HF saved, a
// padded batch's logits, loss and every gradient. Tolerances as the golden README's.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-silu-tiny/', import.meta.url));
const ref = JSON.parse(readFileSync(`${dir}outputs.json`, 'utf8')) as {
  input_ids: number[][]; attention_mask: number[][]; labels: number[][]; models: Record<string, { loss: number; dense_act_fn: string }>;
};

beforeAll(async () => {
  await initGpu();
});

describe('gated-silu and gated-relu feed-forwards match transformers', () => {
  for (const [proj, m] of Object.entries(ref.models)) {
    it(`${proj}: logits, loss and every gradient of a padded batch`, async () => {
      const model = await fromPretrained(`${dir}${proj}`, { requiresGrad: true });
      try {
        expect(model.config).toMatchObject({ feed_forward_proj: proj, dense_act_fn: m.dense_act_fn, is_gated_act: true });
        const out = tidy(() => model.forward({
          batchSize: 2, sourceLength: 7, targetLength: 4,
          inputIds: Int32Array.from(ref.input_ids.flat()), attentionMask: Int32Array.from(ref.attention_mask.flat()), labels: Int32Array.from(ref.labels.flat()),
        }, { training: true, dropoutRate: 0 }));
        const want = await readSafetensors(`${dir}${proj}/outputs.safetensors`);
        expect(relMaxErr(await out.logits.toFloat32(), want.get('logits')!.data)).toBeLessThanOrEqual(1e-5);
        expect(Math.abs((await out.loss!.item()) - m.loss) / m.loss).toBeLessThanOrEqual(1e-5);
        backward(out.loss!);
        out.encoderHidden.dispose();
        out.logits.dispose();
        out.loss!.dispose();
        for (const [name, p] of model.parameters()) {
          expect(relMaxErr(await p.grad!.toFloat32(), want.get(`grad.${name}`)!.data), name).toBeLessThanOrEqual(1e-4);
        }
      } finally {
        model.dispose();
      }
    });
  }
});
