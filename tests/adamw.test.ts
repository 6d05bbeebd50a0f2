import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initGpu } from '../engine/gpu.ts';
import { memory, setPoison, tensor, type Tensor } from '../engine/tensor.ts';
import { rt } from '../engine/runtime.ts';
import { AdamW } from '../optim/adamw.ts';
import { adamwReference, adamwStep, type AdamWHyper, type AdamWVariant } from '../kernels/adamw.ts';
import { bindingChunks } from '../engine/binding-chunks.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { mulberry32, normalFloats } from './helpers/random-data.ts';

beforeAll(async () => {
  await initGpu();
});

/** Reproducible normal samples: rng(seed)(n, scale), one mulberry32 stream per rng. */
function rng(seed: number) {
  const rand = mulberry32(seed);
  return (n: number, scale = 1) => normalFloats(rand, n, scale);
}

/** max over i of |got − want| / (atol + rtol·|want|): ≤ 1 passes. */
function worst(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): number {
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    const e = d === 0 ? 0 : d / (atol + rtol * Math.abs(want[i]!));
    if (!(e <= w)) w = Number.isNaN(e) ? Infinity : e;
  }
  return w;
}

const SIZES = [1, 2, 3, 5, 7, 1021, 4099, 65537];

interface Run {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  gp: Float32Array;
  gm: Float32Array;
  gv: Float32Array;
}

/** Runs `steps` updates of one tensor on the GPU and in the float64 reference, with a fresh gradient and lr per step. */
async function runBoth(n: number, h0: AdamWHyper, steps: number, seed: number, gradScale: (t: number) => number,
  lrAt: (t: number) => number, kernelOpts = {}): Promise<Run> {
  const r = rng(seed);
  const p0 = r(n, 0.5);
  const p = tensor(p0, [n]);
  const m = tensor(new Float32Array(n), [n]);
  const v = tensor(new Float32Array(n), [n]);
  const rp = Float64Array.from(p0);
  const rm = new Float64Array(n);
  const rv = new Float64Array(n);
  for (let t = 1; t <= steps; t++) {
    const gh = r(n, gradScale(t));
    const g = tensor(gh, [n]);
    const h = { ...h0, lr: lrAt(t) };
    adamwStep(p, g, m, v, t, h, kernelOpts);
    adamwReference(rp, gh, rm, rv, t, h);
    g.dispose();
  }
  const out = { p: rp, m: rm, v: rv, gp: await p.toFloat32(), gm: await m.toFloat32(), gv: await v.toFloat32() };
  p.dispose();
  m.dispose();
  v.dispose();
  return out;
}

// Error bounds. Inputs (p0, g) are float32 values used exactly by both sides, so the only error is float32 rounding
// inside the kernel. m and v: a few roundings of quantities of size |g| and g² per step → 1e-6 relative to the
// largest term (|g| resp. g²), which also covers cancellation in m. p: per step, the decay product and the final sum
// round at ulp(|p|) ≈ 6e-8·|p| each, and the update lr·m̂/(sqrt(v̂)+eps) carries ~1e-6 relative error from sqrt, the
// divisions and the inherited m, v errors; over T steps: |Δp| ≤ T·(2e-7·|p| + 2e-6·lr·max|update|), update ≤ 3.
function expectClose(run: Run, steps: number, lrMax: number, gMax: number) {
  expect(worst(run.gm, run.m, 1e-6 * gMax, 1e-6)).toBeLessThanOrEqual(1);
  expect(worst(run.gv, run.v, 1e-6 * gMax * gMax, 1e-6)).toBeLessThanOrEqual(1);
  expect(worst(run.gp, run.p, steps * 6e-6 * lrMax, steps * 2e-7)).toBeLessThanOrEqual(1);
}

const base = (variant: AdamWVariant): AdamWHyper => ({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, variant });
// a steep schedule (warmup, then decay) so a kernel that cached the first lr, or ignored it, fails
const schedule = (t: number) => [0.01, 0.03, 0.05, 0.02, 0.004, 0.06][(t - 1) % 6]!;
const gradScales = (t: number) => [1, 0.5, 3, 0.01, 2, 1][(t - 1) % 6]!;

describe('adamw kernel vs float64 reference', () => {
  for (const variant of ['torch', 'hf'] as const) {
    it(`${variant}: 6 steps, changing lr and gradients, sizes ${SIZES.join(', ')}`, async () => {
      setPoison(true);
      for (const [k, n] of SIZES.entries()) {
        const run = await runBoth(n, { ...base(variant), weightDecay: 0.1 }, 6, 100 + k, gradScales, schedule);
        expectClose(run, 6, 0.06, 4 * 3);
      }
      setPoison(false);
    });
  }

  it('the two variants differ where the reference says they do (eps placement, decay order)', async () => {
    // large eps, lr and weight decay and a small gradient make the variants differ by far more than the tolerance,
    // so each kernel is really checked against its own formula
    const h = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-3, weightDecay: 0.5 };
    for (const variant of ['torch', 'hf'] as const) {
      const run = await runBoth(1021, { ...h, variant }, 5, 7, () => 1e-3, () => 0.1);
      expectClose(run, 5, 0.1, 4e-3);
      // replay with the other formula on the host: the GPU result must be far from it
      const r = rng(7);
      const p0 = r(1021, 0.5);
      const op = Float64Array.from(p0), om = new Float64Array(1021), ov = new Float64Array(1021);
      for (let t = 1; t <= 5; t++) adamwReference(op, r(1021, 1e-3), om, ov, t, { ...h, variant: variant === 'torch' ? 'hf' : 'torch' });
      expect(worst(run.gp, op, 5 * 6e-6 * 0.1, 5 * 2e-7)).toBeGreaterThan(100);
    }
  });

  it('zero gradient: only the decay moves p (m = v = 0, the update is 0/eps = 0)', async () => {
    for (const variant of ['torch', 'hf'] as const) {
      const n = 13;
      const p0 = rng(3)(n);
      const p = tensor(p0, [n]);
      const z = () => tensor(new Float32Array(n), [n]);
      const [g, m, v] = [z(), z(), z()];
      adamwStep(p, g, m, v, 1, { ...base(variant), lr: 0.1, weightDecay: 0.2 });
      const got = await p.toFloat32();
      // torch: p·(1 − 0.02); hf: p + (−0.02)·p; both one float32 rounding from the exact value
      expect(worst(got, [...p0].map((x) => x * 0.98), 0, 2 ** -23)).toBeLessThanOrEqual(1);
      expect([...(await m.toFloat32())].every((x) => x === 0)).toBe(true);
      expect([...(await v.toFloat32())].every((x) => x === 0)).toBe(true);
      for (const t of [p, g, m, v]) t.dispose();
    }
  });

  it('weight decay 0 and a huge binding limit match; forced 256-byte binding ranges give bit-identical results', async () => {
    for (const variant of ['torch', 'hf'] as const) {
      const h = { ...base(variant), weightDecay: 0 };
      const a = await runBoth(4099, h, 5, 11, gradScales, schedule);
      expectClose(a, 5, 0.06, 12);
      // maxBindingBytes 512: 4099 elements in 33 ranges, tail included
      const b = await runBoth(4099, h, 5, 11, gradScales, schedule, { maxBindingBytes: 512 });
      expect(worst(b.gp, a.gp, 0, 0)).toBe(0);
      expect(worst(b.gm, a.gm, 0, 0)).toBe(0);
      expect(worst(b.gv, a.gv, 0, 0)).toBe(0);
    }
  });

  it('binding ranges cover every element once, 256-byte aligned', () => {
    for (const [first, end, width, max] of [[0, 4096, 4, 1024], [4096, 4099, 1, 1024], [0, 100, 4, 256], [96, 99, 1, 300]] as const) {
      const cs = bindingChunks(first, end, width, max);
      let e = first;
      for (const c of cs) {
        expect(c.offset % 256).toBe(0);
        expect(c.size).toBeLessThanOrEqual(Math.floor(max / 256) * 256);
        expect(c.offset / 4 + c.start * width).toBe(e);
        e += c.count * width;
        expect(c.offset + c.size).toBeGreaterThanOrEqual(Math.min(e, end) * 4);
      }
      expect(Math.min(e, end)).toBe(end);
    }
  });

  it('rejects bad operands before the GPU', () => {
    const p = tensor([1, 2, 3], [3]);
    const g = tensor([1, 2], [2]);
    const m = tensor([0, 0, 0], [3]);
    const v = tensor([0, 0, 0], [3]);
    expect(() => adamwStep(p, g, m, v, 1, base('torch'))).toThrow(/adamw: grad \[2\] does not match param \[3\]/);
    expect(() => adamwStep(p, m, m, v, 1, base('torch'))).toThrow(/distinct buffers/);
    expect(() => adamwStep(p, tensor(new Int32Array(3), [3]), m, v, 1, base('torch'))).toThrow(/grad must be f32/);
    expect(() => adamwStep(p, m, p, v, 0, base('torch'))).toThrow(/adamw/);
    expect(() => adamwStep(p, tensor([0, 0, 0], [3]), m, v, 1, { ...base('torch'), beta1: 1 })).toThrow(/betas/);
    v.dispose();
    expect(() => adamwStep(p, tensor([0, 0, 0], [3]), m, v, 1, base('torch'))).toThrow(/exp_avg_sq \[3\] is disposed/);
  });
});

describe('AdamW optimizer', () => {
  function makeParams(seed: number): Tensor[] {
    const r = rng(seed);
    return [[3, 5], [7], [1]].map((s) => tensor(r(s.reduce((a, b) => a * b, 1)), s, { requiresGrad: true }));
  }
  const setGrads = (ps: Tensor[], t: number) => {
    const r = rng(1000 + t);
    ps.forEach((p, i) => {
      p.grad?.dispose();
      p.grad = i === 1 && t === 2 ? null : tensor(r(p.size), p.shape).keep(); // param 1 has no grad at step 2
    });
  };

  it('matches the reference over steps, skips parameters without a gradient, and keeps per-parameter steps', async () => {
    for (const variant of ['torch', 'hf'] as const) {
      const ps = makeParams(5);
      const ref = await Promise.all(ps.map(async (p) => ({ p: Float64Array.from(await p.toFloat32()), m: new Float64Array(p.size), v: new Float64Array(p.size), t: 0 })));
      const opt = new AdamW(ps, { lr: 0.01, weightDecay: 0.05, variant });
      for (let t = 1; t <= 5; t++) {
        setGrads(ps, t);
        const lr = 0.01 * t;
        opt.step(lr);
        for (const [i, p] of ps.entries()) {
          if (!p.grad) continue;
          const R = ref[i]!;
          R.t++;
          adamwReference(R.p, await p.grad.toFloat32(), R.m, R.v, R.t, { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, variant });
        }
      }
      expect(opt.stepCount).toBe(5);
      expect(opt.moments(1)!.step).toBe(4);
      expect(opt.moments(0)!.step).toBe(5);
      for (const [i, p] of ps.entries()) {
        expect(worst(await p.toFloat32(), ref[i]!.p, 5 * 6e-6 * 0.05, 5 * 2e-7)).toBeLessThanOrEqual(1);
      }
      opt.zeroGrad();
      expect(ps.every((p) => p.grad === null)).toBe(true);
      opt.dispose();
      ps.forEach((p) => p.dispose());
    }
  });

  it('state()/loadState() resumes bit-identically and refuses a mismatched optimizer', async () => {
    const a = makeParams(9);
    const optA = new AdamW(a, { lr: 0.02, variant: 'hf', weightDecay: 0.1 });
    for (let t = 1; t <= 3; t++) {
      setGrads(a, t);
      optA.step();
    }
    const saved = await optA.state();
    expect(saved.params[1]!.step).toBe(2);
    // a fresh process: parameters restored from their values, optimizer from the saved state
    const b = await Promise.all(a.map(async (p) => tensor(await p.toFloat32(), p.shape, { requiresGrad: true })));
    const optB = new AdamW(b, { lr: 999, variant: 'hf', weightDecay: 0.1 });
    optB.loadState(saved);
    expect(optB.lr).toBe(0.02);
    for (let t = 4; t <= 5; t++) {
      setGrads(a, t);
      setGrads(b, t);
      optA.step(0.01);
      optB.step(0.01);
    }
    for (let i = 0; i < a.length; i++) expect(worst(await b[i]!.toFloat32(), await a[i]!.toFloat32(), 0, 0)).toBe(0);
    expect(() => new AdamW(b, { lr: 0.02, variant: 'torch', weightDecay: 0.1 }).loadState(saved)).toThrow(/variant hf/);
    expect(() => new AdamW(b.slice(1), { lr: 0.02, variant: 'hf', weightDecay: 0.1 }).loadState(saved)).toThrow(/3 parameters/);
    optA.dispose();
    optB.dispose();
    [...a, ...b].forEach((p) => { p.grad?.dispose(); p.dispose(); });
  });

  it('allocates nothing after the first step', async () => {
    const ps = makeParams(2);
    const opt = new AdamW(ps, { lr: 0.01 });
    setGrads(ps, 1);
    opt.step();
    await rt().sync();
    const m0 = memory();
    for (let t = 0; t < 20; t++) opt.step(0.01 / (t + 1));
    await rt().sync();
    expect(memory().buffersCreated).toBe(m0.buffersCreated);
    expect(memory().bytesLive).toBe(m0.bytesLive);
    opt.zeroGrad();
    opt.dispose();
    ps.forEach((p) => p.dispose());
  });

  it('rejects a gradient of the wrong shape and bad hyperparameters', () => {
    const p = tensor([1, 2, 3], [3], { requiresGrad: true });
    expect(() => new AdamW([p], { lr: -1 })).toThrow(/learning rate/);
    expect(() => new AdamW([p, p], { lr: 1 })).toThrow(/parameter 1 .* shares its storage with parameter 0/);
    expect(() => new AdamW([p, p.reshape([3, 1])], { lr: 1 })).toThrow(/shares its storage/);
    const stranger = tensor([1], [1]);
    expect(() => new AdamW([p], { lr: 1, noDecay: [stranger] })).toThrow(/AdamW: a noDecay tensor .*f32\[1\].* is not one of its parameters/);
    stranger.dispose();
    const opt = new AdamW([p], { lr: 0.1 });
    p.grad = tensor([1, 2], [2]).keep();
    expect(() => opt.step()).toThrow(/gradient \[2\] of parameter 0 does not match \[3\]/);
    opt.zeroGrad();
    p.dispose();
  });
});

describe('golden: one torch.optim.AdamW step of the Hugging Face tiny T5', () => {
  it('matches params_after_step.safetensors within 2e-6 + 1e-7·|p|', async () => {
    const dir = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url));
    const [params, grads, after] = await Promise.all(
      ['model', 'grads', 'params_after_step'].map((f) => readSafetensors(join(dir, `${f}.safetensors`))),
    );
    const names = [...params!.keys()];
    expect(names.length).toBeGreaterThan(10);
    const ps = names.map((n) => tensor(params!.get(n)!.data, params!.get(n)!.shape, { requiresGrad: true, name: n }));
    ps.forEach((p, i) => (p.grad = tensor(grads!.get(names[i]!)!.data, p.shape).keep()));
    const opt = new AdamW(ps, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, variant: 'torch' });
    opt.step();
    let moved = 0;
    for (const [i, p] of ps.entries()) {
      const want = after!.get(names[i]!)!.data;
      const got = await p.toFloat32();
      // the fixture README's bound for the optimizer alone: |Δ| ≤ 2e-6 + 1e-7·|p| (PyTorch's own float32 step is
      // 1.1e-6 from float64)
      expect(worst(got, want, 2e-6, 1e-7), names[i]).toBeLessThanOrEqual(1);
      const before = params!.get(names[i]!)!.data;
      for (let j = 0; j < want.length; j++) if (Math.abs(got[j]! - before[j]!) > 5e-4) moved++;
    }
    // the step moves parameters by ≈ lr = 1e-3 (a kernel that did nothing would fail above, this says so plainly)
    expect(moved).toBeGreaterThan(1000);
    opt.dispose();
    ps.forEach((p) => { p.grad?.dispose(); p.dispose(); });
  });
});
