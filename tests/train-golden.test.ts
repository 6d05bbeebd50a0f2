// Three training steps against HF's Trainer (tests/fixtures/golden/train-steps.py, transformers 4.57.6): optim
// "adamw_torch" in Trainer's two parameter groups with weight decay 0.1, the linear schedule with one warm-up
// step, gradient clipping at 1, and gradient accumulation over two micro-batches of different sizes (each mean
// loss / 2). The step losses depend on every earlier update, and the parameters on the clip, the schedule, the
// accumulation weights and which parameters decay.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { readSafetensors, readSafetensorsHeader } from '../hf/safetensors.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { lrAt } from '../optim/lr-schedule.ts';
import type { Batch } from '../train/dataset.ts';
import { createOptimizer, trainerSkipsDecay } from '../train/optimizer-setup.ts';
import { trainStep } from '../train/train-step.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));
const file = join(dir, 'train-steps.safetensors');
const meta = readSafetensorsHeader(file).metadata;
const STEPS = JSON.parse(meta.steps!) as string[][];
const LOSSES = JSON.parse(meta.losses!) as number[][];
const LRS = JSON.parse(meta.lrs!) as number[];
const NO_DECAY = JSON.parse(meta.no_decay!) as string[];
const S = JSON.parse(meta.settings!) as { lr: number; warmup_steps: number; weight_decay: number; adam_epsilon: number; max_grad_norm: number };

interface GoldenCase { name: string; input_ids: number[][]; attention_mask: number[][]; labels: number[][] }
const cases = new Map((JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')).cases as GoldenCase[]).map((c) => [c.name, c]));

function batchOf(c: GoldenCase): Batch {
  const labels = c.labels.flat();
  const labelTokens = labels.filter((l) => l !== -100).length;
  return {
    batchSize: c.input_ids.length, sourceLength: c.input_ids[0]!.length, targetLength: c.labels[0]!.length,
    inputIds: Int32Array.from(c.input_ids.flat()), attentionMask: Int32Array.from(c.attention_mask.flat()),
    labels: Int32Array.from(labels), labelTokens, tokens: c.attention_mask.flat().filter((m) => m === 1).length + labelTokens,
  };
}

let model: T5ForConditionalGeneration;
beforeAll(async () => {
  await initGpu();
  model = await fromPretrained(dir, { requiresGrad: true });
});
afterAll(() => model?.dispose());

describe("training steps match HF's Trainer", () => {
  it("leaves out of weight decay the parameters Trainer's get_decay_parameter_names leaves out", () => {
    const ours = model.parameters().map(([n]) => n).filter(trainerSkipsDecay).sort();
    expect(ours).toEqual([...NO_DECAY].sort());
    expect(ours.some((n) => n.includes('relative_attention_bias'))).toBe(true);
  });

  it('three steps: adamw_torch groups, linear warm-up, clipping at 1, two micro-batches a step', async () => {
    const opt = createOptimizer(model, { optim: 'adamw_torch', lr: S.lr, adamBetas: [0.9, 0.999], adamEps: S.adam_epsilon, weightDecay: S.weight_decay });
    const schedule = { kind: 'linear' as const, lr: S.lr, warmupSteps: S.warmup_steps, totalSteps: STEPS.length };
    const before = new Map<string, Float32Array>();
    for (const [n, p] of model.parameters()) before.set(n, await p.toFloat32());
    try {
      for (const [step, micro] of STEPS.entries()) {
        expect(lrAt(schedule, step)).toBe(LRS[step]);
        const r = await trainStep(model, opt, micro.map((name) => batchOf(cases.get(name)!)), {
          seed: 0, firstMicro: step * 2, dropout: 0, clipGradNorm: S.max_grad_norm, lr: lrAt(schedule, step),
        });
        // the mean of the micro-batches' mean losses, as Trainer trains (not a token-weighted mean: the two
        // micro-batches of a step hold 5 and 39, 5 and 12, 4 and 5 label tokens)
        const want = LOSSES[step]!.reduce((a, b) => a + b, 0) / LOSSES[step]!.length;
        expect(Math.abs(r.loss - want) / want, `step ${step}`).toBeLessThanOrEqual(1e-5);
      }
      const after = await readSafetensors(file);
      for (const [name, t] of after) {
        const got = await model.params.get(name)!.toFloat32();
        const start = before.get(name)!;
        let close = 0;
        let worst = 0;
        let moved = 0;
        for (let i = 0; i < got.length; i++) {
          const d = Math.abs(got[i]! - t.data[i]!);
          worst = Math.max(worst, d);
          if (d <= 2e-6 + 1e-6 * Math.abs(t.data[i]!)) close++;
          if (Math.abs(t.data[i]! - start[i]!) > 1e-4) moved++;
        }
        // Adam divides by the gradient's running RMS: where a gradient is within float32 noise of 0 the update's
        // direction is noise (the golden README's noise floor), so a few elements may differ by up to the two
        // steps' lr; the rest agree to float32 rounding, far below the 1e-4 a wrong decay group moves a weight
        expect(close / got.length, `${name}: share within 2e-6`).toBeGreaterThanOrEqual(0.99);
        expect(worst, `${name}: worst`).toBeLessThanOrEqual(2 * 1.5e-3);
        expect(moved, `${name}: HF's steps moved it`).toBeGreaterThan(got.length / 2);
      }
    } finally {
      opt.dispose();
    }
  });
});
