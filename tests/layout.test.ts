// permute / transpose / slice / concat / contiguous: pure copies, so every comparison is exact (bound 0),
// forward against the reference and backward against central differences (linear ops: exact in float64 up
// to ~1e-12 / h; bound 1e-6).
import { describe, expect, it } from 'vitest';
import { sizeOf, tensor, type Tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { concat, concatRef, contiguous, permute, permuteRef, slice, sliceRef, transpose } from '../kernels/layout.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';

usePoisonedGpu();

type Shape = number[];
const ints = (n: number) => Float32Array.from({ length: n }, () => Math.floor(Math.random() * 2001) - 1000);

async function expectExact(t: Tensor, want: ArrayLike<number>, what: string): Promise<void> {
  const got = await t.toArray();
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) throw new Error(`${what}: got ${got[i]} want ${want[i]} at ${i}`);
}

describe('permute and transpose', () => {
  it('match the reference (vec4 runs, scalar path, T5 head split and merge)', async () => {
    const cases: Array<[Shape, number[]]> = [
      [[2, 7, 3, 8], [0, 2, 1, 3]], // [B, L, H, D] -> [B, H, L, D], D % 4 == 0: vec4
      [[2, 3, 7, 8], [0, 2, 1, 3]], // and back
      [[2, 5, 3, 5], [0, 2, 1, 3]], // D = 5: scalar path
      [[13, 7], [1, 0]],
      [[2, 3, 4], [2, 0, 1]],
      [[1, 5, 1, 3], [3, 2, 1, 0]],
      [[11], [0]],
    ];
    for (const [shape, dims] of cases) {
      const data = ints(sizeOf(shape));
      const x = tensor(data, shape);
      const y = permute(x, dims);
      expect(y.shape).toEqual(dims.map((d) => shape[d]));
      await expectExact(y, permuteRef(data, shape, dims), `permute [${shape}] by [${dims}]`);
      [x, y].forEach((t) => t.dispose());
    }
    const data = ints(24);
    const x = tensor(data, [2, 3, 4]);
    const t = transpose(x, -1, 0);
    expect(t.shape).toEqual([4, 3, 2]);
    await expectExact(t, permuteRef(data, [2, 3, 4], [2, 1, 0]), 'transpose');
    const xi = tensor(Int32Array.from(data), [2, 3, 4]);
    const ti = permute(xi, [1, 0, 2]);
    expect(ti.dtype).toBe('i32');
    await expectExact(ti, permuteRef(data, [2, 3, 4], [1, 0, 2]), 'permute i32');
    [x, t, xi, ti].forEach((v) => v.dispose());
  });
});

describe('slice and concat', () => {
  it('slice matches the reference on every axis', async () => {
    const shape = [3, 10, 6];
    const data = ints(sizeOf(shape));
    const x = tensor(data, shape);
    const cases: Array<[number, number, number]> = [[0, 1, 3], [1, 2, 9], [2, 1, 5], [-1, 0, 6], [1, 4, 4], [2, 0, 4]];
    for (const [axis, s, e] of cases) {
      const y = slice(x, axis, s, e);
      const ax = axis < 0 ? axis + 3 : axis;
      await expectExact(y, sliceRef(data, shape, ax, s, e), `slice axis ${axis} [${s}, ${e})`);
      y.dispose();
    }
    x.dispose();
  });

  it('concat matches the reference, including a KV-cache append along the length axis', async () => {
    const cases: Array<[Shape[], number]> = [
      [[[2, 3], [4, 3]], 0],
      [[[2, 3, 5, 8], [2, 3, 1, 8]], 2], // [B, H, L, D] cache + one new position
      [[[3, 1], [3, 5], [3, 2]], 1],
      [[[2, 2, 3], [2, 2, 3]], -1],
    ];
    for (const [shapes, axis] of cases) {
      const datas = shapes.map((s) => ints(sizeOf(s)));
      const xs = datas.map((d, k) => tensor(d, shapes[k]!));
      const y = concat(xs, axis);
      const ax = axis < 0 ? axis + shapes[0]!.length : axis;
      await expectExact(y, concatRef(datas.map((d, k) => ({ data: d, shape: shapes[k]! })), ax), `concat axis ${axis}`);
      [...xs, y].forEach((t) => t.dispose());
    }
  });

  it('contiguous copies', async () => {
    const data = ints(10);
    const x = tensor(data, [2, 5]);
    const y = contiguous(x);
    x.dispose();
    await expectExact(y, data, 'contiguous');
    y.dispose();
  });
});

describe('layout backward vs finite differences', () => {
  const h = 1e-3;
  async function fdCheck(what: string, shapes: Shape[], f: (xs: Tensor[]) => Tensor, ref: (ds: Float64Array[]) => Float64Array): Promise<void> {
    const datas = shapes.map((s) => Float32Array.from({ length: sizeOf(s) }, () => Math.random() * 2 - 1));
    const xs = datas.map((d, k) => tensor(d, shapes[k]!, { requiresGrad: true }));
    const y = f(xs);
    const w = Float32Array.from({ length: y.size }, () => Math.random() * 2 - 1);
    backward(y, { gradient: tensor(w, y.shape) });
    const base = datas.map((d) => Float64Array.from(d));
    const loss = () => ref(base).reduce((a, v, i) => a + v * w[i]!, 0);
    for (let k = 0; k < xs.length; k++) {
      const fd = centralDiff(base[k]!, loss, h);
      const g = await xs[k]!.grad!.toArray();
      for (let i = 0; i < fd.length; i++) {
        if (!(Math.abs(g[i]! - fd[i]!) <= 1e-6)) throw new Error(`${what} d/dx${k}: ${g[i]} vs ${fd[i]} at ${i}`);
      }
    }
    [...xs, y].forEach((t) => t.dispose());
  }

  it('permute, slice, concat, contiguous', async () => {
    await fdCheck('permute', [[2, 3, 4]], ([x]) => permute(x!, [1, 2, 0]), ([d]) => permuteRef(d!, [2, 3, 4], [1, 2, 0]));
    await fdCheck('slice', [[3, 5, 2]], ([x]) => slice(x!, 1, 1, 4), ([d]) => sliceRef(d!, [3, 5, 2], 1, 1, 4));
    await fdCheck(
      'concat',
      [[2, 3, 2], [2, 1, 2]],
      (xs) => concat(xs, 1),
      (ds) => concatRef(ds.map((d, k) => ({ data: d, shape: k === 0 ? [2, 3, 2] : [2, 1, 2] })), 1),
    );
    await fdCheck('contiguous', [[5]], ([x]) => contiguous(x!), ([d]) => Float64Array.from(d!));
  });
});

describe('layout argument checks', () => {
  it('names the op and the shapes', () => {
    const x = tensor(ints(6), [2, 3]);
    expect(() => permute(x, [0, 0])).toThrow(/permute: \[0, 0\] is not a permutation of the 2 axes of .*\[2, 3\]/);
    expect(() => permute(x, [0, 1, 2])).toThrow(/permute: axis 2 out of range/);
    expect(() => slice(x, 1, 2, 5)).toThrow(/slice: \[2, 5\) is out of range for axis 1 of .*\[2, 3\]/);
    expect(() => concat([x, tensor(ints(4), [2, 2])], 0)).toThrow(/concat: .*\[2, 3\].*\[2, 2\] do not match outside axis 0/);
    expect(() => concat([], 0)).toThrow(/concat: no tensors/);
    expect(() => transpose(x, 0, 3)).toThrow(/transpose: axis 3 out of range/);
    x.dispose();
  });
});
