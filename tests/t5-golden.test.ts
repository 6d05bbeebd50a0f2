// T5 against Hugging Face: the golden tiny T5 (transformers 4.36.2, PyTorch 1.13, float32) loaded through
// the normal checkpoint path; encoder states, logits, loss, every gradient, and one AdamW step.
// Tolerances are the fixture README's (tests/fixtures/golden/README.md), each far above the measured
// float32-vs-float64 error of the reference itself, and far below any real mistake (a wrong bucket, a
// missing scale or mask changes logits by O(1)).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward, zeroGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { AdamW } from '../optim/adamw.ts';
import { readSafetensors, type SafeTensor } from '../hf/safetensors.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { Seq2SeqBatch } from '../model/t5.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import { TokenRows } from '../model/token-rows.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));

interface GoldenCase {
  name: string;
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  decoder_input_ids: number[][];
  loss: number;
  tensors: { encoder_last_hidden_state: string; logits: string };
}
const cases = JSON.parse(readFileSync(`${dir}cases.json`, 'utf8'));
const golden: GoldenCase[] = cases.cases;

function batchOf(c: GoldenCase): Seq2SeqBatch {
  const rows = c.input_ids.length;
  return {
    batchSize: rows,
    sourceLength: c.input_ids[0]!.length,
    targetLength: c.labels[0]!.length,
    inputIds: Int32Array.from(c.input_ids.flat()),
    attentionMask: Int32Array.from(c.attention_mask.flat()),
    labels: Int32Array.from(c.labels.flat()),
  };
}

let model: T5ForConditionalGeneration;
let outputs: Map<string, SafeTensor>;

beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir);
  outputs = await readSafetensors(`${dir}outputs.safetensors`);
});

afterAll(() => model?.dispose());

describe('T5 forward matches Hugging Face', () => {
  for (const c of golden) {
    it(`${c.name}: encoder states, logits and loss`, async () => {
      const out = tidy(() => model.forward(batchOf(c)));
      const enc = await out.encoderHidden.toFloat32();
      const logits = await out.logits.toFloat32();
      const loss = await out.loss!.item();
      for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
      expect(enc.length).toBe(outputs.get(c.tensors.encoder_last_hidden_state)!.data.length);
      expect(relMaxErr(enc, outputs.get(c.tensors.encoder_last_hidden_state)!.data)).toBeLessThanOrEqual(1e-5);
      expect(relMaxErr(logits, outputs.get(c.tensors.logits)!.data)).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(loss - c.loss) / Math.abs(c.loss)).toBeLessThanOrEqual(1e-5);
    });
  }

  // batch0 is the padded case: sources of 140, 180, 134 and 98 tokens (the encoder runs on 552 rows, not 720;
  // its attention on 180² + 3 x 140² position pairs, not 4 x 180²), targets of 11, 12, 8 and 8 labels (the
  // decoder runs on 39 positions, not 48)
  it('batch0 with skipPadding: the same loss, logits and encoder states at real positions; zeros at the others', async () => {
    const c = golden.find((g) => g.name === 'batch0')!;
    // and the encoder's self-attention runs in two groups of rows: [180] and [140, 134, 98]
    expect(TokenRows.of(c.attention_mask.flat(), 4, 180)!.attentionGroups()?.length).toBe(2);
    const out = tidy(() => model.forward(batchOf(c), { skipPadding: true }));
    const enc = await out.encoderHidden.toFloat32();
    const logits = await out.logits.toFloat32();
    const loss = await out.loss!.item();
    for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
    const ref = outputs.get(c.tensors.encoder_last_hidden_state)!.data;
    const mask = c.attention_mask.flat();
    expect(enc.length).toBe(ref.length);
    /** the elements of rows where `keep` (one flag per row of `data`) is true, or false */
    const where = (data: ArrayLike<number>, keep: boolean[], on: boolean) => {
      const width = data.length / keep.length;
      return Array.from(data).filter((_, i) => keep[Math.floor(i / width)] === on);
    };
    const source = mask.map((m) => m === 1);
    expect(source.includes(false)).toBe(true);
    expect(relMaxErr(where(enc, source, true), where(ref, source, true))).toBeLessThanOrEqual(1e-5);
    expect(where(enc, source, false).every((v) => v === 0)).toBe(true);
    const target = c.labels.flat().map((l) => l !== -100);
    expect(target.includes(false)).toBe(true);
    const refLogits = outputs.get(c.tensors.logits)!.data;
    expect(relMaxErr(where(logits, target, true), where(refLogits, target, true))).toBeLessThanOrEqual(1e-5);
    expect(where(logits, target, false).every((v) => v === 0)).toBe(true);
    expect(Math.abs(loss - c.loss) / Math.abs(c.loss)).toBeLessThanOrEqual(1e-5);
  });

  // transformers' LabelSmoother (Trainer's label_smoothing_factor) on HF's logits of each case:
  // fixtures/golden/label-smoothing.py
  const smoothed = JSON.parse(readFileSync(`${dir}label-smoothing.json`, 'utf8')).losses as Array<{
    case: string; label_smoothing_factor: number; loss: number;
  }>;
  it('the loss with label smoothing, as HF Trainer\'s LabelSmoother: every case, two factors, with and without skipPadding', async () => {
    expect(smoothed.length).toBe(2 * golden.length);
    for (const s of smoothed) {
      const c = golden.find((g) => g.name === s.case)!;
      // the factor moves the loss by far more than the tolerance (a smoother that did nothing fails)
      expect(Math.abs(s.loss - c.loss) / c.loss, s.case).toBeGreaterThan(1e-4);
      for (const skipPadding of [false, true]) {
        const loss = tidy(() => model.forward(batchOf(c), { skipPadding, labelSmoothing: s.label_smoothing_factor }).loss!);
        const got = await loss.item();
        loss.dispose();
        expect(Math.abs(got - s.loss) / s.loss, `${s.case} ε ${s.label_smoothing_factor} skipPadding ${skipPadding}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });
});

describe('T5 training step matches Hugging Face', () => {
  /** Loss and every gradient of the training case (batch0, padded) against Hugging Face's. */
  async function expectGoldenGradients(skipPadding: boolean): Promise<void> {
    const train = cases.train;
    const c = golden.find((g) => g.name === train.case)!;
    const grads = await readSafetensors(`${dir}${train.grads_file}`);
    model.setRequiresGrad(true);
    const loss = tidy(() => model.forward(batchOf(c), { training: true, dropoutRate: 0, skipPadding }).loss!);
    expect(Math.abs((await loss.item()) - train.loss) / train.loss).toBeLessThanOrEqual(1e-5);
    backward(loss);
    loss.dispose();
    expect([...grads.keys()].sort()).toEqual([...model.params.keys()].sort());
    for (const [name, p] of model.params) {
      const g = await p.grad!.toFloat32();
      const err = relMaxErr(g, grads.get(name)!.data);
      expect(err, name).toBeLessThanOrEqual(1e-4);
    }
  }

  it('gradients of every parameter with skipPadding (encoder and decoder on the real positions only)', async () => {
    await expectGoldenGradients(true);
    zeroGrad(model.params.values());
  });

  it('gradients of every parameter, then one torch AdamW step', async () => {
    const train = cases.train;
    const after = await readSafetensors(`${dir}${train.params_after_step_file}`);
    const grads = await readSafetensors(`${dir}${train.grads_file}`);
    await expectGoldenGradients(false);
    const o = train.optimizer;
    const opt = new AdamW(model.parameters().map(([, p]) => p), {
      lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay, variant: 'torch',
    });
    await opt.step();
    for (const [name, p] of model.params) {
      const got = await p.toFloat32();
      const ref = after.get(name)!.data;
      const gref = grads.get(name)!.data;
      const floor = train.grad_noise_floor[name] as number;
      for (let i = 0; i < ref.length; i++) {
        const tol = Math.abs(gref[i]!) >= floor ? 1e-5 : 2.2e-3;
        if (!(Math.abs(got[i]! - ref[i]!) <= tol)) {
          expect.fail(`${name}[${i}]: ${got[i]} vs ${ref[i]} (grad ${gref[i]}, tolerance ${tol})`);
        }
      }
    }
    zeroGrad(model.params.values());
    opt.dispose?.();
  });
});
