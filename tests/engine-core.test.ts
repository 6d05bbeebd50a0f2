import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { empty, memory, ones, setPoison, tensor, zeros } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { backward, noGrad, zeroGrad } from '../engine/autograd.ts';
import { add } from '../kernels/elementwise.ts';
import { rt } from '../engine/runtime.ts';

beforeAll(async () => {
  await initGpu();
});

describe('tensors', () => {
  it('round-trips data and fills', async () => {
    const t = tensor([1, 2, 3, 4, 5], [5]);
    expect([...(await t.toArray())]).toEqual([1, 2, 3, 4, 5]);
    expect([...(await zeros([3]).toArray())]).toEqual([0, 0, 0]);
    expect([...(await ones([2], 'i32').toArray())]).toEqual([1, 1]);
    const i = tensor(new Int32Array([-7, 9]), [2]);
    expect(i.dtype).toBe('i32');
    expect([...(await i.toArray())]).toEqual([-7, 9]);
  });

  it('poisons new tensors with NaN when asked', async () => {
    setPoison(true);
    const t = empty([7]);
    setPoison(false);
    expect([...(await t.toArray())].every(Number.isNaN)).toBe(true);
  });

  it('rejects data that does not fill the shape and use after dispose', () => {
    expect(() => tensor([1, 2], [3])).toThrow(/2 values do not fill shape \[3\]/);
    const t = tensor([1], [1]);
    t.dispose();
    expect(() => t.read()).toThrow(/disposed tensor/);
  });

  it('reshape shares storage and infers -1', async () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const r = t.reshape([3, -1]);
    expect(r.shape).toEqual([3, 2]);
    t.dispose();
    expect([...(await r.toArray())]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => r.reshape([4, 2])).toThrow(/cannot view/);
  });
});

describe('tidy', () => {
  it('frees everything but the result', async () => {
    const before = memory().bytesLive;
    const kept = tidy(() => {
      const a = tensor([1, 2], [2]);
      const b = tensor([3, 4], [2]);
      return add(a, b);
    });
    expect([...(await kept.toArray())]).toEqual([4, 6]);
    kept.dispose();
    expect(memory().bytesLive).toBe(before);
  });
});

describe('autograd', () => {
  it('accumulates through shared inputs and across backward calls', async () => {
    const x = tensor([1, 2, 3], [3], { requiresGrad: true });
    const y = tidy(() => add(add(x, x), x));
    backward(y);
    expect([...(await x.grad!.toArray())]).toEqual([3, 3, 3]);
    y.dispose();
    const y2 = add(x, x);
    backward(y2);
    expect([...(await x.grad!.toArray())]).toEqual([5, 5, 5]);
    y2.dispose();
    zeroGrad([x]);
    expect(x.grad).toBeNull();
    const y3 = noGrad(() => add(x, x));
    expect(y3.node).toBeNull();
    expect(() => backward(y3)).toThrow(/does not depend/);
    y3.dispose();
    x.dispose();
  });

  it('refuses a second backward over a freed graph unless retained', async () => {
    const x = tensor([1], [1], { requiresGrad: true });
    const y = add(x, x);
    backward(y, { retainGraph: true });
    backward(y);
    expect([...(await x.grad!.toArray())]).toEqual([4]);
    y.dispose();
    x.dispose();
  });

  it('does not grow memory over many steps', async () => {
    const x = tensor([1, 2, 3], [3], { requiresGrad: true });
    const step = () => {
      const y = tidy(() => add(add(x, x), x));
      backward(y);
      y.dispose();
      zeroGrad([x]);
    };
    for (let i = 0; i < 5; i++) step();
    await rt().sync();
    const m0 = memory();
    for (let i = 0; i < 200; i++) step();
    await rt().sync();
    const m1 = memory();
    expect(m1.bytesLive).toBe(m0.bytesLive);
    expect(m1.buffersCreated).toBe(m0.buffersCreated);
    x.dispose();
  });
});
