// Philox-4x32-10 on the GPU: the CPU reference against Random123's known-answer vectors, the GPU against the
// CPU bit for bit, independence from how a stream is split into draws, moments within a few standard
// errors, and dropout (mask, scaling, backward with the regenerated mask).
import { describe, expect, it } from 'vitest';
import { tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import {
  dropout, dropoutRef, normalRef, philox4x32, philoxStreamRef, randomBits, randomNormal, randomUniform, uniformRef,
} from '../kernels/random.ts';
import { usePoisonedGpu } from './helpers/gpu-setup.ts';

usePoisonedGpu();

const u32 = (a: Int32Array | Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const hex = (a: Uint32Array) => [...a].map((v) => v.toString(16).padStart(8, '0')).join(' ');

function expectBitsEqual(got: Uint32Array, want: Uint32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) throw new Error(`${what}: ${got[i]} != ${want[i]} at ${i}`);
}

function moments(a: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  const mean = s / a.length;
  let v = 0;
  for (let i = 0; i < a.length; i++) v += (a[i]! - mean) ** 2;
  return { mean, variance: v / (a.length - 1) };
}

describe('Philox-4x32-10', () => {
  it('CPU reference matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]))).toBe(
      '408f276d 41c83b0e a20bc7c6 6d5451fd',
    );
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it('GPU words equal the CPU reference bit for bit (unaligned offsets, 64-bit counters and keys)', async () => {
    const cases: Array<[number, number, number]> = [
      [0, 0, 1],
      [7, 0, 1031],
      [123456789, 3, 4097],
      [2 ** 40 + 17, 2 ** 34 + 1, 999], // key and counter above 32 bits
      [5, 4 * (2 ** 32 - 1) - 6, 40], // counter low word wraps inside the draw
    ];
    for (const [seed, offset, n] of cases) {
      const t = randomBits([n], { seed, offset });
      expectBitsEqual(u32((await t.toArray()) as Int32Array), philoxStreamRef(seed, offset, n), `bits seed ${seed} offset ${offset}`);
      t.dispose();
    }
  });

  it('a stream does not depend on how it is split into draws', async () => {
    const n = 1000;
    for (const k of [1, 3, 4, 501]) {
      for (const draw of ['bits', 'uniform', 'normal'] as const) {
        const f = (len: number, offset: number) =>
          draw === 'bits' ? randomBits([len], { seed: 9, offset }) : draw === 'uniform' ? randomUniform([len], { seed: 9, offset }) : randomNormal([len], { seed: 9, offset });
        const whole = f(n, 0);
        const a = f(k, 0);
        const b = f(n - k, k);
        const w = u32(await whole.toArray());
        const joined = new Uint32Array(n);
        joined.set(u32(await a.toArray()), 0);
        joined.set(u32(await b.toArray()), k);
        expectBitsEqual(joined, w, `${draw} split at ${k}`);
        [whole, a, b].forEach((t) => t.dispose());
      }
    }
    // and not on the shape
    const x = randomNormal([10, 10], { seed: 3, offset: 11 });
    const y = randomNormal([100], { seed: 3, offset: 11 });
    expectBitsEqual(u32(await x.toArray()), u32(await y.toArray()), 'shape');
    [x, y].forEach((t) => t.dispose());
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const a = await randomBits([64], { seed: 1 }).toArray();
    const b = await randomBits([64], { seed: 1 }).toArray();
    const c = await randomBits([64], { seed: 2 }).toArray();
    expect([...a]).toEqual([...b]);
    expect([...a].filter((v, i) => v === c[i]).length).toBe(0);
  });
});

describe('uniform and normal', () => {
  const N = 1 << 17;

  it('uniform [0, 1) equals the CPU reference exactly and has the right moments', async () => {
    const t = randomUniform([N], { seed: 42, offset: 5 });
    const got = (await t.toArray()) as Float32Array;
    const want = uniformRef(42, 5, N);
    for (let i = 0; i < N; i++) if (got[i] !== want[i]) throw new Error(`uniform ${got[i]} != ${want[i]} at ${i}`);
    // mean 1/2 with standard error sqrt(1/12/N) = 8e-4; variance 1/12 with standard error
    // sqrt((1/80 - 1/144)/N) = 2.1e-4; 5 standard errors: a false failure about once in 1.7 million runs
    const m = moments(got);
    expect(Math.abs(m.mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / N));
    expect(Math.abs(m.variance - 1 / 12)).toBeLessThan(5 * Math.sqrt((1 / 80 - 1 / 144) / N));
    expect(got.reduce((a, v) => Math.min(a, v), Infinity)).toBeGreaterThanOrEqual(0);
    expect(got.reduce((a, v) => Math.max(a, v), -Infinity)).toBeLessThan(1);
    t.dispose();
    const s = randomUniform([1000], { seed: 1, low: -2, high: 3 });
    const sv = await s.toArray();
    const sw = uniformRef(1, 0, 1000, -2, 3);
    // low + (high - low) * u in f32: two roundings of values below 3
    for (let i = 0; i < 1000; i++) expect(Math.abs(sv[i]! - sw[i]!)).toBeLessThan(3 * 2 ** -22);
    s.dispose();
  });

  it('normal matches the CPU reference and has the right moments', async () => {
    const t = randomNormal([N], { seed: 7, offset: 2, mean: 1.5, std: 2 });
    const got = await t.toArray();
    const want = normalRef(7, 2, N, 1.5, 2);
    // WGSL's log is only absolutely accurate near 1 (2^-21), so r = sqrt(-2 log u1) can be off by
    // sqrt(2 * 2^-21) ~ 1e-3 when u1 is close to 1; times std 2, plus cos/sin error: bound 3e-3
    for (let i = 0; i < N; i++) if (!(Math.abs(got[i]! - want[i]!) < 3e-3)) throw new Error(`normal ${got[i]} vs ${want[i]} at ${i}`);
    // mean: standard error std/sqrt(N) = 5.5e-3; variance std^2 = 4 with standard error std^2 sqrt(2/N) = 1.6e-2
    const m = moments(got);
    expect(Math.abs(m.mean - 1.5)).toBeLessThan(5 * 2 / Math.sqrt(N));
    expect(Math.abs(m.variance - 4)).toBeLessThan(5 * 4 * Math.sqrt(2 / N));
    // adjacent elements (a cos/sin pair of one Box-Muller draw) are uncorrelated: |r| < 5 / sqrt(N/2)
    let c = 0;
    for (let i = 0; i + 1 < N; i += 2) c += (got[i]! - 1.5) * (got[i + 1]! - 1.5);
    expect(Math.abs(c / (N / 2) / 4)).toBeLessThan(5 / Math.sqrt(N / 2));
    t.dispose();
  });
});

describe('dropout', () => {
  it('zeroes with probability p, scales survivors by 1/(1-p), matches the reference', async () => {
    const n = 100003;
    const xd = Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
    const x = tensor(xd, [n]);
    for (const p of [0.1, 0.5]) {
      const y = dropout(x, p, { seed: 11, offset: 1000 });
      const got = await y.toArray();
      const want = dropoutRef(xd, p, 11, 1000);
      let kept = 0;
      for (let i = 0; i < n; i++) {
        // x * f32(1/(1-p)): exact for p = 0.5, within 2 roundings (2.4e-7 relative) otherwise
        if (!(Math.abs(got[i]! - want[i]!) <= 2.4e-7 * Math.abs(want[i]!))) throw new Error(`dropout p=${p}: ${got[i]} vs ${want[i]} at ${i}`);
        if (want[i] !== 0) kept++;
      }
      // kept fraction: binomial standard error sqrt(p(1-p)/n), 5 of them
      expect(Math.abs(kept / n - (1 - p))).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n));
      y.dispose();
    }
    const y0 = dropout(x, 0, { seed: 1 });
    expect([...(await y0.toArray())]).toEqual([...xd]);
    const y1 = dropout(x, 1, { seed: 1 });
    expect((await y1.toArray()).every((v) => v === 0)).toBe(true);
    [x, y0, y1].forEach((t) => t.dispose());
  });

  it('backward applies the same mask, regenerated from (seed, offset)', async () => {
    const n = 1001;
    const xd = Float32Array.from({ length: n }, () => Math.random() + 0.5);
    const gd = Float32Array.from({ length: n }, () => Math.random() - 0.5);
    const x = tensor(xd, [7, 143], { requiresGrad: true });
    const y = dropout(x, 0.5, { seed: 5, offset: 77 });
    backward(y, { gradient: tensor(gd, [7, 143]) });
    const g = await x.grad!.toArray();
    const ys = await y.toArray();
    for (let i = 0; i < n; i++) {
      // d y_i / d x_i = 2 where kept (y_i != 0 as x > 0), else 0: exact
      expect(g[i]).toBe(ys[i] !== 0 ? gd[i]! * 2 : 0);
    }
    [x, y].forEach((t) => t.dispose());
  });

  it('rejects bad arguments', () => {
    const x = tensor([1, 2], [2]);
    expect(() => dropout(x, 1.5, { seed: 1 })).toThrow(/dropout: p must be in \[0, 1\], got 1.5/);
    expect(() => randomUniform([2], { seed: -1 })).toThrow(/randomUniform: seed must be an integer/);
    expect(() => randomNormal([2], { seed: 1, offset: 0.5 })).toThrow(/randomNormal: offset must be an integer/);
    expect(() => randomUniform([2], { seed: 1, low: 2, high: 1 })).toThrow(/randomUniform: need finite low <= high/);
    expect(() => dropout(tensor(new Int32Array([1]), [1]), 0.5, { seed: 1 })).toThrow(/dropout: input is .*i32/);
    x.dispose();
  });
});
