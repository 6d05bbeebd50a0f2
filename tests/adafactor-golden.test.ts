// Adafactor against transformers' own: three steps on some of the golden tiny T5's parameters (square and
// non-square matrices, the relative-position bias, a layer norm's vector) in three settings, from
// tests/fixtures/golden/adafactor-steps.py (transformers 4.57.6, torch 2.13, float32). tests/adafactor.test.ts
// checks the kernels against a float64 restatement on awkward shapes; this holds the restatement itself to HF.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor } from '../engine/tensor.ts';
import { readSafetensors, readSafetensorsHeader } from '../hf/safetensors.ts';
import { Adafactor, type AdafactorOptions } from '../optim/adafactor.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
const file = join(dir, 'adafactor-steps.safetensors');
const meta = readSafetensorsHeader(file).metadata;
const PARAMS = JSON.parse(meta.params!) as string[];
const GRAD_SCALES = JSON.parse(meta.grad_scales!) as number[];
const SETTINGS = JSON.parse(meta.settings!) as Record<string, Record<string, unknown>>;

/** HF's argument names to ours. */
function options(hf: Record<string, unknown>): AdafactorOptions {
  const names: Record<string, keyof AdafactorOptions> = {
    lr: 'lr', scale_parameter: 'scaleParameter', relative_step: 'relativeStep', warmup_init: 'warmupInit', beta1: 'beta1',
    weight_decay: 'weightDecay', clip_threshold: 'clipThreshold', decay_rate: 'decayRate', eps: 'eps',
  };
  return Object.fromEntries(Object.entries(hf).map(([k, v]) => {
    if (!names[k]) throw new Error(`adafactor-steps.safetensors: no option for HF's ${k}`);
    return [names[k], v];
  }));
}

beforeAll(async () => {
  await initGpu();
});

describe("Adafactor matches transformers' Adafactor, three steps", () => {
  it('the fixture has every setting and parameter', () => {
    expect(Object.keys(SETTINGS)).toEqual(['trainer', 'defaults', 'beta1_decay_clip', 'warmup_init']);
    expect(PARAMS).toHaveLength(4);
  });
  for (const [setting, hf] of Object.entries(SETTINGS)) {
    it(`${setting} ${JSON.stringify(hf)}`, async () => {
      const [weights, grads, want] = await Promise.all([
        readSafetensors(join(dir, 'model.safetensors'), { names: PARAMS }),
        readSafetensors(join(dir, 'grads.safetensors'), { names: PARAMS }),
        readSafetensors(file, { names: PARAMS.map((p) => `${setting}/${p}`) }),
      ]);
      const ps = PARAMS.map((n) => tensor(weights.get(n)!.data, weights.get(n)!.shape, { requiresGrad: true, name: n }).keep());
      const opt = new Adafactor(ps, options(hf));
      for (const scale of GRAD_SCALES) {
        ps.forEach((p, i) => {
          p.grad?.dispose();
          p.grad = tensor(grads.get(PARAMS[i]!)!.data.map((g) => Math.fround(g * scale)), p.shape).keep();
        });
        opt.step();
      }
      for (const [i, p] of ps.entries()) {
        const got = await p.toFloat32();
        const expected = want.get(`${setting}/${PARAMS[i]}`)!.data;
        const before = weights.get(PARAMS[i]!)!.data;
        let worst = 0;
        let moved = 0;
        for (let j = 0; j < got.length; j++) {
          // float32 with reductions in another order than torch's: a few roundings of |p| (6e-8 each) and 1e-4 of
          // the step HF took
          const step = Math.abs(expected[j]! - before[j]!);
          worst = Math.max(worst, Math.abs(got[j]! - expected[j]!) / (1e-9 + 3e-7 * Math.abs(expected[j]!) + 1e-4 * step));
          if (step > 1e-6 * Math.abs(before[j]!)) moved++;
        }
        expect(worst, `${setting} ${PARAMS[i]}`).toBeLessThanOrEqual(1);
        expect(moved, `${setting} ${PARAMS[i]}: HF's steps moved it`).toBeGreaterThan(got.length / 2);
      }
      opt.zeroGrad();
      ps.forEach((p) => p.dispose());
    });
  }
});
