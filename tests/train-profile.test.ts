// --profile's machinery: kernels are classed matmul / attention / other by name and operand rank, a capture
// records every dispatch of a block (counting repeats) while the work still runs, and the replay times each
// distinct launch on scratch buffers without touching the captured tensors.
import { describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { matmul } from '../kernels/matmul.ts';
import { forceMatmulVariant } from '../kernels/matmul-autotune.ts';
import { eligibleMatmulVariants } from '../kernels/matmul-spec.ts';
import { softmax } from '../kernels/softmax.ts';
import { add } from '../kernels/elementwise.ts';
import { captureDispatches, classify, describeProfile, MIN_REPLAY_MS, moreReplayReps, replayTimes, type ProfileReport } from '../train/profile.ts';

await initGpu(); // before describe: skipIf asks which matmul variants this adapter has

const b = (what: string) => ({ buffer: null as unknown as GPUBuffer, write: false, what });

describe('profile', () => {
  it('names the ten most expensive kernels and sums the rest', () => {
    const top = Array.from({ length: 10 }, (_, i) => ({ name: `k${i}`, ms: 20 - i, count: 1 }));
    const report: ProfileReport = {
      ms: { matmul: 150, attention: 0, other: 12.5 }, dispatches: { matmul: 10, attention: 0, other: 3 }, distinct: 13, stepMs: 170,
      top, rest: { names: 3, ms: 12.5 }, sites: [],
    };
    const text = describeProfile(report);
    expect(text).toMatch(/most expensive: k0 20\.0 ms \(1x\), .*k9 11\.0 ms \(1x\); 3 more kernels 12\.5 ms$/m);
    expect(describeProfile({ ...report, top: top.slice(0, 1), rest: { names: 0, ms: 0 } })).not.toMatch(/more kernel/);
  });

  it('classes kernels by name and operand rank', () => {
    expect(classify({ name: 'matmul subgroup', bindings: [b('a f32[8, 64]'), b('b f32[64, 64]')] })).toBe('matmul');
    expect(classify({ name: 'matmul subgroup', bindings: [b('a f32[2, 4, 7, 16]'), b('b f32[2, 4, 7, 16]')] })).toBe('attention');
    expect(classify({ name: 'softmax', bindings: [b('x f32[56, 7]')] })).toBe('attention');
    expect(classify({ name: 'attention-backward-dq', bindings: [] })).toBe('attention');
    expect(classify({ name: 'permute', bindings: [b('x f32[2, 7, 4, 16]')] })).toBe('other');
    expect(classify({ name: 'random dropout', bindings: [b('dropout input tensor f32[2, 4, 7, 7]')] })).toBe('attention');
    expect(classify({ name: 'rmsnorm', bindings: [b('x f32[2, 7, 64]')] })).toBe('other');
  });

  it('replays a kernel until the timed difference lasts MIN_REPLAY_MS, so the noise of the submit wait stays small', () => {
    expect(moreReplayReps(4, 400)).toBe(0); // a 100 ms kernel: 4 launches are enough
    expect(moreReplayReps(4, MIN_REPLAY_MS)).toBe(0);
    // a 0.08 ms kernel (t5-small's one-row rmsnorm): 4 launches are 0.3 ms, mostly noise; aim past the minimum
    const next = moreReplayReps(4, 0.32);
    expect(next * 0.08).toBeGreaterThanOrEqual(MIN_REPLAY_MS);
    expect(moreReplayReps(next, next * 0.08)).toBe(0);
    // a difference lost in noise (even negative) still grows the count, up to a cap
    expect(moreReplayReps(4, -1)).toBeGreaterThan(4);
    expect(moreReplayReps(2048, 1)).toBe(0);
  });

  it('captures every dispatch of a block and replays them without changing the results', async () => {
    const x = tensor(Float32Array.from({ length: 6 * 5 }, (_, i) => i / 10), [6, 5]);
    const w = tensor(Float32Array.from({ length: 5 * 3 }, (_, i) => (i % 4) - 1), [5, 3]);
    const cap = captureDispatches();
    const y = tidy(() => softmax(add(matmul(x, w), matmul(x, w))));
    const launches = cap.stop();
    const before = await y.toFloat32();
    const p = await replayTimes(launches, 1);
    expect(p.dispatches.matmul).toBe(2);
    expect(p.dispatches.attention).toBe(1);
    expect(p.dispatches.other).toBeGreaterThanOrEqual(1);
    // the two identical matmuls are one distinct launch counted twice
    expect(p.distinct).toBe(launches.length);
    expect(launches.find((l) => /matmul/.test(l.launch.name))!.count).toBe(2);
    expect(await y.toFloat32()).toEqual(before);
    // one matmul call site: its shapes, two calls, 2 * 6 * 3 * 5 FLOPs each
    expect(p.sites.map((s) => [s.site, s.count])).toEqual([['matmul([6, 5], [5, 3])', 2]]);
    expect(p.sites[0]!.flops).toBe(2 * 2 * 6 * 3 * 5);
    // the named kernels and the rest add up to every kernel's time
    const named = p.top.reduce((sum, t) => sum + t.ms, 0);
    expect(named + p.rest.ms).toBeCloseTo(p.ms.matmul + p.ms.attention + p.ms.other, 6);
    expect(p.top.length + p.rest.names).toBe(new Set(launches.map((l) => l.launch.name)).size);
    for (const t of [x, w, y]) t.dispose();
  });

  it.skipIf(!eligibleMatmulVariants().includes('packed'))('replays launches with uniform bindings (the packed matmul reads B from uniform blocks)', async () => {
    const x = tensor(Float32Array.from({ length: 9 * 11 }, (_, i) => Math.sin(i)), [9, 11]);
    const w = tensor(Float32Array.from({ length: 11 * 13 }, (_, i) => Math.cos(i)), [11, 13]);
    forceMatmulVariant('packed');
    try {
      const cap = captureDispatches();
      const y = matmul(x, w);
      const launches = cap.stop();
      expect(launches.some((l) => l.launch.bindings.some((bd) => bd.uniform))).toBe(true);
      const p = await replayTimes(launches, 1); // threw 'Binding usage ... doesn't match expected usage (Uniform)'
      expect(p.dispatches.matmul).toBeGreaterThanOrEqual(1);
      // the call site holds all of the product's FLOPs, and the pack pass's time as well as the main pass's
      expect(p.sites.map((s) => s.site)).toEqual(['matmul([9, 11], [11, 13])']);
      expect(p.sites[0]!.flops).toBe(2 * 9 * 11 * 13);
      expect(launches.filter((l) => l.launch.site).length).toBe(launches.length); // pack, main (and combine) all carry the site
      expect(launches.some((l) => / pack$/.test(l.launch.name))).toBe(true);
      // x·W and x·Wᵀ run the same main launch on packed B: still two sites
      const wt = tensor(Float32Array.from({ length: 13 * 11 }, (_, i) => Math.cos(i)), [13, 11]);
      const cap2 = captureDispatches();
      const both = [matmul(x, w), matmul(x, wt, { transB: true })];
      const p2 = await replayTimes(cap2.stop(), 1);
      expect(p2.sites.map((s) => s.site).sort()).toEqual(['matmul([9, 11], [11, 13])', 'matmul([9, 11], [13, 11]ᵀ)']);
      expect(p2.sites.map((s) => s.flops)).toEqual([2 * 9 * 11 * 13, 2 * 9 * 11 * 13]);
      for (const t of [wt, ...both]) t.dispose();
      y.dispose();
    } finally {
      forceMatmulVariant(null);
      x.dispose();
      w.dispose();
    }
  });
});
