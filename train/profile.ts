// `--profile`: the share of a training step's GPU time spent in matmul, attention and everything else, and each
// matmul call site's time and effective GFLOP/s (launches carry their operand shapes and FLOPs).
//
// Method (no engine change): WebGPU gives no synchronous wait, and the model's forward/backward are synchronous
// code, so a kernel cannot be timed where it is recorded. Instead `captureDispatches` wraps `rt().dispatch` during
// one ordinary step and records every launch (shader, workgroups, uniform params, binding sizes). `replayTimes` then
// replays each distinct launch alone on fresh scratch buffers of the same sizes (so no live tensor is touched),
// timed to GPU completion (`await rt().sync()`) once alone and once with `reps` more launches in a row (the
// difference over reps is its time, free of the fixed submit-and-wait cost), and multiplies by how often the step
// launched it. `reps` grows until that difference lasts MIN_REPLAY_MS: the wait's cost varies by a few ms through
// Dawn's event polling, so a fixed 4 launches put up to 1 ms of noise on each estimate of a 0.08 ms rmsnorm
// (measured on a t5-small decoding step: 621 rmsnorms shown as 596 ms, 15% of the step; they take 55 ms).
// A kernel's run time on a given shape does not depend on the data (fixed grid and loop bounds), so this is
// each kernel's share of the step; recording, submits and readback are the step's wall time minus the sum.
import { rt, type KernelLaunch } from '../engine/runtime.ts';
import { AUTOTUNE_LAUNCH_NAME, matmulAutotuneSettled } from '../kernels/matmul-autotune.ts';

export type OpClass = 'matmul' | 'attention' | 'other';

/** Kernels named in the summary, most expensive first. Five hid a train step's dropout, AdamW and gradient
 * accumulation (2-3% each) behind the matmul and attention kernels. */
const TOP_KERNELS = 10;

/** a replay's timed difference lasts at least this long, or runs MAX_REPLAY_REPS launches */
export const MIN_REPLAY_MS = 25;
const MAX_REPLAY_REPS = 2048;

/** The launches to time next after `reps` launches took `elapsedMs` (0 when that was long enough). */
export function moreReplayReps(reps: number, elapsedMs: number, minMs = MIN_REPLAY_MS): number {
  if (elapsedMs >= minMs || reps >= MAX_REPLAY_REPS) return 0;
  // aim a quarter past the minimum; at least double, since a short difference is mostly noise
  const want = Math.ceil((reps * minMs * 1.25) / Math.max(elapsedMs, 1e-3));
  return Math.min(MAX_REPLAY_REPS, Math.max(2 * reps, want));
}

const RANK4 = /\[\d+, \d+, \d+, \d+\]/;

/**
 * attention: the fused attention kernels, softmax, and any kernel other than a permute that reads or writes a 4-D
 * [batch, heads, query, key|d_kv] tensor: attention computed unfused (scores and context matmuls, mask and bias
 * adds, dropout on the probabilities; T5 did so with dropout on before its kernels drew dropout themselves) is
 * recognised by the rank of its operands, which binding descriptions carry.
 * matmul: every other matmul (the projections, feed-forward and LM head, forward and backward). other: the rest.
 */
export function classify(launch: Pick<KernelLaunch, 'name' | 'bindings'>): OpClass {
  if (/attention|softmax/i.test(launch.name)) return 'attention';
  if (!/permute/i.test(launch.name) && launch.bindings.some((b) => RANK4.test(b.what))) return 'attention';
  if (/matmul/i.test(launch.name)) return 'matmul';
  return 'other';
}

interface Captured {
  launch: KernelLaunch;
  sizes: number[];
  count: number;
}

export interface DispatchCapture {
  stop(): Captured[];
}

/** Records every dispatch until stop(); the dispatches still run. */
export function captureDispatches(): DispatchCapture {
  const r = rt();
  const original = r.dispatch;
  const byKey = new Map<string, Captured>();
  r.dispatch = function (this: typeof r, k: KernelLaunch): void {
    // the autotuner's timing launches are not the step's work
    if (k.name.startsWith(AUTOTUNE_LAUNCH_NAME)) return original.call(this, k);
    const sizes = k.bindings.map((b) => (b.offset ?? 0) + (b.size ?? b.buffer.size));
    // the site too: the packed kernel's main pass is the same launch for x·W and x·Wᵀ (B comes packed), and
    // without it the backward's dX products were counted in the forward's site
    const key = `${k.name}|${k.site ?? ''}|${k.workgroups.join('x')}|${sizes.join(',')}|${JSON.stringify(k.params ?? [])}|${k.entryPoint ?? ''}|${k.code}`;
    const c = byKey.get(key);
    if (c) c.count++;
    else byKey.set(key, { launch: { ...k, bindings: k.bindings.map((b) => ({ ...b })) }, sizes, count: 1 });
    original.call(this, k);
  };
  return {
    stop() {
      r.dispatch = original;
      return [...byKey.values()];
    },
  };
}

export interface ProfileReport {
  /** summed kernel milliseconds per class for one step */
  ms: Record<OpClass, number>;
  dispatches: Record<OpClass, number>;
  /** distinct kernels timed */
  distinct: number;
  /** the step's wall time, for the overhead line */
  stepMs: number;
  /** the TOP_KERNELS most expensive kernels by name */
  top: Array<{ name: string; ms: number; count: number }>;
  /** the kernels after those: how many names and their summed milliseconds */
  rest: { names: number; ms: number };
  /** matmul call sites (operand shapes and transposes) by time, with their effective GFLOP/s */
  sites: Array<{ site: string; ms: number; count: number; flops: number; gflops: number }>;
}

/** Times each captured launch alone (see the header comment). */
export async function replayTimes(captured: Captured[], stepMs: number, minReplayMs = MIN_REPLAY_MS): Promise<ProfileReport> {
  const r = rt();
  const device = r.device;
  const ms: Record<OpClass, number> = { matmul: 0, attention: 0, other: 0 };
  const dispatches: Record<OpClass, number> = { matmul: 0, attention: 0, other: 0 };
  const byName = new Map<string, { ms: number; count: number }>();
  const bySite = new Map<string, { ms: number; count: number; flops: number }>();
  const scratch = new Map<number, GPUBuffer[]>();
  // autotuning jobs the captured step started time their candidates on the same device: replayed beside them,
  // kernels came out many times slower than alone (rmsnorm at 325 ms instead of 3 ms on t5-small)
  await matmulAutotuneSettled();
  const bufferOf = (size: number, slot: number): GPUBuffer => {
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    let list = scratch.get(bytes);
    if (!list) scratch.set(bytes, (list = []));
    while (list.length <= slot) {
      list.push(device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'profile scratch' }));
    }
    return list[slot]!;
  };
  try {
    for (const c of captured) {
      const launch: KernelLaunch = {
        ...c.launch,
        bindings: c.launch.bindings.map((b, i) => ({ ...b, buffer: bufferOf(c.sizes[i]!, i) })),
      };
      r.dispatch(launch); // compiles (cached) and warms
      await r.sync();
      const timed = async (n: number): Promise<number> => {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) r.dispatch(launch);
        await r.sync();
        return performance.now() - t0;
      };
      // the difference of a 1-launch and a (1 + reps)-launch run cancels the fixed cost of a submit and its
      // completion wait (several ms through Dawn's event polling, more than a small kernel takes)
      let reps = 4;
      let each = 0;
      for (;;) {
        const one = await timed(1);
        const diff = (await timed(1 + reps)) - one;
        each = Math.max(0, diff / reps);
        const next = moreReplayReps(reps, diff, minReplayMs);
        if (next === 0) break;
        reps = next;
      }
      const cls = classify(c.launch);
      ms[cls] += each * c.count;
      dispatches[cls] += c.count;
      const n = byName.get(c.launch.name) ?? { ms: 0, count: 0 };
      n.ms += each * c.count;
      n.count += c.count;
      byName.set(c.launch.name, n);
      // a site's time includes its helper launches (the packed kernel's pack and combine passes, flops 0);
      // its count, the launches that do its multiply-adds
      if (c.launch.site && c.launch.flops !== undefined) {
        const site = bySite.get(c.launch.site) ?? { ms: 0, count: 0, flops: 0 };
        site.ms += each * c.count;
        if (c.launch.flops > 0) site.count += c.count;
        site.flops += c.launch.flops * c.count;
        bySite.set(c.launch.site, site);
      }
    }
  } finally {
    for (const list of scratch.values()) for (const b of list) b.destroy();
  }
  const ranked = [...byName].map(([name, v]) => ({ name, ...v })).sort((a, b) => b.ms - a.ms);
  const top = ranked.slice(0, TOP_KERNELS);
  const others = ranked.slice(TOP_KERNELS);
  const rest = { names: others.length, ms: others.reduce((sum, t) => sum + t.ms, 0) };
  const sites = [...bySite]
    .map(([site, v]) => ({ site, ms: v.ms, count: v.count, flops: v.flops, gflops: v.ms > 0 ? v.flops / v.ms / 1e6 : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { ms, dispatches, distinct: captured.length, stepMs, top, rest, sites };
}

export function describeProfile(p: ProfileReport): string {
  const total = p.ms.matmul + p.ms.attention + p.ms.other;
  const pct = (v: number) => `${((100 * v) / Math.max(total, 1e-9)).toFixed(1)}%`;
  const lines = [
    `profile of one step (${p.distinct} distinct kernels, each replayed alone on scratch buffers and timed to GPU completion):`,
    ...(['matmul', 'attention', 'other'] as const).map((k) => `  ${k.padEnd(9)} ${pct(p.ms[k]).padStart(6)}  ${p.ms[k].toFixed(1).padStart(9)} ms  ${p.dispatches[k]} dispatches`),
    `  kernels total ${total.toFixed(1)} ms; step wall time ${p.stepMs.toFixed(1)} ms (the rest is recording, submits and readback)`,
    `  most expensive: ${p.top.map((t) => `${t.name} ${t.ms.toFixed(1)} ms (${t.count}x)`).join(', ')}` +
      (p.rest.names > 0 ? `; ${p.rest.names} more ${p.rest.names === 1 ? 'kernel' : 'kernels'} ${p.rest.ms.toFixed(1)} ms` : ''),
    ...(p.sites.length ? ['  matmul call sites (operand shapes; ᵀ transposed; Nx = kernel launches), slowest first:'] : []),
    ...p.sites.slice(0, 12).map((s) => `    ${s.ms.toFixed(1).padStart(9)} ms  ${s.gflops.toFixed(1).padStart(6)} GFLOP/s  ${String(s.count).padStart(4)}x  ${s.site}`),
  ];
  return lines.join('\n');
}
