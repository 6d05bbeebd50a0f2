import { afterAll, describe, expect, it } from 'vitest';
import { sizeOf, tensor, type Tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { rmsNorm, rmsNormForward, rmsNormReference } from '../kernels/rmsnorm.ts';
import { layerNorm, layerNormForward, layerNormReference } from '../kernels/layernorm.ts';
import { setBindingLimitForTests, type RowImpl } from '../kernels/row-kernel.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { lcg, uniformFloats } from './helpers/random-data.ts';

usePoisonedGpu();
afterAll(() => setBindingLimitForTests(null));

const IMPLS: RowImpl[] = ['subgroup', 'invocation', 'workgroup'];

const rand = lcg(777);
const randn = (n: number, scale = 1, offset = 0): Float32Array => uniformFloats(rand, n, scale, offset);

/** max |a − b| / (1 + |b|): relative for large values, absolute near zero */
function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return Number.isNaN(e) || a.length !== b.length ? Infinity : e;
}

/** central differences (h = 1e-4) of a float64 loss with respect to every element of `v` */
const finiteDiff = (v: Float32Array, loss: (v: Float64Array) => number): Float64Array => centralDiff(Float64Array.from(v), loss, 1e-4);

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

// Forward bound 1e-5 relative: a row's sum of squares in f32 carries ~sqrt(D) ulp (D up to 4099), rsqrt and the
// products a few more; a wrong element, row offset or missed reduction lane is off by 1e-2 or more.
const FWD_TOL = 1e-5;
// Backward bound 5e-5 relative (to 1 + |reference|): central differences with h = 1e-4 are exact to ~1e-8 here;
// the f32 gradients sum up to 37 rows of O(1) terms (~1e-6), and the row statistics add a few ulp.
const BWD_TOL = 5e-5;

const FWD_SHAPES = [[1, 1], [3, 7], [5, 64], [2, 3, 512], [4, 768], [2, 4099]];
const BWD_SHAPES = [[1, 4], [3, 7], [2, 12], [37, 8]];

describe.each(IMPLS)('rmsNorm (%s layout)', (impl) => {
  it.each(FWD_SHAPES)('forward [%i, %i, …] matches T5LayerNorm', async (...shape) => {
    const D = shape[shape.length - 1]!;
    const xh = randn(sizeOf(shape), 3);
    const wh = randn(D, 1, 1);
    const x = tensor(xh, shape);
    const w = tensor(wh, [D]);
    const { y, rstd } = rmsNormForward(x, w, 1e-6, { impl });
    const ref = rmsNormReference(xh, wh, 1e-6);
    expect(rstd.shape).toEqual(shape.slice(0, -1));
    expect(maxErr(await y.toArray(), ref.y)).toBeLessThan(FWD_TOL);
    expect(maxErr(await rstd.toArray(), ref.rstd)).toBeLessThan(FWD_TOL);
    for (const t of [x, w, y, rstd]) t.dispose();
  });

  it.each(BWD_SHAPES)('backward [%i, %i] for x and weight against finite differences', async (...shape) => {
    const D = shape[shape.length - 1]!;
    const xh = randn(sizeOf(shape), 2);
    const wh = randn(D, 1, 1);
    const gh = randn(sizeOf(shape));
    const eps = 1e-6;
    const x = tensor(xh, shape, { requiresGrad: true });
    const w = tensor(wh, [D], { requiresGrad: true });
    const y = rmsNorm(x, w, eps, { impl });
    backward(y, { gradient: tensor(gh, shape) });
    const fdx = finiteDiff(xh, (v) => dot(rmsNormReference(v, wh, eps).y, gh));
    const fdw = finiteDiff(wh, (v) => dot(rmsNormReference(xh, v, eps).y, gh));
    expect(maxErr(await x.grad!.toArray(), fdx)).toBeLessThan(BWD_TOL);
    expect(maxErr(await w.grad!.toArray(), fdw)).toBeLessThan(BWD_TOL);
    for (const t of [x, w, y]) t.dispose();
  });
});

describe.each(IMPLS)('layerNorm (%s layout)', (impl) => {
  it.each(FWD_SHAPES)('forward [%i, %i, …] matches F.layer_norm', async (...shape) => {
    const D = shape[shape.length - 1]!;
    // an offset of 50 makes E[x²] − mean² lose digits; the two-pass variance must not
    const xh = randn(sizeOf(shape), 3, 50);
    const wh = randn(D, 1, 1);
    const bh = randn(D);
    const ts: Tensor[] = [tensor(xh, shape), tensor(wh, [D]), tensor(bh, [D])];
    const { y, mean, rstd } = layerNormForward(ts[0]!, ts[1]!, ts[2]!, 1e-5, { impl });
    const ref = layerNormReference(xh, wh, bh, 1e-5);
    expect(maxErr(await y.toArray(), ref.y)).toBeLessThan(FWD_TOL);
    expect(maxErr(await mean.toArray(), ref.mean)).toBeLessThan(FWD_TOL);
    expect(maxErr(await rstd.toArray(), ref.rstd)).toBeLessThan(FWD_TOL);
    for (const t of [...ts, y, mean, rstd]) t.dispose();
  });

  it.each(BWD_SHAPES.slice(1))('backward [%i, %i] for x, weight and bias against finite differences', async (...shape) => {
    const D = shape[shape.length - 1]!;
    const xh = randn(sizeOf(shape), 2);
    const wh = randn(D, 1, 1);
    const bh = randn(D);
    const gh = randn(sizeOf(shape));
    const eps = 1e-5;
    const x = tensor(xh, shape, { requiresGrad: true });
    const w = tensor(wh, [D], { requiresGrad: true });
    const b = tensor(bh, [D], { requiresGrad: true });
    const y = layerNorm(x, w, b, eps, { impl });
    backward(y, { gradient: tensor(gh, shape) });
    const fdx = finiteDiff(xh, (v) => dot(layerNormReference(v, wh, bh, eps).y, gh));
    const fdw = finiteDiff(wh, (v) => dot(layerNormReference(xh, v, bh, eps).y, gh));
    const fdb = finiteDiff(bh, (v) => dot(layerNormReference(xh, wh, v, eps).y, gh));
    expect(maxErr(await x.grad!.toArray(), fdx)).toBeLessThan(BWD_TOL);
    expect(maxErr(await w.grad!.toArray(), fdw)).toBeLessThan(BWD_TOL);
    expect(maxErr(await b.grad!.toArray(), fdb)).toBeLessThan(BWD_TOL);
    for (const t of [x, w, b, y]) t.dispose();
  });
});

describe('norms over the binding limit', () => {
  // forced limit of 40 rows of 8 floats: row kernels bind 40-row ranges, the column sums 32-row ranges (their
  // chunk size), so ranges and chunk boundaries do not line up; results must equal the unsplit run bit for bit
  it.each(IMPLS)('rmsNorm and layerNorm forward and backward in row ranges (%s)', async (impl) => {
    const [R, D] = [101, 8];
    const xh = randn(R * D, 2);
    const wh = randn(D, 1, 1);
    const bh = randn(D);
    const gh = randn(R * D);
    const run = async () => {
      const x = tensor(xh, [R, D], { requiresGrad: true });
      const w = tensor(wh, [D], { requiresGrad: true });
      const b = tensor(bh, [D], { requiresGrad: true });
      const y1 = rmsNorm(x, w, 1e-6, { impl });
      const y2 = layerNorm(x, w, b, 1e-5, { impl });
      backward(y1, { gradient: tensor(gh, [R, D]) });
      backward(y2, { gradient: tensor(gh, [R, D]) });
      const out = [y1, y2, x.grad!, w.grad!, b.grad!];
      return Promise.all(out.map(async (t) => [...(await t.toArray())]));
    };
    const whole = await run();
    setBindingLimitForTests(40 * D * 4);
    try {
      expect(await run()).toEqual(whole);
    } finally {
      setBindingLimitForTests(null);
    }
    expect(maxErr(whole[0]!, rmsNormReference(xh, wh, 1e-6).y)).toBeLessThan(FWD_TOL);
  });
});

describe('norm argument checks', () => {
  it('names the op and shapes', () => {
    const x = tensor(randn(12), [3, 4]);
    expect(() => rmsNorm(x, tensor(randn(3), [3]), 1e-6)).toThrow(/rmsNorm: weight \[3\] must be \[4\] to match x \[3, 4\]/);
    expect(() => layerNorm(x, tensor(randn(4), [4]), tensor(randn(5), [5]))).toThrow(/layerNorm: bias \[5\] must be \[4\]/);
    expect(() => rmsNorm(tensor(new Int32Array(4), [1, 4]), tensor(randn(4), [4]), 1e-6)).toThrow(/rmsNorm: x must be f32/);
    expect(() => rmsNorm(x, tensor(randn(4), [4]), NaN)).toThrow(/rmsNorm: eps/);
  });
});
