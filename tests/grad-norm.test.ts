import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { setPoison, tensor, type Tensor } from '../engine/tensor.ts';
import { rt } from '../engine/runtime.ts';
import { clipCoefReference, clipGradNorm, globalNorm, globalNormReference } from '../kernels/grad-norm.ts';
import { mulberry32, uniformFloats } from './helpers/random-data.ts';

beforeAll(async () => {
  await initGpu();
});

/** Reproducible uniform samples in [-scale, scale): rng(seed)(n, scale), one mulberry32 stream per rng. */
function rng(seed: number) {
  const rand = mulberry32(seed);
  return (n: number, scale = 1) => uniformFloats(rand, n, scale);
}

// Bound for the norm: every term is non-negative, so float32 summation has relative error ≤ (chain length)·2^-24;
// the longest chain (kernels/grad-norm.ts) is 16 + 2 per-thread vec4 additions, 64 per second-level thread,
// 64 + 8 in the final workgroup ≈ 155 roundings: ≤ 9.3e-6 on the sum of squares, ≤ 4.7e-6 on its square root.
// Typical errors are ~1e-7; a lost or doubled element is caught by the single-tensor and spike tests below, where it
// changes the norm by far more than this.
const NORM_RTOL = 5e-6;

const SHAPES: number[][] = [[1], [7], [3, 5], [1021], [4099], [65537], [2, 3, 11], [100_003]];

function make(seed: number, shapes: number[][], scales: number[]): { ts: Tensor[]; hs: Float32Array[] } {
  const r = rng(seed);
  const hs = shapes.map((s, i) => r(s.reduce((a, b) => a * b, 1), scales[i % scales.length]));
  return { ts: hs.map((h, i) => tensor(h, shapes[i]!)), hs };
}

describe('globalNorm', () => {
  it('matches the float64 norm of norms over awkward sizes and mixed scales', async () => {
    setPoison(true);
    for (const [seed, scales] of [[1, [1]], [2, [1e-3, 10, 0.5, 1e3]], [3, [1e-17, 1e-16]]] as const) {
      const { ts, hs } = make(seed, SHAPES, [...scales]);
      const got = await globalNorm(ts).item();
      const want = globalNormReference(hs);
      expect(Math.abs(got - want) / want, `scales ${scales}`).toBeLessThanOrEqual(NORM_RTOL);
      ts.forEach((t) => t.dispose());
    }
    setPoison(false);
  });

  it('both thread layouts, and tensors split into 256-byte binding ranges, give the norm', async () => {
    const { ts, hs } = make(4, [[4099], [1021], [5]], [1]);
    const want = globalNormReference(hs);
    const layouts = [{}, { layout: 'strided' as const }, { layout: 'contiguous' as const }];
    for (const opts of [...layouts, { maxBindingBytes: 256 }, { maxBindingBytes: 1000 }, { layout: 'strided' as const, maxBindingBytes: 1000 }]) {
      const got = await globalNorm(ts, opts).item();
      expect(Math.abs(got - want) / want).toBeLessThanOrEqual(NORM_RTOL);
    }
    ts.forEach((t) => t.dispose());
  });

  it('each awkward size alone, and a spike at the last element of a large tensor', async () => {
    for (const [i, shape] of SHAPES.entries()) {
      const { ts, hs } = make(20 + i, [shape], [1]);
      const want = globalNormReference(hs);
      expect(Math.abs((await globalNorm(ts).item()) - want) / want, `[${shape}]`).toBeLessThanOrEqual(NORM_RTOL);
      ts.forEach((t) => t.dispose());
    }
    // the last element holds ~all the norm: a kernel that drops the tail (or a range's last element) fails at once;
    // 1,048,579 elements give 16,385 first-level partials, one more than the final kernel takes: a second level runs
    for (const n of [5, 1021, 4099, 1_048_579]) {
      const h = rng(n)(n, 1e-3);
      h[n - 1] = 1000;
      const t = tensor(h, [n]);
      const want = globalNormReference([h]);
      for (const opts of [{}, { maxBindingBytes: 4096 }, { layout: 'strided' as const }, { layout: 'contiguous' as const }]) {
        expect(Math.abs((await globalNorm([t], opts).item()) - want) / want, `n ${n}`).toBeLessThanOrEqual(NORM_RTOL);
      }
      t.dispose();
    }
  });

  it('is 0 for no tensors and for empty tensors; the result is a scalar', async () => {
    const z = globalNorm([]);
    expect(z.shape).toEqual([]);
    expect(await z.item()).toBe(0);
    const e = tensor([], [0, 3]);
    expect(await globalNorm([e]).item()).toBe(0);
    const x = tensor([3, 4], [2]);
    expect(await globalNorm([e, x]).item()).toBe(5);
  });

  it('rejects disposed and integer tensors', () => {
    const a = tensor([1], [1]);
    a.dispose();
    expect(() => globalNorm([a])).toThrow(/globalNorm: tensor 0 \[1\] is disposed/);
    expect(() => globalNorm([tensor(new Int32Array([1, 2]), [2])])).toThrow(/globalNorm: tensor 0 must be f32/);
  });
});

describe('clipGradNorm (torch.nn.utils.clip_grad_norm_)', () => {
  function params(seed: number, scale: number) {
    const shapes = [[33, 7], [1], [4099], [3, 3], [257]];
    const { ts, hs } = make(seed, shapes, [scale]);
    const ps = shapes.map((s) => tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s, { requiresGrad: true }));
    ps.forEach((p, i) => (p.grad = ts[i]!.keep()));
    // a parameter without a gradient is skipped
    ps.push(tensor([1, 2, 3], [3], { requiresGrad: true }));
    return { ps, hs };
  }

  it('scales every gradient by maxNorm / (norm + 1e-6) when that is below 1, with no readback', async () => {
    const { ps, hs } = params(8, 1);
    const want = globalNormReference(hs);
    const reads = rt().counters.readbacks;
    const norm = clipGradNorm(ps, 1.5);
    expect(rt().counters.readbacks).toBe(reads);
    expect(Math.abs((await norm.item()) - want) / want).toBeLessThanOrEqual(NORM_RTOL);
    const coef = clipCoefReference(want, 1.5);
    expect(coef).toBeLessThan(0.1);
    // each clipped element: the coefficient's relative error (≤ NORM_RTOL + 2 roundings) plus the product's rounding
    for (const [i, h] of hs.entries()) {
      const got = await ps[i]!.grad!.toFloat32();
      for (let j = 0; j < h.length; j++) {
        expect(Math.abs(got[j]! - h[j]! * coef)).toBeLessThanOrEqual((NORM_RTOL + 3 * 2 ** -24) * Math.abs(h[j]! * coef));
      }
    }
    expect(ps[5]!.grad).toBeNull();
    // after clipping the global norm is maxNorm (less the 1e-6 guard)
    const after = await globalNorm(ps.filter((p) => p.grad).map((p) => p.grad!)).item();
    expect(Math.abs(after - 1.5)).toBeLessThanOrEqual(1.5 * 4e-6);
    ps.forEach((p) => p.dispose());
  });

  it('leaves gradients bit-identical when the norm is below maxNorm', async () => {
    const { ps, hs } = params(9, 1e-3);
    const want = globalNormReference(hs);
    const norm = await clipGradNorm(ps, 10 * want).item();
    expect(Math.abs(norm - want) / want).toBeLessThanOrEqual(NORM_RTOL);
    for (const [i, h] of hs.entries()) expect([...(await ps[i]!.grad!.toFloat32())]).toEqual([...h]);
    ps.forEach((p) => p.dispose());
  });

  it('propagates a NaN gradient to every gradient and clips a whole-range split the same way', async () => {
    const { ps } = params(10, 1);
    const g0 = await ps[0]!.grad!.toFloat32();
    g0[5] = NaN;
    ps[0]!.grad!.dispose();
    ps[0]!.grad = tensor(g0, ps[0]!.shape).keep();
    const norm = await clipGradNorm(ps, 1).item();
    expect(norm).toBeNaN();
    expect([...(await ps[2]!.grad!.toFloat32())].every(Number.isNaN)).toBe(true);
    ps.forEach((p) => p.dispose());

    const a = params(11, 1);
    const b = params(11, 1);
    await clipGradNorm(a.ps, 0.5).item();
    await clipGradNorm(b.ps, 0.5, { maxBindingBytes: 512 }).item();
    for (let i = 0; i < 5; i++) {
      const x = await a.ps[i]!.grad!.toFloat32();
      const y = await b.ps[i]!.grad!.toFloat32();
      for (let j = 0; j < x.length; j++) expect(Math.abs(x[j]! - y[j]!)).toBeLessThanOrEqual(2 * NORM_RTOL * Math.abs(x[j]!));
    }
    [...a.ps, ...b.ps].forEach((p) => p.dispose());
  });

  it('scales a gradient buffer shared by two parameters once', async () => {
    const g = tensor([3, 4], [2]);
    const a = tensor([0, 0], [2], { requiresGrad: true });
    const b = tensor([0, 0], [2], { requiresGrad: true });
    a.grad = g.keep();
    b.grad = g.reshape([2]).keep(); // another handle on the same storage, as backward hands out for x + y
    // total = sqrt(25 + 25); coef = 1 / (sqrt(50) + 1e-6)
    expect(Math.abs((await clipGradNorm([a, b], 1).item()) - Math.sqrt(50))).toBeLessThanOrEqual(Math.sqrt(50) * NORM_RTOL);
    const c = clipCoefReference(Math.sqrt(50), 1);
    const got = await b.grad.toFloat32();
    expect(Math.abs(got[0]! - 3 * c)).toBeLessThanOrEqual(1e-6 * 3 * c);
    expect(Math.abs(got[1]! - 4 * c)).toBeLessThanOrEqual(1e-6 * 4 * c);
    a.dispose();
    b.dispose();
  });

  it('rejects a negative or NaN maxNorm', () => {
    const { ps } = params(12, 1);
    expect(() => clipGradNorm(ps, -1)).toThrow(/maxNorm must be >= 0/);
    expect(() => clipGradNorm(ps, NaN)).toThrow(/maxNorm/);
    ps.forEach((p) => p.dispose());
  });
});
