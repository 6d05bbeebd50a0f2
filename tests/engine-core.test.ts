import { beforeAll, describe, expect, it, vi } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { empty, memory, ones, setPoison, tensor, zeros } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { backward, noGrad, zeroGrad } from '../engine/autograd.ts';
import { add } from '../kernels/elementwise.ts';
import { rt } from '../engine/runtime.ts';
import { GpuError, gpu, openGpu } from '../engine/gpu.ts';
import { bf16ToF32, f16ToF32, tensorFromHalf } from '../engine/tensor.ts';
import { sizeClass } from '../engine/buffer-pool.ts';
import { platform } from '../engine/platform.ts';

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

describe('uploads while work is recorded', () => {
  it('copies a small upload in recording order without submitting: earlier kernels see the old contents', async () => {
    const a = tensor([1, 2, 3], [3]);
    const before = add(a, a); // recorded, not submitted
    const submits = rt().counters.submits;
    rt().write(a.buffer, 0, new Float32Array([10, 20, 30]));
    const after = add(a, a);
    a.dispose();
    // the freed buffer may come straight back from the pool while `after` still has to read it
    const reused = tensor([7, 8, 9], [3]);
    expect(rt().counters.submits).toBe(submits);
    expect([...(await before.toArray())]).toEqual([2, 4, 6]);
    expect([...(await after.toArray())]).toEqual([20, 40, 60]);
    expect([...(await reused.toArray())]).toEqual([7, 8, 9]);
    for (const t of [before, after, reused]) t.dispose();
  });

  it('packs many uploads of one batch, over several staging buffers, each landing in order', async () => {
    const n = 10_000; // 40 KB: two do not fit one 64 KB staging buffer
    const a = tensor(new Float32Array(n).fill(1), [n]);
    const sums = [add(a, a)];
    const submits = rt().counters.submits;
    for (let v = 2; v <= 5; v++) {
      rt().write(a.buffer, 0, new Float32Array(n).fill(v));
      rt().write(a.buffer, 4 * (n - 1), new Float32Array([-v])); // a small one after a big one
      sums.push(add(a, a));
    }
    expect(rt().counters.submits).toBe(submits);
    for (let i = 0; i < sums.length; i++) {
      const x = await sums[i]!.toFloat32();
      const v = i + 1;
      expect([x[0], x[n >> 1], x[n - 1]]).toEqual([2 * v, 2 * v, i === 0 ? 2 : -2 * v]);
    }
    for (const t of [a, ...sums]) t.dispose();
  });

  it('submits the recorded work before a large upload', async () => {
    const n = (1 << 20) / 4 + 1; // one element over the staged-write limit
    const a = tensor(new Float32Array(n).fill(1), [n]);
    const before = add(a, a);
    const submits = rt().counters.submits;
    rt().write(a.buffer, 0, new Float32Array(n).fill(5));
    expect(rt().counters.submits).toBe(submits + 1);
    const after = add(a, a);
    const [x, y] = [await before.toFloat32(), await after.toFloat32()];
    expect([x[0], x[n - 1], y[0], y[n - 1]]).toEqual([2, 2, 10, 10]);
    for (const t of [a, before, after]) t.dispose();
  });
});

describe('readback', () => {
  it('reuses its staging buffers without handing back an earlier read', async () => {
    const a = tensor([1, 2, 3], [3]);
    const b = tensor([7, 8], [2]); // the same size class as a
    expect([...(await a.toArray())]).toEqual([1, 2, 3]);
    rt().write(a.buffer, 0, new Float32Array([4, 5, 6]));
    expect([...(await a.toArray())]).toEqual([4, 5, 6]);
    expect([...(await b.toArray())]).toEqual([7, 8]);
    const big = tensor(new Float32Array(300_000).fill(2), [300_000]);
    const [x, y] = await Promise.all([big.toFloat32(), a.toFloat32()]); // two at once: two buffers
    expect([x[0], x[299_999], y[2]]).toEqual([2, 2, 6]);
    rt().emptyCache();
    expect([...(await b.toArray())]).toEqual([7, 8]);
    // into a caller's array of the tensor's size (the same object back); any other size gets a new one
    const into = new Float32Array(3).fill(-1);
    expect(await a.toFloat32(into)).toBe(into);
    expect([...into]).toEqual([4, 5, 6]);
    const other = new Float32Array(4);
    const got = await a.toFloat32(other);
    expect(got).not.toBe(other);
    expect([...got]).toEqual([4, 5, 6]);
    for (const t of [a, b, big]) t.dispose();
  });
});

describe('bind groups', () => {
  // out[i] = p.a * x[i] + p.b: the same kernel three times in one batch, twice on the same buffers
  const code = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct Params { a: f32, b: f32, n: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < p.n) { out[gid.x] = p.a * x[gid.x] + p.b; }
}`;
  const run = (x: ReturnType<typeof tensor>, out: ReturnType<typeof tensor>, a: number, b: number) =>
    rt().dispatch({
      name: 'bind group test',
      code,
      bindings: [
        { buffer: x.buffer, write: false, what: 'x' },
        { buffer: out.buffer, write: true, what: 'out' },
      ],
      params: [['f32', a], ['f32', b], ['u32', x.size]],
      workgroups: [1],
    });

  it('are made once per set of bound buffers, and each launch still reads its own params', async () => {
    const x = tensor([1, 2, 3], [3]);
    const out1 = empty([3]);
    const out2 = empty([3]);
    const made = rt().counters.bindGroupsCreated;
    run(x, out1, 2, 0);
    run(x, out2, 10, 1); // other output buffer: a second group
    const y1 = await out1.toArray(); // submits both
    expect([...y1]).toEqual([2, 4, 6]);
    expect([...(await out2.toArray())]).toEqual([11, 21, 31]);
    expect(rt().counters.bindGroupsCreated - made).toBe(2);
    run(x, out1, -1, 0.5); // the first group again, with new params in the same batch as the next launch
    run(x, out2, 0, 7);
    expect([...(await out1.toArray())]).toEqual([-0.5, -1.5, -2.5]);
    expect([...(await out2.toArray())]).toEqual([7, 7, 7]);
    expect(rt().counters.bindGroupsCreated - made).toBe(2);
    for (const t of [x, out1, out2]) t.dispose();
  });

  it('are made anew when the cache is off', async () => {
    const x = tensor([4], [1]);
    const out = empty([1]);
    const made = rt().counters.bindGroupsCreated;
    rt().cacheBindGroups = false;
    try {
      run(x, out, 1, 1);
      run(x, out, 1, 2);
      expect([...(await out.toArray())]).toEqual([6]);
      expect(rt().counters.bindGroupsCreated - made).toBe(2);
    } finally {
      rt().cacheBindGroups = true;
    }
    x.dispose();
    out.dispose();
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

describe('device and errors', () => {
  it('reports the adapter, limits and features', () => {
    const g = gpu();
    expect(g.info.name.length).toBeGreaterThan(0);
    expect(g.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(g.features.size).toBeGreaterThan(0);
  });

  it('lists available adapters when the requested one is missing', async () => {
    await expect(openGpu({ adapter: 'no-such-adapter-xyz' })).rejects.toThrow(/no WebGPU adapter matching adapter 'no-such-adapter-xyz'. Available adapters:\n  \* /);
  });

  it('turns a WebGPU validation error into an exception naming the kernel', async () => {
    const t = zeros([4]);
    rt().dispatch({
      name: 'broken-kernel',
      code: '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = undefined_name; }',
      bindings: [t.write()],
      workgroups: [1],
    });
    await expect(rt().sync()).rejects.toThrow(GpuError);
    t.dispose();
    await rt().sync(); // the error was consumed: the device keeps working
    expect([...(await ones([2]).toArray())]).toEqual([1, 1]);
  });

  it('refuses bindings over maxStorageBufferBindingSize with a message naming the limit', () => {
    const n = gpu().limits.maxStorageBufferBindingSize / 4 + 1024;
    const big = empty([n]);
    // a broadcast operand binds the whole of `big` (same-shape operands go a window at a time: elementwise.test.ts)
    const one = tensor([1], [1]);
    expect(() => add(big, one)).toThrow(/add: .*over this adapter's maxStorageBufferBindingSize/);
    big.dispose();
    one.dispose();
  });
});

describe('storage formats and pool', () => {
  it('converts f16 and bf16 on load', async () => {
    // 0x3c00 = 1, 0xc000 = -2, 0x0001 = smallest subnormal 2^-24, 0x7c00 = inf, 0x7e00 = NaN
    const f16 = f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7c00, 0x7e00, 0x3555]));
    expect([...f16.slice(0, 4)]).toEqual([1, -2, 2 ** -24, Infinity]);
    expect(f16[4]).toBeNaN();
    expect(f16[5]).toBeCloseTo(0.333251953125, 12);
    // bf16 0x3f80 = 1, 0xc0a0 = -5, 0x7f80 = inf
    expect([...bf16ToF32(new Uint16Array([0x3f80, 0xc0a0, 0x7f80]))]).toEqual([1, -5, Infinity]);
    const t = tensorFromHalf(new Uint16Array([0x3c00, 0x4000]), 'f16', [2]);
    expect([...(await t.toArray())]).toEqual([1, 2]);
    t.dispose();
  });

  it('rounds sizes to four classes per power of two', () => {
    expect(sizeClass(1)).toBe(256);
    expect(sizeClass(1024)).toBe(1024);
    expect(sizeClass(1025)).toBe(1280);
    expect(sizeClass(1600)).toBe(1792);
    for (let b = 300; b < 1e6; b = Math.floor(b * 1.37)) {
      expect(sizeClass(b)).toBeGreaterThanOrEqual(b);
      expect(sizeClass(b)).toBeLessThanOrEqual(b * 1.25 + 1);
    }
  });

  it('reuses freed buffers and tracks live, pooled and peak bytes', () => {
    const m0 = memory();
    const a = empty([1000]);
    const m1 = memory();
    expect(m1.bytesLive - m0.bytesLive).toBe(sizeClass(4000));
    a.dispose();
    const b = empty([990]); // same class: no new buffer
    expect(memory().buffersCreated).toBe(m1.buffersCreated);
    b.dispose();
    expect(memory().peakBytes).toBeGreaterThanOrEqual(m1.bytesLive);
  });
});

describe('gradient buffers', () => {
  it('never share a buffer between two parameters (clipping scales grads in place)', async () => {
    const a = tensor([1, 2], [2], { requiresGrad: true });
    const b = tensor([3, 4], [2], { requiresGrad: true });
    const y = add(a, b);
    backward(y);
    expect(a.grad!.buffer).not.toBe(b.grad!.buffer);
    expect([...(await a.grad!.toArray())]).toEqual([1, 1]);
    expect([...(await b.grad!.toArray())]).toEqual([1, 1]);
    y.dispose();
    a.dispose();
    b.dispose();
  });
});

describe('tensors over the binding limit', () => {
  it('fill and poison in ranges', async () => {
    const limit = gpu().limits.maxStorageBufferBindingSize;
    const n = limit / 4 + 1000;
    setPoison(true);
    const t = empty([n]);
    setPoison(false);
    const z = zeros([n]);
    const bytes = await rt().read(t.buffer, limit, 4000, 'tail');
    expect(new Float32Array(bytes).every(Number.isNaN)).toBe(true);
    const zt = new Float32Array(await rt().read(z.buffer, limit - 400, 4400, 'tail'));
    expect(zt.every((v) => v === 0)).toBe(true);
    t.dispose();
    z.dispose();
  });
});

// Dawn's binding ticks the device from setImmediate to setImmediate while a mapAsync / onSubmittedWorkDone is
// pending (looking setImmediate up on the global object each time): a busy loop that, under lavapipe, takes a
// core from the kernels being waited for. platform-node.ts's gpuWait makes the ticks after its first ms go
// through setTimeout while one of our waits is pending.
describe('waiting for the GPU without a busy loop', () => {
  /** Counts the ticks a Dawn-like ticker gets (each one queues the next via the global setImmediate) during `wait`,
   * from `fromMs` into it on. */
  async function ticksDuring(wait: () => Promise<unknown>, fromMs = 0): Promise<number> {
    const t0 = performance.now();
    let ticks = 0;
    let done = false;
    const tick = () => {
      if (performance.now() - t0 >= fromMs) ticks++;
      if (!done) globalThis.setImmediate(tick);
    };
    const waited = wait();
    globalThis.setImmediate(tick);
    await waited;
    done = true;
    return ticks;
  }

  it('throttles setImmediate ticks while a wait is pending and restores setImmediate after', async () => {
    const native = globalThis.setImmediate;
    const pause = () => new Promise((r) => setTimeout(r, 50));
    const busy = await ticksDuring(pause);
    const polite = await ticksDuring(() => platform().gpuWait(pause));
    expect(globalThis.setImmediate).toBe(native);
    // natively the ticker spins (tens of thousands of ticks in 50 ms); politely only for the first ms, then
    // about one tick per ms
    expect(busy).toBeGreaterThan(1000);
    expect(polite).toBeLessThan(busy / 5);
    // nested waits restore the original only when the last one ends
    await platform().gpuWait(async () => {
      await platform().gpuWait(pause);
      expect(globalThis.setImmediate).not.toBe(native);
    });
    expect(globalThis.setImmediate).toBe(native);
  });

  it('spaces the ticks more as a wait goes on (1/32 of the time waited, up to 16 ms), and restarts for a newer wait', async () => {
    const ms = (n: number) => () => new Promise((r) => setTimeout(r, n));
    // the last 200 ms of a 600 ms wait: 13-16 ms apart, so about 14 ticks, where 1 ms apart gives ~200
    const late = await ticksDuring(() => platform().gpuWait(ms(600)), 400);
    expect(late).toBeGreaterThan(2);
    expect(late).toBeLessThan(40);
    // a wait that starts while a long one is pending counts from its own start: 40-160 ms into it, 1-4 ms apart
    // (~30-120 ticks; the slower when other test files load the cores), where the long one's 16 ms would give ~7
    let inner = 0;
    await platform().gpuWait(async () => {
      await ms(600)();
      inner = await ticksDuring(() => platform().gpuWait(ms(160)), 40);
    });
    expect(inner).toBeGreaterThan(14);
  });

  it('routes the runtime waits (sync, readback) through it', async () => {
    const spy = vi.spyOn(platform(), 'gpuWait');
    try {
      await rt().sync();
      await tensor([1, 2], [2]).toArray();
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
  });
});
