// gatherRows (a pure copy: exact, bound 0) against its float64 reference on poisoned outputs, its backward
// against central differences, and its index checks.
import { describe, expect, it } from 'vitest';
import { tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { gatherRows, gatherRowsReference } from '../kernels/gather-rows.ts';
import { centralDiff } from './helpers/finite-diff.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';
import { mulberry32, uniformFloats } from './helpers/random-data.ts';

usePoisonedGpu();

/** A one-to-one index of `n` output rows over `rows` input rows, about a third of them -1 (zero rows). */
function randomIndex(rand: () => number, n: number, rows: number): Int32Array {
  const order = Array.from({ length: rows }, (_, i) => i).sort(() => rand() - 0.5);
  let next = 0;
  return Int32Array.from({ length: n }, () => (next < rows && rand() > 0.33 ? order[next++]! : -1));
}

describe('gatherRows', () => {
  it('matches the reference: row sizes 1, 3, 4, 13, 512 (vec4 and scalar), rows taken, skipped and zero', async () => {
    const rand = mulberry32(7);
    for (const [rows, rowShape, n] of [
      [1, [1], 1],
      [7, [3], 11],
      [13, [4], 5],
      [31, [13], 31],
      [17, [8, 64], 23],
      [5, [], 9],
    ] as Array<[number, number[], number]>) {
      const size = rowShape.reduce((a, b) => a * b, 1);
      const data = uniformFloats(rand, rows * size, 2, -1);
      const from = randomIndex(rand, n, rows);
      const x = tensor(data, [rows, ...rowShape]);
      const y = gatherRows(x, from);
      expect(y.shape).toEqual([n, ...rowShape]);
      expect(Array.from(await y.toArray())).toEqual(Array.from(gatherRowsReference(data, size, from)));
      x.dispose();
      y.dispose();
    }
  });

  it('backward: the gather the other way, against central differences', async () => {
    const rand = mulberry32(11);
    const rows = 9;
    const size = 6;
    const from = Int32Array.from([4, -1, 0, 8, -1, 2, 7]); // rows 1, 3, 5 and 6 are not taken: zero gradient
    const data = uniformFloats(rand, rows * size, 2, -1);
    const x = tensor(data, [rows, 2, 3], { requiresGrad: true });
    const y = gatherRows(x, from);
    const w = uniformFloats(rand, y.size, 2, -1);
    backward(y, { gradient: tensor(w, y.shape) });
    const base = Float64Array.from(data);
    const fd = centralDiff(base, (d) => gatherRowsReference(d, size, from).reduce((a, v, i) => a + v * w[i]!, 0), 1e-3);
    const g = await x.grad!.toArray();
    for (let i = 0; i < fd.length; i++) expect(Math.abs(g[i]! - fd[i]!), `d/dx at ${i}`).toBeLessThanOrEqual(1e-6);
    x.dispose();
    y.dispose();
  });

  it('names the op and the row for an index out of range or a row taken twice', () => {
    const x = tensor(new Float32Array(6), [3, 2]);
    expect(() => gatherRows(x, Int32Array.from([0, 3]))).toThrow(/gatherRows: index 3 at output row 1 is out of range \[-1, 3\)/);
    expect(() => gatherRows(x, Int32Array.from([-2]))).toThrow(/gatherRows: index -2 at output row 0/);
    expect(() => gatherRows(x, Int32Array.from([2, -1, 2]))).toThrow(/gatherRows: input row 2 is taken by output rows 0 and 2/);
    x.dispose();
  });
});
