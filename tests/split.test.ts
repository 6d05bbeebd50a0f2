import { describe, expect, it } from 'vitest';
import { DataError } from '../util/data-error.ts';
import { Mt19937, numpyPermutation, splitIndices, splitRows } from '../train/split.ts';
import { mulberry32 } from '../util/mulberry32.ts';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('generators', () => {
  it('mulberry32 gives the reference sequence', () => {
    const next = mulberry32(0);
    // 0.26642920868471265 is the well-known first mulberry32(0) draw as a float.
    expect([next(), next(), next()]).toEqual([1144304738, 1416247, 958946056]);
    expect(1144304738 / 2 ** 32).toBe(0.26642920868471265);
  });

  it('MT19937 gives the reference sequence for seed 5489', () => {
    const mt = new Mt19937(5489);
    expect([mt.nextUint32(), mt.nextUint32(), mt.nextUint32()]).toEqual([3499211612, 581869302, 3890346734]);
  });

  it('numpyPermutation equals numpy.random.RandomState(seed).permutation(n)', () => {
    // Values printed by numpy 2.4.
    expect(numpyPermutation(10, 101)).toEqual([8, 2, 0, 4, 9, 3, 5, 7, 6, 1]);
    expect(numpyPermutation(7, 4294967295)).toEqual([1, 5, 0, 6, 4, 2, 3]);
    expect(numpyPermutation(50, 101)).toEqual([
      37, 14, 21, 32, 22, 1, 26, 46, 42, 47, 16, 24, 7, 45, 18, 3, 41, 30, 15, 20, 43, 38, 44, 39, 10, 49, 25, 33, 36, 2, 27, 34, 35, 8,
      19, 29, 12, 5, 0, 28, 4, 40, 13, 9, 48, 23, 6, 17, 11, 31,
    ]);
    expect(numpyPermutation(10000, 101).slice(0, 10)).toEqual([6676, 6421, 9834, 8492, 9982, 8844, 7247, 5862, 3662, 3457]);
    expect(numpyPermutation(65537, 3).slice(0, 5)).toEqual([43125, 60809, 43113, 18997, 16118]);
    expect(numpyPermutation(1, 5)).toEqual([0]);
    expect(numpyPermutation(0, 5)).toEqual([]);
  });
});

describe('splitRows', () => {
  it('splits 80/20 into disjoint parts that cover every row', () => {
    const rows = range(1000).map((i) => ({ id: i }));
    const { train, valid } = splitRows(rows);
    expect(valid).toHaveLength(200);
    expect(train).toHaveLength(800);
    const ids = [...train, ...valid].map((r) => r.id).sort((a, b) => a - b);
    expect(ids).toEqual(range(1000));
    // Shuffled, not the first 800 rows.
    expect(train.slice(0, 20).map((r) => r.id)).not.toEqual(range(20));
  });

  it('is stable for the same seed and input, and changes with the seed', () => {
    const rows = range(500).map(String);
    expect(splitRows(rows, { seed: 101 })).toEqual(splitRows(rows, { seed: 101 }));
    expect(splitRows(rows, { seed: 101 }).valid).not.toEqual(splitRows(rows, { seed: 102 }).valid);
    // Pinned so that a change to the generator or the shuffle cannot go unnoticed.
    expect(splitIndices(10, { seed: 101 })).toEqual(splitIndices(10));
    expect(splitIndices(10).valid.length).toBe(2);
  });

  it("method 'sklearn' reproduces train_test_split(test_size=0.2, random_state=101)", () => {
    expect(splitIndices(10, { method: 'sklearn' })).toEqual({ valid: [8, 2], train: [0, 4, 9, 3, 5, 7, 6, 1] });
    const { train, valid } = splitRows(range(50).map((i) => `row${i}`), { method: 'sklearn', seed: 101 });
    expect(valid).toEqual(['row37', 'row14', 'row21', 'row32', 'row22', 'row1', 'row26', 'row46', 'row42', 'row47']);
    expect(train[0]).toBe('row16');
    expect(train).toHaveLength(40);
  });

  it('sizes the validation part as scikit-learn does: ceil(fraction * n)', () => {
    expect(splitIndices(10000).valid).toHaveLength(2000);
    expect(splitIndices(5).valid).toHaveLength(1);
    expect(splitIndices(3).valid).toHaveLength(1);
    expect(splitIndices(15).valid).toHaveLength(3);
    // Rounded up, never down: 0.3 * 7 = 2.1 holds out 3, 0.25 * 7 = 1.75 holds out 2.
    expect(splitIndices(7, { validFraction: 0.3 }).valid).toHaveLength(3);
    expect(splitIndices(7, { validFraction: 0.25 }).valid).toHaveLength(2);
    expect(splitIndices(7, { validFraction: 0 })).toMatchObject({ valid: [] });
    expect(splitIndices(7, { validFraction: 0 }).train).toHaveLength(7);
  });

  it('rejects bad options and too few rows with a DataError', () => {
    expect(() => splitIndices(1)).toThrow('cannot split 1 row with validFraction 0.2: no rows would be left for training');
    expect(() => splitIndices(0)).toThrow(DataError);
    expect(() => splitIndices(10, { validFraction: 1 })).toThrow('validFraction must be in [0, 1) (got 1)');
    expect(() => splitIndices(10, { validFraction: Number.NaN })).toThrow(DataError);
    expect(() => splitIndices(10, { seed: -1 })).toThrow('seed must be an integer in [0, 2^32) (got -1)');
    expect(() => splitIndices(10, { seed: 1.5 })).toThrow(DataError);
  });
});
