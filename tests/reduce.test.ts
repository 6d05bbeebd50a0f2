// sum / mean / max / sumTo against the float64 reference; backward against central finite differences.
import { describe, expect, it } from 'vitest';
import { sizeOf, tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { max, maxWithIndex, mean, reduceRef, REDUCE_TUNING, setSubgroupReduction, sum, sumTo } from '../kernels/reduce.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';

usePoisonedGpu();

type Shape = number[];
const ints = (n: number, k = 8) => Float32Array.from({ length: n }, () => Math.floor(Math.random() * (2 * k + 1)) - k);
const floats = (n: number) => Float32Array.from({ length: n }, () => 2 * Math.random() - 1);

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number) => number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    if (!(e <= tol(i))) throw new Error(`${what}: |${got[i]} - ${want[i]}| > ${tol(i)} at ${i}`);
  }
}

// Shapes and axes that reach every kernel path: full reductions (row kernel split into chunks for 100003),
// short rows with and without vec4, long rows (row kernel; 32128 is T5's vocabulary, 4099 a prime),
// columns with vec4 (inner % 4 == 0) and without, chunked when there are few outputs, non-adjacent axes
// (two passes), keepDims.
const CASES: Array<[Shape, number[] | null, boolean]> = [
  [[1], null, false],
  [[7], null, false],
  [[100003], null, false],
  [[5, 3], [0], false],
  [[5, 3], [-1], true],
  [[300, 6], [1], false],
  [[300, 8], [1], false],
  [[3, 32128], [-1], false],
  [[64, 4099], [1], true],
  [[5000, 12], [0], false],
  [[2000, 7], [0], false],
  [[3, 4, 5], [0, 2], false],
  [[2, 3, 4, 5], [1, 2], true],
  [[4, 1, 6], [1], false],
];

describe('sum and mean', () => {
  // the workgroup-per-row kernel runs on GPUs only; force it here, with subgroups (where offered) and without
  for (const sg of [null, false]) it(`the workgroup-per-row kernel (${sg === false ? 'workgroup-memory tree' : 'subgroups if offered'}) is exact`, async () => {
    setSubgroupReduction(sg);
    REDUCE_TUNING.rowKernelMin = 2048;
    try {
      for (const shape of [[3, 32128], [64, 4099], [5, 2048]]) {
        const data = ints(sizeOf(shape));
        const x = tensor(data, shape);
        const s = sum(x, -1);
        expectClose(await s.toArray(), reduceRef('sum', data, shape, [1]).data, () => 0, `tree sum [${shape}]`);
        const { values, indices } = maxWithIndex(x, 1);
        const ref = reduceRef('max', data, shape, [1]);
        expectClose(await values.toArray(), ref.data, () => 0, `tree max [${shape}]`);
        expectClose(await indices.toArray(), ref.argmax!, () => 0, `tree argmax [${shape}]`);
        [x, s, values, indices].forEach((t) => t.dispose());
      }
    } finally {
      setSubgroupReduction(null);
      REDUCE_TUNING.rowKernelMin = null;
    }
  });

  it('are exact on integer data at every kernel path', async () => {
    // integers up to 8 in magnitude: every partial sum (< 2^24) is exact in f32 in any order, so a skipped or
    // doubled element cannot hide in rounding: the bound is 0 for sum; mean adds the roundings of 1/R and of
    // the product (2^-23 relative).
    for (const [shape, axes, keep] of CASES) {
      const data = ints(sizeOf(shape));
      const x = tensor(data, shape);
      const s = sum(x, axes, keep);
      const ref = reduceRef('sum', data, shape, axes, keep);
      expect(s.shape, `sum [${shape}] ${axes}`).toEqual(ref.shape);
      expectClose(await s.toArray(), ref.data, () => 0, `sum [${shape}] axes ${axes}`);
      const m = mean(x, axes, keep);
      const mref = reduceRef('mean', data, shape, axes, keep);
      expectClose(await m.toArray(), mref.data, (i) => 2.5e-7 * Math.abs(mref.data[i]!) + 1e-30, `mean [${shape}] axes ${axes}`);
      [x, s, m].forEach((t) => t.dispose());
    }
  });

  it('is accurate on random floats over long rows', async () => {
    // |error| <= 1e-6 * sum|x| (16 ulp of the absolute sum): the kernels sum runs of at most R/256 (rows) or
    // 64..R (columns) and then combine partials, far below the worst case (R-1)u*sum|x|
    for (const [shape, axes] of [[[4, 32128], [1]], [[20000, 3], [0]], [[100003], null]] as Array<[Shape, number[] | null]>) {
      const data = floats(sizeOf(shape));
      const x = tensor(data, shape);
      const s = sum(x, axes);
      const ref = reduceRef('sum', data, shape, axes);
      const abs = reduceRef('sum', data.map(Math.abs), shape, axes);
      expectClose(await s.toArray(), ref.data, (i) => 1e-6 * abs.data[i]!, `sum floats [${shape}]`);
      [x, s].forEach((t) => t.dispose());
    }
  });

  it('sum of an empty axis is 0 and sumTo reduces broadcast axes', async () => {
    const e = tensor([], [3, 0]);
    const s = sum(e, 1);
    expect([...(await s.toArray())]).toEqual([0, 0, 0]);
    const data = ints(2 * 3 * 4);
    const x = tensor(data, [2, 3, 4]);
    expect(() => sumTo(x, [2, 1, 1, 1])).toThrow(/sumTo: \[2, 1, 1, 1\] does not broadcast to .*\[2, 3, 4\]/);
    const t = sumTo(x, [3, 1]);
    expect(t.shape).toEqual([3, 1]);
    expectClose(await t.toArray(), reduceRef('sum', data, [2, 3, 4], [0, 2]).data, () => 0, 'sumTo [3,1]');
    [e, s, x, t].forEach((v) => v.dispose());
  });
});

describe('max', () => {
  it('matches values and first-argmax on ties at every path', async () => {
    // small integers make ties common; PyTorch returns (and differentiates) the first maximal index
    const cases: Array<[Shape, number | null]> = [[[5, 7], 1], [[3, 5000], -1], [[6, 9, 4], 1], [[11, 13], 0], [[1031], null], [[1], 0]];
    for (const [shape, axis] of cases) {
      const data = ints(sizeOf(shape), 3);
      const x = tensor(data, shape);
      const { values, indices } = maxWithIndex(x, axis);
      const ref = reduceRef('max', data, shape, axis === null ? null : [axis]);
      expect(values.shape).toEqual(ref.shape);
      expectClose(await values.toArray(), ref.data, () => 0, `max [${shape}] axis ${axis}`);
      expectClose(await indices.toArray(), ref.argmax!, () => 0, `argmax [${shape}] axis ${axis}`);
      [x, values, indices].forEach((t) => t.dispose());
    }
  });

  it('sends the gradient to the first maximum', async () => {
    const x = tensor([1, 3, 3, 2, 5, 5, 5, 0], [2, 4], { requiresGrad: true });
    const m = max(x, 1);
    backward(m, { gradient: tensor([10, 20], [2]) });
    expect([...(await x.grad!.toArray())]).toEqual([0, 10, 0, 0, 20, 0, 0, 0]);
    [x, m].forEach((t) => t.dispose());
  });
});

describe('reduction backward vs finite differences', () => {
  // loss = sum(f(x) * W): sum and mean are linear, so central differences are exact up to float64 rounding
  // (~1e-12 / h); max is linear near an input with distinct values. Bound 1e-5 absolute (gradients are O(1)).
  const h = 1e-3;
  const fdCheck = async (kind: 'sum' | 'mean' | 'max', shape: Shape, axes: number[] | null, keep: boolean) => {
    // distinct values so max is differentiable
    const data = Float32Array.from({ length: sizeOf(shape) }, (_, i) => i * 0.25 + Math.random() * 0.1);
    data.sort(() => Math.random() - 0.5);
    const x = tensor(data, shape, { requiresGrad: true });
    const y = kind === 'sum' ? sum(x, axes, keep) : kind === 'mean' ? mean(x, axes, keep) : max(x, axes?.[0] ?? null, keep);
    const w = floats(y.size);
    backward(y, { gradient: tensor(w, y.shape) });
    const loss = (d: Float64Array) => reduceRef(kind, d, shape, axes, keep).data.reduce((a, v, i) => a + v * w[i]!, 0);
    const fd = centralDiff(Float64Array.from(data), loss, h);
    expect(x.grad!.shape).toEqual(shape);
    expectClose(await x.grad!.toArray(), fd, () => 1e-5, `${kind} backward [${shape}] axes ${axes}`);
    [x, y].forEach((t) => t.dispose());
  };
  it('sum', async () => {
    await fdCheck('sum', [3, 4, 5], [0, 2], false);
    await fdCheck('sum', [4, 6], null, false);
    await fdCheck('sum', [2, 7], [1], true);
  });
  it('mean', async () => {
    await fdCheck('mean', [3, 4, 5], [1], false);
    await fdCheck('mean', [5, 3], null, true);
  });
  it('max', async () => {
    await fdCheck('max', [4, 6], [1], false);
    await fdCheck('max', [3, 5, 2], [1], true);
    await fdCheck('max', [17], null, false);
  });
});

describe('reduction argument checks', () => {
  it('names the op and the shapes', () => {
    const x = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(() => sum(x, 2)).toThrow(/sum: axis 2 out of range for .*\[2, 3\]/);
    expect(() => mean(x, [1, -1])).toThrow(/mean: repeated axis/);
    expect(() => sum(tensor(new Int32Array([1]), [1]))).toThrow(/sum: input is .*i32/);
    expect(() => sumTo(x, [4])).toThrow(/sumTo: shapes \[4\] and \[2, 3\] do not broadcast/);
    expect(() => max(tensor([], [0]))).toThrow(/max: empty input/);
    x.dispose();
  });
});
