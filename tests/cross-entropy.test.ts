import { afterAll, describe, expect, it } from 'vitest';
import { memory, tensor } from '../engine/tensor.ts';
import { backward, zeroGrad } from '../engine/autograd.ts';
import { rt } from '../engine/runtime.ts';
import { tidy } from '../engine/scope.ts';
import { embedding } from '../kernels/embedding.ts';
import { rmsNorm } from '../kernels/rmsnorm.ts';
import { layerNorm } from '../kernels/layernorm.ts';
import { softmax } from '../kernels/softmax.ts';
import { crossEntropy, crossEntropyReference, type Reduction } from '../kernels/cross-entropy.ts';
import { idsTensor } from '../kernels/embedding.ts';
import { setBindingLimitForTests, type RowImpl } from '../kernels/row-kernel.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { lcg, uniformFloats } from './helpers/random-data.ts';

usePoisonedGpu();
afterAll(() => setBindingLimitForTests(null));

const IMPLS: RowImpl[] = ['subgroup', 'invocation', 'workgroup'];

const rand = lcg(4242);
const randn = (n: number, scale = 1): Float32Array => uniformFloats(rand, n, scale);
function randLabels(N: number, V: number, ignoredShare = 0.25): Int32Array {
  return Int32Array.from({ length: N }, () => (rand() < ignoredShare ? -100 : Math.floor(rand() * V)));
}
function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return Number.isNaN(e) || a.length !== b.length ? Infinity : e;
}

// Forward bound 1e-5 relative to 1 + |loss|: logsumexp of a 32128-wide f32 row carries ~1e-6 relative error
// in the sum of exp (8 lanes' partial sums of ~4000 terms each) and the loss is a difference of O(10) numbers.
// A wrong label gather or a lost lane is off by 1e-2 or more.
const FWD_TOL = 1e-5;

describe.each(IMPLS)('crossEntropy (%s layout)', (impl) => {
  it.each([[1, 1], [3, 7], [5, 64], [7, 1031], [3, 32128]])('forward N=%i V=%i, all reductions', async (N, V) => {
    const xh = randn(N * V, 8);
    const labels = randLabels(N, V);
    if (labels.every((l) => l === -100)) labels[0] = V - 1;
    const ref = crossEntropyReference(xh, labels, V);
    const x = tensor(xh, [N, V]);
    for (const reduction of ['mean', 'sum', 'none'] as Reduction[]) {
      const loss = crossEntropy(x, labels, { reduction, impl });
      const got = await loss.toArray();
      if (reduction === 'none') {
        expect(loss.shape).toEqual([N]);
        expect(maxErr(got, ref.rows)).toBeLessThan(FWD_TOL);
      } else {
        expect(loss.shape).toEqual([]);
        expect(maxErr(got, [reduction === 'mean' ? ref.mean : ref.sum])).toBeLessThan(FWD_TOL);
      }
      loss.dispose();
    }
    x.dispose();
  });

  it('all rows ignored: mean is NaN (as PyTorch), sum is 0; a custom ignore index', async () => {
    const x = tensor(randn(12), [3, 4]);
    expect(await crossEntropy(x, new Int32Array([-100, -100, -100]), { impl }).item()).toBeNaN();
    expect(await crossEntropy(x, new Int32Array([-100, -100, -100]), { impl, reduction: 'sum' }).item()).toBe(0);
    const labels = new Int32Array([0, 2, 3]);
    const ref = crossEntropyReference(await x.toArray(), labels, 4, 0);
    expect(maxErr([await crossEntropy(x, labels, { impl, ignoreIndex: 0 }).item()], [ref.mean])).toBeLessThan(FWD_TOL);
  });

  // Backward bound: d(Σ W ⊙ loss)/dlogits from the GPU rule against central differences (h = 1e-3) of the float64
  // reference: difference error O(h²) ≈ 1e-7 for these O(1) softmax terms; the f32 rule recomputes
  // exp(x − lse) with ~1e-6 relative error, so 2e-5 absolute.
  it.each([['none'], ['mean'], ['sum']] as Array<[Reduction]>)('backward (%s) against finite differences', async (reduction) => {
    const [N, V] = [6, 13];
    const xh = randn(N * V, 3);
    const labels = randLabels(N, V, 0.3);
    labels[0] = 4;
    const wh = reduction === 'none' ? randn(N) : new Float32Array([1.7]);
    const lossOf = (xs: ArrayLike<number>) => {
      const r = crossEntropyReference(xs, labels, V);
      return reduction === 'none' ? r.rows.reduce((a, v, i) => a + v * wh[i]!, 0) : wh[0]! * (reduction === 'mean' ? r.mean : r.sum);
    };
    const x = tensor(xh, [N, V], { requiresGrad: true });
    const loss = crossEntropy(x, idsTensor(labels, [N]), { reduction, impl });
    backward(loss, { gradient: tensor(wh, loss.shape) });
    const got = await x.grad!.toArray();
    const h = 1e-3;
    const fd = centralDiff(Float64Array.from(xh), lossOf, h);
    let e = 0;
    for (let i = 0; i < fd.length; i++) e = Math.max(e, Math.abs(got[i]! - fd[i]!));
    expect(e).toBeLessThan(2e-5);
    // ignored rows get exactly zero
    labels.forEach((l, r) => {
      if (l === -100) expect([...got.slice(r * V, (r + 1) * V)].every((v) => v === 0)).toBe(true);
    });
    x.dispose();
    loss.dispose();
  });
});

describe.each(IMPLS)('crossEntropy with label smoothing (%s layout)', (impl) => {
  it.each([[1, 1], [3, 7], [5, 64], [7, 1031], [2, 32128]])('forward N=%i V=%i, ε = 0.1 and 0.5, against HF\'s LabelSmoother terms', async (N, V) => {
    const xh = randn(N * V, 8);
    const labels = randLabels(N, V);
    if (labels.every((l) => l === -100)) labels[0] = V - 1;
    const x = tensor(xh, [N, V]);
    for (const eps of [0.1, 0.5]) {
      const ref = crossEntropyReference(xh, labels, V, -100, eps);
      const rows = crossEntropy(x, labels, { reduction: 'none', impl, labelSmoothing: eps });
      expect(maxErr(await rows.toArray(), ref.rows)).toBeLessThan(FWD_TOL);
      const mean = crossEntropy(x, labels, { impl, labelSmoothing: eps });
      expect(maxErr([await mean.item()], [ref.mean])).toBeLessThan(FWD_TOL);
      for (const t of [rows, mean]) t.dispose();
    }
    // the smoothed loss differs from the plain one (a row mean that is not the label's logit)
    if (V > 1) expect(Math.abs(crossEntropyReference(xh, labels, V, -100, 0.1).mean - crossEntropyReference(xh, labels, V).mean)).toBeGreaterThan(1e-3);
    x.dispose();
  });

  it('backward (mean, ε = 0.2) against finite differences; ignored rows stay exactly zero', async () => {
    const [N, V] = [6, 13];
    const xh = randn(N * V, 3);
    const labels = randLabels(N, V, 0.3);
    labels[0] = 4;
    labels[1] = -100;
    const x = tensor(xh, [N, V], { requiresGrad: true });
    const loss = crossEntropy(x, idsTensor(labels, [N]), { impl, labelSmoothing: 0.2 });
    backward(loss, { gradient: tensor(new Float32Array([1.7]), []) });
    const got = await x.grad!.toArray();
    const fd = centralDiff(Float64Array.from(xh), (xs) => 1.7 * crossEntropyReference(xs, labels, V, -100, 0.2).mean, 1e-3);
    let e = 0;
    for (let i = 0; i < fd.length; i++) e = Math.max(e, Math.abs(got[i]! - fd[i]!));
    expect(e).toBeLessThan(2e-5);
    expect([...got.slice(V, 2 * V)].every((v) => v === 0)).toBe(true);
    x.dispose();
    loss.dispose();
  });
});

describe('crossEntropy labels and large inputs', () => {
  it('host labels out of range throw before the GPU; GPU-only labels are clamped', async () => {
    const x = tensor(randn(12), [3, 4]);
    expect(() => crossEntropy(x, new Int32Array([0, 4, 1]))).toThrow(/crossEntropy: label 4 at row 1 is out of range \[0, 4\)/);
    expect(() => crossEntropy(x, idsTensor([0, -3, 1], [3]))).toThrow(/label -3 at row 1/);
    expect(() => crossEntropy(x, tensor([0, 1, 2], [3]))).toThrow(/labels must be i32 \[3\]/);
    expect(() => crossEntropy(x.reshape([12]), new Int32Array(12))).toThrow(/logits must be f32 \[N, V\]/);
    const clamped = await crossEntropy(x, tensor(new Int32Array([9, 1, -7]), [3]), { reduction: 'none' }).toArray();
    const ref = crossEntropyReference(await x.toArray(), [3, 1, 0], 4);
    expect(maxErr(clamped, ref.rows)).toBeLessThan(FWD_TOL);
  });

  it('binds logits in row ranges when they exceed the binding limit (forced small limit), forward and backward', async () => {
    const [N, V] = [37, 20];
    const xh = randn(N * V, 4);
    const labels = randLabels(N, V);
    const ref = crossEntropyReference(xh, labels, V);
    const whole = tensor(xh, [N, V], { requiresGrad: true });
    const l0 = crossEntropy(whole, labels);
    backward(l0);
    const g0 = await whole.grad!.toArray();
    setBindingLimitForTests(V * 4 * 5 + 40);
    try {
      const x = tensor(xh, [N, V], { requiresGrad: true });
      const l1 = crossEntropy(x, labels);
      expect(maxErr([await l1.item()], [ref.mean])).toBeLessThan(FWD_TOL);
      backward(l1);
      expect([...(await x.grad!.toArray())]).toEqual([...g0]);
    } finally {
      setBindingLimitForTests(null);
    }
  });

  it('a t5-small vocabulary over maxStorageBufferBindingSize: 1100 x 32128 logits (141 MB)', async () => {
    const [N, V] = [1100, 32128];
    const xh = randn(N * V, 5);
    const labels = randLabels(N, V);
    const x = tensor(xh, [N, V]);
    const got = await crossEntropy(x, labels, { reduction: 'none' }).toArray();
    expect(maxErr(got, crossEntropyReference(xh, labels, V).rows)).toBeLessThan(FWD_TOL);
    x.dispose();
  });
});

describe('ownership', () => {
  it('a step through embedding, rmsNorm, layerNorm, softmax and crossEntropy with backward leaks no buffer', async () => {
    const [V, D, N] = [50, 16, 12];
    const table = tensor(randn(V * D), [V, D], { requiresGrad: true });
    const w = tensor(randn(D), [D], { requiresGrad: true });
    const b = tensor(randn(D), [D], { requiresGrad: true });
    const step = (k: number) => {
      const loss = tidy(() => {
        const ids = Int32Array.from({ length: N }, (_, i) => (i * 7 + k) % V);
        // odd steps: a GPU-only ids tensor (GPU-planned sort); even steps: host ids (CPU-planned)
        const h = embedding(table, k % 2 ? tensor(ids, [N]) : idsTensor(ids, [N]));
        const p = softmax(layerNorm(rmsNorm(h, w, 1e-6), w, b), { mask: tensor(new Float32Array(D), [1, D]) });
        return crossEntropy(p, Int32Array.from({ length: N }, (_, i) => (i % 5 === 0 ? -100 : i % D)));
      });
      backward(loss);
      loss.dispose();
      zeroGrad([table, w, b]);
    };
    for (let k = 0; k < 4; k++) step(k);
    await rt().sync();
    const m0 = memory();
    for (let k = 0; k < 30; k++) step(k);
    await rt().sync();
    const m1 = memory();
    expect(m1.bytesLive).toBe(m0.bytesLive);
    expect(m1.buffersCreated).toBe(m0.buffersCreated);
    for (const t of [table, w, b]) t.dispose();
  });
});
