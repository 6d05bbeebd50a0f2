import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { sizeOf, tensor } from '../engine/tensor.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { broadcastIndexer, logSoftmax, logSoftmaxReference, setSoftmaxRegisterCache, softmax, softmaxReference } from '../kernels/softmax.ts';
import { setBindingLimitForTests, type RowImpl } from '../kernels/row-kernel.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { lcg, uniformFloats } from './helpers/random-data.ts';

usePoisonedGpu();
afterAll(() => {
  setBindingLimitForTests(null);
  setSoftmaxRegisterCache('auto');
});

const IMPLS: RowImpl[] = ['subgroup', 'invocation', 'workgroup'];
// the subgroup layout has register-cached kernels (rows of up to 16 vectors per lane) and streamed ones
const VARIANTS: Array<[RowImpl, 'auto' | 'on' | 'off']> = [
  ['subgroup', 'on'],
  ['subgroup', 'off'],
  ['invocation', 'auto'],
  ['workgroup', 'auto'],
];
const FINFO_MIN = -3.4028234663852886e38;

const rand = lcg(12345);
const randn = (n: number, scale = 1): Float32Array => uniformFloats(rand, n, scale);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(e) ? Infinity : e;
}

// Forward bound: outputs are probabilities in [0, 1]; f32 exp and the reciprocal of the sum each carry a few
// ulp (~1e-7 relative), so 2e-6 absolute is loose enough for rows of 32k and tight enough to catch a wrong
// max, mask offset or a missed element (errors of 1e-3 and more).
const FWD_TOL = 2e-6;

describe.each(VARIANTS)('softmax (%s layout, register cache %s)', (impl, cache) => {
  beforeEach(() => setSoftmaxRegisterCache(cache));
  it.each([
    [[1, 1], null],
    [[3, 7], null],
    [[5, 256], null],
    [[3, 512], null],
    [[3, 509], null],
    [[4, 1031], null],
    [[2, 5003], null],
    [[2, 3, 5, 12], [2, 1, 1, 12]],
    [[2, 3, 5, 13], [1, 1, 5, 13]],
    [[2, 3, 5, 8], [2, 3, 5, 1]],
    [[3, 2, 4, 9], [9]],
    [[2, 3, 4, 8], [2, 3, 4, 8]],
  ] as Array<[number[], number[] | null]>)('forward %j with mask %j', async (shape, maskShape) => {
    const xh = randn(sizeOf(shape), 6);
    const mh = maskShape ? Float32Array.from({ length: sizeOf(maskShape) }, () => (rand() < 0.3 ? FINFO_MIN : rand() - 0.5)) : undefined;
    const x = tensor(xh, shape);
    const mask = mh ? tensor(mh, maskShape!) : undefined;
    const y = softmax(x, { mask, impl });
    const ref = softmaxReference(xh, shape[shape.length - 1]!, mh ? broadcastIndexer(shape, mh, maskShape!) : undefined);
    expect(maxAbsDiff(await y.toArray(), ref)).toBeLessThan(FWD_TOL);
    for (const t of [x, mask, y]) t?.dispose();
  });

  it('-inf rows give NaN like torch.softmax; finfo.min rows are uniform; leading -inf does not poison the sum', async () => {
    const L = 12;
    const rows = [
      Array(L).fill(-Infinity),
      Array(L).fill(FINFO_MIN),
      Array.from({ length: L }, (_, j) => (j < 9 ? -Infinity : j)),
    ];
    const x = tensor(rows.flat(), [3, L]);
    const y = await softmax(x, { impl }).toArray();
    expect([...y.slice(0, L)].every(Number.isNaN)).toBe(true);
    expect(maxAbsDiff(y.slice(L, 2 * L), Array(L).fill(1 / L))).toBeLessThan(1e-7);
    expect(maxAbsDiff(y.slice(2 * L), softmaxReference(rows[2]!, L))).toBeLessThan(FWD_TOL);
    // Hugging Face's additive finfo.min mask over a whole row: uniform, never NaN
    const mask = tensor(Array(L).fill(FINFO_MIN), [1, L]);
    const ym = await softmax(tensor(randn(2 * L), [2, L]), { mask, impl }).toArray();
    expect(maxAbsDiff(ym, Array(2 * L).fill(1 / L))).toBeLessThan(1e-7);
  });

  // Backward bound: d sum(W ⊙ softmax(x)) / dx from the GPU rule against central differences (h = 1e-4) of the
  // float64 reference. The difference error is O(h²) ≈ 1e-8, the f32 rule's error ~1e-7 per term times the
  // row's sum, so 2e-5 absolute for |W| ≤ 1.
  it.each([[[1, 1]], [[3, 7]], [[2, 64]], [[2, 2, 3, 13]]])('backward %j against finite differences (mask gets none)', async (shape) => {
    const n = sizeOf(shape);
    const L = shape[shape.length - 1]!;
    const xh = randn(n, 3);
    const wh = randn(n);
    const maskShape = [1, L];
    const mh = Float32Array.from({ length: L }, () => (rand() < 0.25 ? FINFO_MIN : 0));
    const maskAt = broadcastIndexer(shape, mh, maskShape);
    const loss = (xs: Float64Array) => softmaxReference(xs, L, maskAt).reduce((a, v, i) => a + v * wh[i]!, 0);
    const x = tensor(xh, shape, { requiresGrad: true });
    const mask = tensor(mh, maskShape, { requiresGrad: true });
    const y = softmax(x, { mask, impl });
    backward(y, { gradient: tensor(wh, shape) });
    const got = await x.grad!.toArray();
    expect(mask.grad).toBeNull();
    const h = 1e-4;
    const fd = centralDiff(Float64Array.from(xh), loss, h);
    expect(maxAbsDiff(got, fd)).toBeLessThan(2e-5);
    for (const t of [x, mask, y]) t.dispose();
  });
});

describe('softmax over the binding limit', () => {
  it.each(IMPLS)('binds rows in ranges (forced small limit), mask rows follow the range offset (%s)', async (impl) => {
    const shape = [2, 3, 7, 12];
    const maskShape = [2, 1, 7, 12];
    const xh = randn(sizeOf(shape), 5);
    const mh = Float32Array.from({ length: sizeOf(maskShape) }, () => (rand() < 0.3 ? FINFO_MIN : rand()));
    const wh = randn(sizeOf(shape));
    const plain = tensor(xh, shape, { requiresGrad: true });
    const mask = tensor(mh, maskShape);
    const y0 = softmax(plain, { mask, impl });
    backward(y0, { gradient: tensor(wh, shape) });
    const g0 = await plain.grad!.toArray();
    setBindingLimitForTests(12 * 4 * 5 + 20);
    try {
      const x = tensor(xh, shape, { requiresGrad: true });
      const y = softmax(x, { mask, impl });
      const ref = softmaxReference(xh, 12, broadcastIndexer(shape, mh, maskShape));
      expect(maxAbsDiff(await y.toArray(), ref)).toBeLessThan(FWD_TOL);
      backward(y, { gradient: tensor(wh, shape) });
      expect([...(await x.grad!.toArray())]).toEqual([...g0]);
    } finally {
      setBindingLimitForTests(null);
    }
  });
});

describe('softmax argument checks', () => {
  it('rejects a mask that does not broadcast, i32 input, a disposed tensor', () => {
    const x = tensor(randn(24), [2, 3, 4]);
    expect(() => softmax(x, { mask: tensor(randn(6), [2, 3]) })).toThrow(/softmax: mask does not broadcast: x \[2, 3, 4\] and mask \[2, 3\]/);
    expect(() => softmax(tensor(new Int32Array(4), [4]))).toThrow(/softmax: x must be f32/);
    const d = tensor([1, 2], [2]);
    d.dispose();
    expect(() => softmax(d)).toThrow(/softmax: x is a disposed tensor/);
  });
});

// log_softmax (forward only, generation's scores). Outputs are log-probabilities down to about -2·6 - log(L);
// f32 carries ~1e-7 relative on each of x - m and log(sum), so 1e-5 absolute; a wrong max, a missed element or
// a row offset moves values by 1e-3 and more. Rows of 32128 are the t5 vocabulary beam search scores.
describe.each(VARIANTS)('logSoftmax (%s layout, register cache %s)', (impl, cache) => {
  beforeEach(() => setSoftmaxRegisterCache(cache));
  it.each([[[1, 1]], [[3, 7]], [[5, 256]], [[2, 3, 13]], [[2, 5003]], [[3, 32128]]])('forward %j', async (shape) => {
    const L = shape[shape.length - 1]!;
    const xh = randn(sizeOf(shape), 6);
    const x = tensor(xh, shape);
    const y = logSoftmax(x, { impl });
    expect(y.shape).toEqual(shape);
    expect(maxAbsDiff(await y.toArray(), logSoftmaxReference(xh, L))).toBeLessThan(1e-5);
    x.dispose();
    y.dispose();
  });

  it('-inf stays -inf, a row of only -inf gives NaN, as torch.log_softmax', async () => {
    const L = 12;
    const rows = [Array(L).fill(-Infinity), Array.from({ length: L }, (_, j) => (j < 9 ? -Infinity : j))];
    const y = await logSoftmax(tensor(rows.flat(), [2, L]), { impl }).toArray();
    expect([...y.slice(0, L)].every(Number.isNaN)).toBe(true);
    expect([...y.slice(L, L + 9)]).toEqual(Array(9).fill(-Infinity));
    expect(maxAbsDiff(y.slice(L + 9), logSoftmaxReference(rows[1]!, L).slice(9))).toBeLessThan(1e-6);
  });
});

describe('logSoftmax arguments', () => {
  it('refuses a tensor that needs a gradient, and runs on it under noGrad', async () => {
    const x = tensor(randn(6), [2, 3], { requiresGrad: true });
    expect(() => logSoftmax(x)).toThrow(/logSoftmax: .* requires a gradient, and logSoftmax has none .*noGrad/);
    const y = noGrad(() => logSoftmax(x));
    expect(y.requiresGrad).toBe(false);
    expect(() => logSoftmax(tensor(new Int32Array(4), [4]))).toThrow(/logSoftmax: x must be f32/);
    expect(() => logSoftmax(tensor([1], []))).toThrow(/logSoftmax: x must have at least one axis/);
    for (const t of [x, y]) t.dispose();
  });
});
