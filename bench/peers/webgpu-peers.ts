// Peer numbers on the same WebGPU adapter: TensorFlow.js's WebGPU backend and jax-js's WebGPU device run matmul
// (1024³, 4096x512x2048, 4096x2048x512, 4096x512x32128 = T5's LM head) and softmax 16384x256, through Dawn's `webgpu`
// package like our engine. One JSON line per measurement:
//   {peer, op, shape, ms, gflops | gbps, runs, maxRelErr, ...}   or   {peer, op, shape, error}
// Each measurement: one warm-up run (shader compile, buffer creation), then the median of up to --runs runs (as many
// as fit in --budget-s, at least one), each timed
// from the op call to its result data on the host (`await t.data()`): readback included, as a user would see it.
// The warm-up run's output is spot-checked against a float64 CPU computation (a peer that silently returns wrong
// data, e.g. past a binding-size limit, is reported as an error, not timed).
//
// Usage: bash scripts/run-ts.sh bench/peers/webgpu-peers.ts [--peers tfjs,jax] [--ops matmul,softmax]
//        [--shapes 1024x1024x1024,...] [--runs 5] [--budget-s 120]   (budget: seconds of timed runs per case)
import { readFileSync } from 'node:fs';
import { create, globals } from 'webgpu';

// Both libraries look for navigator.gpu (Node 20 has no navigator); jax-js's WebGPU module also reads
// navigator.userAgent at import (a Firefox workaround) and throws without it. Dawn's GPU object must stay referenced
// for the whole process: once garbage-collected, the next large dispatch crashes (shared/LAVAPIPE.md).
process.env.XDG_RUNTIME_DIR ??= '/tmp';
Object.assign(globalThis, globals);
const DAWN_GPU: GPU = create([]);
(globalThis as unknown as { navigator: { gpu: GPU; userAgent: string } }).navigator = {
  gpu: DAWN_GPU,
  userAgent: `Node.js/${process.versions.node}`,
};

type Out = ArrayLike<number>;

interface Instance {
  run(): Promise<Out>;
  dispose(): void;
}

interface Peer {
  name: string;
  init(): Promise<{ device: GPUDevice; version: string }>;
  matmul(m: number, k: number, n: number, a: Float32Array, b: Float32Array): Instance;
  softmax(rows: number, cols: number, x: Float32Array): Instance;
}

interface Case {
  op: 'matmul' | 'softmax';
  shape: string;
  dims: number[];
  flops?: number;
  bytes?: number;
}

/** The LM head last: on a CPU adapter one run takes minutes. */
const DEFAULT_CASES: Case[] = [
  ...[[1024, 1024, 1024], [4096, 512, 2048], [4096, 2048, 512]].map(([m, k, n]) => matmulCase(m!, k!, n!)),
  { op: 'softmax', shape: '16384x256', dims: [16384, 256], bytes: 2 * 4 * 16384 * 256 },
  matmulCase(4096, 512, 32128),
];

function matmulCase(m: number, k: number, n: number): Case {
  return { op: 'matmul', shape: `${m}x${k}x${n}`, dims: [m, k, n], flops: 2 * m * k * n };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function random(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

/** A package's version from node_modules (jax-js exports no version, and its package.json is not an export). */
function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** Spot check of C = A·B at 64 entries, error relative to Σ|a·b| of each entry (float32 accumulation noise). */
function checkMatmul(c: Out, a: Float32Array, b: Float32Array, m: number, k: number, n: number): number {
  if (c.length !== m * n) throw new Error(`result has ${c.length} elements, expected ${m * n}`);
  let worst = 0;
  for (let t = 0; t < 64; t++) {
    const i = t === 0 ? m - 1 : Math.floor(((t * 2654435761) % 4294967296) / 4294967296 * m);
    const j = t === 0 ? n - 1 : Math.floor(((t * 40503 + 17) % 65536) / 65536 * n);
    let s = 0;
    let mag = 0;
    for (let q = 0; q < k; q++) {
      const p = a[i * k + q]! * b[q * n + j]!;
      s += p;
      mag += Math.abs(p);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j]! - s) / Math.max(mag, 1e-30));
  }
  return worst;
}

/** Spot check of row softmax at 16 rows, relative error per element. */
function checkSoftmax(y: Out, x: Float32Array, rows: number, cols: number): number {
  if (y.length !== rows * cols) throw new Error(`result has ${y.length} elements, expected ${rows * cols}`);
  let worst = 0;
  for (let t = 0; t < 16; t++) {
    const r = t === 0 ? rows - 1 : Math.floor((t / 16) * rows);
    let mx = -Infinity;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, x[r * cols + c]!);
    let z = 0;
    for (let c = 0; c < cols; c++) z += Math.exp(x[r * cols + c]! - mx);
    for (let c = 0; c < cols; c++) {
      const want = Math.exp(x[r * cols + c]! - mx) / z;
      worst = Math.max(worst, Math.abs(y[r * cols + c]! - want) / want);
    }
  }
  return worst;
}

// ------------------------------------------------------------------------------------------------------------------
// TensorFlow.js: the WebGPU backend registers itself at import time if navigator.gpu exists, so it is imported
// dynamically, after the global is set. Its own device, from its own requestAdapter on the same navigator.gpu.

type Tf = typeof import('@tensorflow/tfjs-core');
let tf: Tf;

const tfjsPeer: Peer = {
  name: 'tfjs-webgpu',
  async init() {
    tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") failed');
    await tf.ready();
    const backend = tf.backend() as unknown as { device: GPUDevice };
    return { device: backend.device, version: tf.version_core };
  },
  matmul(m, k, n, a, b) {
    const ta = tf.tensor2d(a, [m, k]);
    const tb = tf.tensor2d(b, [k, n]);
    return {
      async run() {
        const c = tf.matMul(ta, tb);
        const d = await c.data();
        c.dispose();
        return d as Float32Array;
      },
      dispose() {
        ta.dispose();
        tb.dispose();
      },
    };
  },
  softmax(rows, cols, x) {
    const tx = tf.tensor2d(x, [rows, cols]);
    return {
      async run() {
        const y = tf.softmax(tx);
        const d = await y.data();
        y.dispose();
        return d as Float32Array;
      },
      dispose() {
        tx.dispose();
      },
    };
  },
};

// ------------------------------------------------------------------------------------------------------------------
// jax-js: arrays are reference counted and ops consume their arguments, so each run passes `.ref`; `data()` realizes
// the lazy result, reads it back and disposes it. Its README lists Node as wasm-only because Node has no
// navigator.gpu: with Dawn's object installed as navigator.gpu, init('webgpu') opens the device.

type Jax = typeof import('@jax-js/jax');
let jax: Jax;

const jaxPeer: Peer = {
  name: 'jax-js-webgpu',
  async init() {
    jax = await import('@jax-js/jax');
    const devices = await jax.init('webgpu');
    if (!devices.includes('webgpu')) throw new Error(`jax.init('webgpu') gave no webgpu device (got ${devices.join(', ')})`);
    jax.defaultDevice('webgpu');
    const device = jax.getWebGPUDevice() as unknown as GPUDevice;
    return { device, version: packageVersion('@jax-js/jax') };
  },
  matmul(m, k, n, a, b) {
    const ja = jax.numpy.array(a, { shape: [m, k], device: 'webgpu' });
    const jb = jax.numpy.array(b, { shape: [k, n], device: 'webgpu' });
    return {
      async run() {
        return (await jax.numpy.matmul(ja.ref, jb.ref).data()) as Float32Array;
      },
      dispose() {
        ja.dispose();
        jb.dispose();
      },
    };
  },
  softmax(rows, cols, x) {
    const jx = jax.numpy.array(x, { shape: [rows, cols], device: 'webgpu' });
    return {
      async run() {
        return (await jax.nn.softmax(jx.ref, -1).data()) as Float32Array;
      },
      dispose() {
        jx.dispose();
      },
    };
  },
};

// ------------------------------------------------------------------------------------------------------------------

function print(row: Record<string, unknown>): void {
  console.log(JSON.stringify(row));
}

async function measure(peer: Peer, device: GPUDevice, c: Case, runs: number, budgetMs: number): Promise<void> {
  const base = { peer: peer.name, op: c.op, shape: c.shape };
  const errors: string[] = [];
  const onError = (ev: Event) => errors.push((ev as GPUUncapturedErrorEvent).error.message);
  device.addEventListener('uncapturederror', onError);
  let inst: Instance | null = null;
  try {
    let check: (out: Out) => number;
    if (c.op === 'matmul') {
      const [m, k, n] = c.dims as [number, number, number];
      const a = random(m * k, 1);
      const b = random(k * n, 2);
      inst = peer.matmul(m, k, n, a, b);
      check = (out) => checkMatmul(out, a, b, m, k, n);
    } else {
      const [rows, cols] = c.dims as [number, number];
      const x = random(rows * cols, 3).map((v) => 4 * v);
      inst = peer.softmax(rows, cols, x);
      check = (out) => checkSoftmax(out, x, rows, cols);
    }
    const t0 = performance.now();
    const first = await inst.run();
    const warmMs = performance.now() - t0;
    if (errors.length) throw new Error(`WebGPU error: ${errors[0]}`);
    const err = check(first);
    // float32 accumulation over k ≤ 2048 terms stays far below 1e-3 of Σ|a·b|; more means wrong data
    if (!(err <= 1e-3)) throw new Error(`wrong result: spot-check relative error ${err.toExponential(2)}`);
    // timed runs share a time budget per case: a run of minutes (the LM head on a CPU adapter) is timed fewer
    // times, at least once; `runs` in the output says how many
    const n = Math.max(1, Math.min(runs, Math.floor(budgetMs / Math.max(warmMs, 1))));
    const times: number[] = [];
    for (let r = 0; r < n; r++) {
      const s = performance.now();
      await inst.run();
      times.push(performance.now() - s);
    }
    if (errors.length) throw new Error(`WebGPU error: ${errors[0]}`);
    const ms = median(times);
    print({
      ...base, ms: +ms.toFixed(2),
      ...(c.flops ? { gflops: +(c.flops / ms / 1e6).toFixed(2) } : {}),
      ...(c.bytes ? { gbps: +(c.bytes / ms / 1e6).toFixed(2) } : {}),
      runs: n, minMs: +Math.min(...times).toFixed(2), warmupMs: +warmMs.toFixed(1), maxRelErr: +err.toExponential(2),
    });
  } catch (e) {
    print({ ...base, error: (e as Error).message.split('\n')[0]!.slice(0, 300) });
  } finally {
    try {
      inst?.dispose();
    } catch {
      // a failed op can leave the peer's tensors in any state; the next case uses fresh ones
    }
    device.removeEventListener('uncapturederror', onError);
  }
}

async function main(): Promise<void> {
  const wantedPeers = (arg('peers') ?? 'tfjs,jax').split(',');
  const ops = (arg('ops') ?? 'matmul,softmax').split(',');
  const shapes = arg('shapes')?.split(',');
  const runs = Number(arg('runs') ?? 5);
  const budgetMs = 1000 * Number(arg('budget-s') ?? 120);
  const cases = DEFAULT_CASES.filter((c) => ops.includes(c.op) && (!shapes || shapes.includes(c.shape)));
  const adapter = await DAWN_GPU.requestAdapter({ powerPreference: 'high-performance' });
  const info = adapter?.info;
  print({
    peer: 'adapter', name: info?.description || info?.device || info?.vendor, architecture: info?.architecture,
    maxStorageBufferBindingSize: adapter?.limits.maxStorageBufferBindingSize, maxBufferSize: adapter?.limits.maxBufferSize,
    note: 'same Dawn navigator.gpu for every peer; ms = median, from op call to result data on the host',
  });
  const peers = [tfjsPeer, jaxPeer].filter((p) => wantedPeers.some((w) => p.name.startsWith(w)));
  const ready: Array<{ peer: Peer; device: GPUDevice }> = [];
  for (const peer of peers) {
    try {
      const r = await peer.init();
      ready.push({ peer, device: r.device });
      print({ peer: peer.name, op: 'init', version: r.version });
    } catch (e) {
      for (const c of cases) print({ peer: peer.name, op: c.op, shape: c.shape, error: `init failed: ${(e as Error).message}` });
    }
  }
  // case by case, peers side by side: the machine's load drifts less between two numbers that are compared
  for (const c of cases) for (const { peer, device } of ready) await measure(peer, device, c, runs, budgetMs);
}

await main();
// keep Dawn's GPU object reachable until the very end
if (!DAWN_GPU) throw new Error('unreachable');
process.exit(0);
