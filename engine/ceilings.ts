// The device's measured ceilings, which benchmarks report against: memory bandwidth from the best of a few
// WGSL copy kernels, and arithmetic throughput from a register-only multiply-add loop. A short
// measurement (about a second), cached per gpu.ts measurementKey (adapter, driver, and the host CPU under
// lavapipe).
import { gpu, measurementKey } from './gpu.ts';
import { platform } from './platform.ts';
import { rt } from './runtime.ts';
import { empty } from './tensor.ts';

export interface Ceilings {
  adapter: string;
  driver: string;
  /** best copy kernel, bytes read + written per second / 1e9 */
  copyGBps: number;
  /** register-only multiply-add loop, 2 flops per multiply-add / 1e9 */
  fmaGflops: number;
  measuredAt: string;
}

const COPY_BYTES = 64 * 1024 * 1024;
export const COPY_WORKGROUP = 256;
const FMA_WORKGROUP = 64;
const FMA_ITERATIONS = 512;
/** independent scalar accumulators per invocation (lavapipe keeps each in one AVX register across 8
 * invocations). Measured here: 16 scalar chains 47 GFLOP/s, 8 scalar 32, 3 vec4 33, 2 vec4 20. */
const FMA_CHAINS = 16;

const CACHE_NAME = 'ceilings.json';

export function copyCode(vec4PerThread: number): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
struct Params { n: u32 }
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${COPY_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${COPY_WORKGROUP * vec4PerThread}u + lid;
  for (var k = 0u; k < ${vec4PerThread}u; k++) {
    let i = base + k * ${COPY_WORKGROUP}u;
    if (i < p.n) { dst[i] = src[i]; }
  }
}`;
}

function fmaCode(): string {
  const init = Array.from({ length: FMA_CHAINS }, (_, c) => `var a${c} = f32(gid.x) * 1e-9 + ${c}.0;`).join('\n  ');
  const body = Array.from({ length: FMA_CHAINS }, (_, c) => `a${c} = a${c} * m + d;`).join('\n    ');
  const sum = Array.from({ length: FMA_CHAINS }, (_, c) => `a${c}`).join(' + ');
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
struct Params { m: f32, d: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@compute @workgroup_size(${FMA_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m = p.m;
  let d = p.d;
  ${init}
  for (var i = 0u; i < ${FMA_ITERATIONS}u; i++) {
    ${body}
  }
  out[gid.x] = ${sum};
}`;
}

async function timeIt(record: () => void, minMs = 150): Promise<number> {
  record();
  await rt().sync(); // compile and warm up
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) record();
    await rt().sync();
    const ms = performance.now() - t0;
    if (ms >= minMs || reps >= 1024) return ms / reps;
    reps *= 2;
  }
}

export async function measureCeilings(): Promise<Ceilings> {
  const g = gpu();
  const n = COPY_BYTES / 16;
  const src = empty([COPY_BYTES / 4]);
  const dst = empty([COPY_BYTES / 4]);
  let copyGBps = 0;
  for (const perThread of [1, 4, 16]) {
    const ms = await timeIt(() =>
      rt().dispatch({
        name: `copy x${perThread}`,
        code: copyCode(perThread),
        bindings: [src.read(), dst.write()],
        params: [['u32', n]],
        workgroups: [Math.ceil(n / (COPY_WORKGROUP * perThread))],
      }),
    );
    copyGBps = Math.max(copyGBps, (2 * COPY_BYTES) / ms / 1e6);
  }
  src.dispose();
  dst.dispose();

  const invocations = FMA_WORKGROUP * 1024;
  const out = empty([invocations]);
  const ms = await timeIt(() =>
    rt().dispatch({
      name: 'fma ceiling',
      code: fmaCode(),
      bindings: [out.write()],
      params: [['f32', 0.999], ['f32', 1e-3]],
      workgroups: [invocations / FMA_WORKGROUP],
    }),
  );
  out.dispose();
  const flops = invocations * FMA_ITERATIONS * FMA_CHAINS * 2;
  return {
    adapter: g.info.name,
    driver: g.info.driver,
    copyGBps,
    fmaGflops: flops / ms / 1e6,
    measuredAt: new Date().toISOString(),
  };
}

/** Measured ceilings of the current adapter, from the cache when this adapter, driver (and CPU) were measured. */
export async function deviceCeilings(opts: { remeasure?: boolean } = {}): Promise<Ceilings> {
  const g = gpu();
  const key = measurementKey(g);
  let cache: Record<string, Ceilings> = {};
  const text = platform().readCache(CACHE_NAME);
  if (text !== null) {
    try {
      cache = JSON.parse(text) as Record<string, Ceilings>;
    } catch {
      cache = {}; // a damaged cache is remeasured, not trusted
    }
  }
  if (!opts.remeasure && cache[key]) return cache[key];
  const c = await measureCeilings();
  cache[key] = c;
  try {
    await platform().writeCache(CACHE_NAME, JSON.stringify(cache, null, 2));
  } catch {
    // a read-only home only costs a remeasurement next time
  }
  return c;
}
