// Node's platform: Dawn's GPU objects from the `webgpu` package, settings from the environment, and the
// measured-results cache as files in ${T5_WEBGPU_CACHE_DIR:-~/.cache/t5-webgpu}, written atomically.
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { writeFileAtomic } from '../util/atomic-write.ts';
import type { Platform } from './platform.ts';

Object.assign(globalThis, globals);

// Dawn's GPU object must outlive every submit: once it is garbage-collected, the next large dispatch
// crashes the process (futex EINVAL or a segfault). Every `create()` result is kept here for good.
const keepAlive: GPU[] = [];

// Dawn's binding settles mapAsync, onSubmittedWorkDone and popErrorScope by ticking the device from one
// setImmediate callback to the next until they complete (its AsyncRunner looks `setImmediate` up on the global
// object at every tick): a busy loop on the main thread for as long as the GPU works. Under lavapipe the GPU is
// the machine's cores, so the loop took one of this machine's two from the kernels it waited for: matmul 1024³
// ran at 11.7 GFLOP/s with it and 17.0 without, greedy decoding took 3.7-3.9 s instead of 2.4-3.1. While one of
// our waits is pending, ticks go at full speed for its first POLL_SPIN_MS (a short wait, such as a decoding step
// of a small model or an autotune timing, ends without added latency) and then through setTimeout, spaced by
// 1/POLL_BACKOFF of the time waited so far, from 1 ms up to POLL_MAX_MS. A tick costs ~45 µs of the main thread
// here, so 1 ms apart they took 4-5% of a core from a long wait (a training step: ~250 ms of its ~5.5 s), and the
// backoff delays the end of a wait by at most 1/POLL_BACKOFF of it. Other code that calls setImmediate during
// such a wait gets the same delay.
const POLL_SPIN_MS = 1;
const POLL_BACKOFF = 32;
const POLL_MAX_MS = 16;
let waits = 0;
let waitStart = 0;
let spinUntil = 0;
let nativeSetImmediate: typeof setImmediate | null = null;

function politeSetImmediate(this: unknown, fn: (...args: unknown[]) => void, ...args: unknown[]) {
  const now = performance.now();
  if (now < spinUntil) return nativeSetImmediate!(fn, ...args);
  const delay = Math.min(POLL_MAX_MS, Math.max(1, Math.floor((now - waitStart) / POLL_BACKOFF)));
  return setTimeout(fn, delay, ...args);
}

async function gpuWait<T>(start: () => Promise<T>): Promise<T> {
  // the backoff counts from the newest pending wait: one that starts while another is pending (a read behind a
  // sync) must not inherit the older one's long interval
  waitStart = performance.now();
  spinUntil = waitStart + POLL_SPIN_MS;
  if (waits++ === 0) {
    nativeSetImmediate = globalThis.setImmediate;
    globalThis.setImmediate = politeSetImmediate as unknown as typeof setImmediate;
  }
  try {
    return await start();
  } finally {
    if (--waits === 0) {
      globalThis.setImmediate = nativeSetImmediate!;
      nativeSetImmediate = null;
    }
  }
}

const cacheDir = (): string => process.env.T5_WEBGPU_CACHE_DIR || join(homedir(), '.cache', 't5-webgpu');

export const nodePlatform: Platform = {
  name: 'node',
  gpu(flags) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp'; // lavapipe refuses to start without it
    const gpu = create([...flags]);
    keepAlive.push(gpu);
    return gpu;
  },
  choosesBackends: true,
  setting: (name) => process.env[name],
  readCache(name) {
    try {
      return readFileSync(join(cacheDir(), name), 'utf8');
    } catch {
      return null;
    }
  },
  async writeCache(name, text) {
    mkdirSync(cacheDir(), { recursive: true });
    await writeFileAtomic(join(cacheDir(), name), text);
  },
  cacheLocation: (name) => join(cacheDir(), name),
  hostCpu: cpus()[0]?.model.trim() || undefined,
  gpuWait,
};
