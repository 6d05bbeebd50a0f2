// The pool gives memory back: emptyCache() after a phase, and a limit on pooled bytes past which the buffers
// freed longest ago go back. Buffers given back while recorded commands still name them are destroyed only after
// the submit, so results stay right (a destroyed buffer in a submit is a WebGPU validation error).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { emptyCache, memory, setPoolLimit, tensor, zeros } from '../engine/tensor.ts';
import { add } from '../kernels/elementwise.ts';
import { sizeClass } from '../engine/buffer-pool.ts';

const KIB = 1024;

beforeAll(async () => {
  await initGpu();
});
afterEach(() => setPoolLimit(Infinity));

describe('buffer pool', () => {
  it('emptyCache gives every free buffer back, and later requests create new ones', () => {
    const ts = [1, 2, 3].map(() => zeros([37 * KIB]));
    for (const t of ts) t.dispose();
    expect(memory().bytesPooled).toBeGreaterThan(0);
    emptyCache();
    expect(memory().bytesPooled).toBe(0);
    expect(memory().buffersPooled).toBe(0);
    const created = memory().buffersCreated;
    zeros([37 * KIB]).dispose();
    expect(memory().buffersCreated).toBe(created + 1);
  });

  it('a request with none of its class takes a free buffer up to two classes above, the smallest first', () => {
    emptyCache();
    const KB4 = 1024; // elements per 4 KiB
    // classes of 512, 640, 768 and 896 KiB: a request of 512 KiB may take the 640 or 768 KiB buffers, not 896
    const [c768, c640, c896] = [192, 160, 224].map((n) => zeros([n * KB4]));
    for (const t of [c768, c640, c896]) t.dispose();
    const created = memory().buffersCreated;
    const first = zeros([128 * KB4]);
    expect(first.buffer.size).toBe(640 * KIB);
    const second = zeros([128 * KB4]);
    expect(second.buffer.size).toBe(768 * KIB);
    expect(memory().buffersCreated).toBe(created);
    expect(memory().bytesLive).toBeGreaterThanOrEqual((640 + 768) * KIB); // live counts the buffers' sizes
    const third = zeros([128 * KB4]); // only 896 KiB is left: three classes up, so a new buffer
    expect(third.buffer.size).toBe(512 * KIB);
    expect(memory().buffersCreated).toBe(created + 1);
    // its own class first: a freed 512 KiB buffer serves the next request though a 640 is free too
    third.dispose();
    first.dispose();
    const fourth = zeros([128 * KB4]);
    expect(fourth.buffer.size).toBe(512 * KIB);
    for (const t of [second, fourth]) t.dispose();
    expect(sizeClass(640 * KIB + 1)).toBe(768 * KIB);
  });

  it('a limit keeps the buffers freed last and gives back the oldest', () => {
    emptyCache();
    const elems = 128 * KIB; // 512 KiB, a size class of its own
    const ts = [0, 1, 2, 3].map(() => zeros([elems]));
    setPoolLimit(2 * elems * 4);
    for (const t of ts) t.dispose();
    expect(memory().bytesPooled).toBe(2 * elems * 4);
    expect(memory().buffersPooled).toBe(2);
    const created = memory().buffersCreated;
    const again = [0, 1, 2].map(() => zeros([elems]));
    expect(memory().buffersCreated).toBe(created + 1); // two from the pool, one new
    for (const t of again) t.dispose();
    setPoolLimit(0);
    expect(memory().bytesPooled).toBe(0);
  });

  it('a buffer given back while recorded work still reads it stays valid until that work is submitted', async () => {
    setPoolLimit(0);
    const a = tensor([1, 2, 3, 4, 5], [5]);
    const b = tensor([10, 20, 30, 40, 50], [5]);
    const c = add(a, b); // recorded, not submitted
    a.dispose(); // given back at once (limit 0): destroyed only after the submit
    b.dispose();
    expect(memory().bytesPooled).toBe(0);
    const d = add(c, c);
    expect(Array.from(await d.toArray())).toEqual([22, 44, 66, 88, 110]);
    c.dispose();
    d.dispose();
  });

  it('peakBytes counts the buffers outside the pool: a kept readback buffer until emptyCache', async () => {
    emptyCache();
    const elems = 300 * KIB + 7; // 1.2 MB: a readback size class no earlier read left behind
    const t = zeros([elems]);
    const before = memory();
    await t.toArray();
    const after = memory();
    const cls = sizeClass(elems * 4);
    expect(after.bytesOther - before.bytesOther).toBe(cls);
    expect(after.peakBytes).toBeGreaterThanOrEqual(after.bytesLive + after.bytesPooled + after.bytesOther);
    emptyCache();
    expect(after.bytesOther - memory().bytesOther).toBeGreaterThanOrEqual(cls);
    t.dispose();
  });

  it('a request takes the free buffer of its class made first, whatever the order of release', () => {
    emptyCache();
    const elems = 77 * KIB + 3; // a size class no other test here uses
    const ts = [0, 1, 2, 3].map(() => zeros([elems]));
    const buffers = ts.map((t) => t.buffer);
    for (const i of [2, 0, 3, 1]) ts[i]!.dispose();
    const again = [0, 1, 2].map(() => zeros([elems]));
    expect(again.map((t) => buffers.indexOf(t.buffer))).toEqual([0, 1, 2]);
    for (const i of [1, 2, 0]) again[i]!.dispose();
    const third = zeros([elems]);
    expect(buffers.indexOf(third.buffer)).toBe(0);
    third.dispose();
    emptyCache();
  });

  it('rejects a negative limit', () => {
    expect(() => setPoolLimit(-1)).toThrow(/pool limit/);
  });
});
