// Adafactor against its float64 reference (kernels/adafactor.ts, HF's optimization.py restated) on awkward shapes:
// 1 x 1, a single row, a single column, primes, widths not divisible by 4, one longer than the row kernels' lanes.
// Bound: float32 rounding through a handful of operations per element and sums over at most ~4k terms: measured
// errors are ~1e-6 of the update's size, so |got − want| <= 1e-4·(|Δp| scale) + 1e-6·|p| over five steps catches
// a wrong mean, factor, clip or decay (each moves some element by O(10%) of the update).
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor, zeros, type Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import {
  ADAFACTOR_DEFAULTS, adafactorReference, adafactorStep, checkAdafactorHyper, relativeStepSize,
  type AdafactorHyper, type AdafactorRefState, type AdafactorSlotTensors,
} from '../kernels/adafactor.ts';
import { Adafactor } from '../optim/adafactor.ts';
import { setBindingLimitForTests } from '../kernels/row-kernel.ts';
import { mulberry32, normalFloats } from './helpers/random-data.ts';

beforeAll(async () => {
  await initGpu();
});

/** HF's Trainer settings for optim="adafactor": an external lr, no relative step, no parameter scale. */
const TRAINER: AdafactorHyper = { ...ADAFACTOR_DEFAULTS, lr: 1e-2, scaleParameter: false, relativeStep: false };

async function compare(shape: number[], h: AdafactorHyper, steps: number, seed: number): Promise<number> {
  const rand = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const p0 = normalFloats(rand, n, 0.5);
  const p = tensor(p0, shape);
  const slot: AdafactorSlotTensors = shape.length === 2
    ? { vr: zeros([shape[0]!]), vc: zeros([shape[1]!]) }
    : { v: zeros(shape) };
  if (h.beta1 !== null) slot.m = zeros(shape);
  const ref: AdafactorRefState = { step: 0 };
  const rp = Float64Array.from(p0);
  let worst = 0;
  for (let t = 1; t <= steps; t++) {
    // gradients of different scales per row and column, so the factors differ from 1
    const gh = normalFloats(rand, n, 1).map((x, i) => x * (1 + (i % 7)) * (t === 3 ? 30 : 1));
    const g = tensor(gh, shape);
    const before = Float64Array.from(rp);
    noGrad(() => adafactorStep(p, g, slot, t, h));
    adafactorReference(rp, gh, shape, ref, h);
    g.dispose();
    const got = await p.toFloat32();
    let stepSize = 0;
    for (let i = 0; i < n; i++) stepSize = Math.max(stepSize, Math.abs(rp[i]! - before[i]!));
    expect(stepSize, `${shape} step ${t}: the reference moved`).toBeGreaterThan(0);
    for (let i = 0; i < n; i++) {
      const err = Math.abs(got[i]! - rp[i]!) / (1e-4 * stepSize + 1e-6 * Math.abs(rp[i]!));
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
    // continue from the GPU's parameters so errors do not compound between the two
    rp.set(got);
  }
  const state = shape.length === 2 ? [[slot.vr!, ref.vr!], [slot.vc!, ref.vc!]] as const : [[slot.v!, ref.v!]] as const;
  for (const [gpuState, refState] of state) {
    const got = await gpuState.toFloat32();
    got.forEach((x, i) => expect(Math.abs(x - refState[i]!), `state ${i}`).toBeLessThanOrEqual(1e-5 * Math.abs(refState[i]!)));
  }
  for (const t of [p, slot.vr, slot.vc, slot.v, slot.m]) t?.dispose();
  return worst;
}

describe('adafactor kernels', () => {
  // widths divisible by 4 take the vec4 kernels, the others the scalar ones
  const shapes = [[1, 1], [1, 257], [131, 1], [7, 13], [37, 64], [12, 300], [1], [3], [130], [128]];
  it.each(shapes.map((s) => [s.join('x'), s] as const))('HF\'s trainer settings, %s, five steps', async (_, shape) => {
    expect(await compare([...shape], TRAINER, 5, shape.reduce((a, b) => a * b, 1))).toBeLessThanOrEqual(1);
  });

  it('beta1, weight decay, scale_parameter with relative_step and warmup_init, another clip threshold', async () => {
    const variants: AdafactorHyper[] = [
      { ...TRAINER, beta1: 0.9, weightDecay: 0.1 },
      // scale_parameter and relative_step: lr = max(eps2, RMS(p)) · min(1e-2, 1/sqrt(t)), the decay's too
      { ...ADAFACTOR_DEFAULTS, weightDecay: 0.5 },
      { ...ADAFACTOR_DEFAULTS, warmupInit: true, clipThreshold: 0.5, eps: [1e-20, 1e-2] },
    ];
    for (const h of variants) {
      for (const shape of [[9, 23], [11]]) expect(await compare(shape, h, 4, 77), JSON.stringify({ h, shape })).toBeLessThanOrEqual(1);
    }
  });

  it('a matrix over the storage binding limit, a range of rows at a time (forced small limit), every setting', async () => {
    // 200 x 40: rows of 160 bytes; ranges start on multiples of 64 rows (the [R] vectors' 256-byte offsets), so a
    // 16 KiB limit gives ranges of 64, 64, 64 and 8 rows; 201 x 41 takes the scalar kernels and one more range
    setBindingLimitForTests(16384);
    try {
      const variants: AdafactorHyper[] = [TRAINER, { ...TRAINER, beta1: 0.9, weightDecay: 0.1 }, { ...ADAFACTOR_DEFAULTS, weightDecay: 0.5 }];
      for (const h of variants) {
        for (const shape of [[200, 40], [201, 41]]) expect(await compare(shape, h, 3, 5), JSON.stringify({ h, shape })).toBeLessThanOrEqual(1);
      }
    } finally {
      setBindingLimitForTests(null);
    }
  });

  it('relative step sizes and the constructor checks are HF\'s', () => {
    expect(relativeStepSize(ADAFACTOR_DEFAULTS, 1)).toBe(1e-2);
    expect(relativeStepSize(ADAFACTOR_DEFAULTS, 40000)).toBe(1 / 200);
    expect(relativeStepSize({ ...ADAFACTOR_DEFAULTS, warmupInit: true }, 10)).toBeCloseTo(1e-5, 15);
    expect(relativeStepSize(TRAINER, 7)).toBe(1e-2);
    expect(() => checkAdafactorHyper({ ...ADAFACTOR_DEFAULTS, lr: 1e-3 })).toThrow('Cannot combine manual `lr` and `relative_step=True` options');
    expect(() => checkAdafactorHyper({ ...TRAINER, warmupInit: true })).toThrow('`warmup_init=True` requires `relative_step=True`');
    expect(() => checkAdafactorHyper({ ...TRAINER, decayRate: 0.5 })).toThrow(/decay_rate/);
  });

  it('refuses shapes it does not factor and operands that do not fit', () => {
    const p = zeros([2, 3, 4]);
    const g = zeros([2, 3, 4]);
    expect(() => adafactorStep(p, g, {}, 1, TRAINER)).toThrow(/rank 1 or 2 only, got \[2, 3, 4\]/);
    const q: Tensor = zeros([4, 5]);
    const gq = zeros([4, 5]);
    expect(() => adafactorStep(q, gq, { vr: zeros([5]), vc: zeros([5]) }, 1, TRAINER)).toThrow(/exp_avg_sq_row .* does not fit \[4\]/);
    expect(() => adafactorStep(q, gq, { vr: zeros([4]), vc: zeros([5]) }, 0, TRAINER)).toThrow(/step must be an integer >= 1/);
  });
});

describe('Adafactor (optim/adafactor.ts)', () => {
  it('updates each parameter that has a gradient as the reference does; state() and loadState() resume exactly', async () => {
    const rand = mulberry32(5);
    const shapes = [[6, 10], [10], [3, 5]];
    const init = shapes.map((s) => normalFloats(rand, s.reduce((a, b) => a * b, 1), 0.3));
    const make = () => init.map((x, i) => tensor(x, shapes[i]!).keep());
    const params = make();
    const opt = new Adafactor(params, { lr: 3e-2, relativeStep: false, scaleParameter: false, beta1: 0.8 });
    const refs = init.map((x) => ({ p: Float64Array.from(x), s: { step: 0 } as AdafactorRefState }));
    const h: AdafactorHyper = { ...ADAFACTOR_DEFAULTS, lr: 3e-2, relativeStep: false, scaleParameter: false, beta1: 0.8 };
    const grads: Float32Array[][] = [];
    for (let t = 0; t < 3; t++) {
      grads.push(shapes.map((s) => normalFloats(rand, s.reduce((a, b) => a * b, 1), 1)));
      // the last parameter has no gradient at step 1: it is skipped and its step count starts later
      params.forEach((p, i) => (p.grad = t === 0 && i === 2 ? null : tensor(grads[t]![i]!, shapes[i]!)));
      opt.step();
      opt.zeroGrad();
      refs.forEach((r, i) => {
        if (!(t === 0 && i === 2)) adafactorReference(r.p, grads[t]![i]!, shapes[i]!, r.s, h);
      });
    }
    expect(opt.stepCount).toBe(3);
    for (const [i, p] of params.entries()) {
      const got = await p.toFloat32();
      got.forEach((x, j) => expect(Math.abs(x - refs[i]!.p[j]!)).toBeLessThanOrEqual(1e-5));
    }
    const saved = await opt.state();
    expect(saved.params.map((s) => s?.step)).toEqual([3, 3, 2]);
    expect(saved.params[0]!.expAvgSqRow!.length + saved.params[0]!.expAvgSqCol!.length).toBe(16);
    expect(saved.params[1]!.expAvgSq!.length).toBe(10);

    // a second optimizer loaded from the state takes the same next step
    const copies = await Promise.all(params.map(async (p, i) => tensor(await p.toFloat32(), shapes[i]!).keep()));
    const resumed = new Adafactor(copies, { lr: 1, relativeStep: false, scaleParameter: false, beta1: 0.8 });
    resumed.loadState(saved);
    expect(resumed.lr).toBe(3e-2);
    const g = shapes.map((s) => normalFloats(rand, s.reduce((a, b) => a * b, 1), 1));
    for (const [o, ps] of [[opt, params], [resumed, copies]] as const) {
      ps.forEach((p, i) => (p.grad = tensor(g[i]!, shapes[i]!)));
      o.step();
      o.zeroGrad();
    }
    for (let i = 0; i < params.length; i++) expect(Array.from(await copies[i]!.toFloat32())).toEqual(Array.from(await params[i]!.toFloat32()));
    expect(() => new Adafactor(copies, { lr: 1, relativeStep: false, scaleParameter: false }).loadState(saved)).toThrow(/state was saved with/);
    expect(() => new Adafactor([zeros([2, 2, 2])], { lr: 1, relativeStep: false })).toThrow(/rank 1 or 2 only/);
    expect(() => new Adafactor([copies[0]!, copies[0]!], { lr: 1, relativeStep: false })).toThrow(/Adafactor: parameter 1 .* shares its storage with parameter 0/);
    for (const o of [opt, resumed]) o.dispose();
    for (const p of [...params, ...copies]) p.dispose();
  });
});
