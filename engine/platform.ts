// What the engine needs from its host, and nothing more: a WebGPU entry point, named settings, and a small text
// cache for measured results (ceilings, matmul autotuning). Node (platform-node.ts: Dawn's `webgpu` package,
// environment variables, files under ~/.cache/t5-webgpu) and a web page (platform-browser.ts: navigator.gpu,
// no settings, an in-memory cache) each provide one. The engine never imports `node:` modules or `webgpu` itself,
// so a browser bundle of it pulls neither.

export interface Platform {
  readonly name: 'node' | 'browser';
  /** The WebGPU entry point; `flags` are Dawn toggles (backend=..., adapter=...) that only Node understands. */
  gpu(flags: readonly string[]): GPU;
  /** Whether `gpu(flags)` honours backend and adapter flags (Dawn does; a page has one navigator.gpu). */
  readonly choosesBackends: boolean;
  /** A named setting (T5_WEBGPU_BACKEND, ...): the environment in Node, nothing in a page. */
  setting(name: string): string | undefined;
  /** The cached text under `name` (e.g. 'matmul-autotune.json'), or null when there is none. */
  readCache(name: string): string | null;
  /** Stores text under `name`; may throw (the callers only lose a measurement). */
  writeCache(name: string, text: string): Promise<void>;
  /** Where `name` lives, for messages (a path in Node). */
  cacheLocation(name: string): string;
  /** The host's processor (Node: its model name), when the platform can tell: what a CPU adapter's speed is. */
  readonly hostCpu?: string;
  /** Awaits a promise of the WebGPU implementation (mapAsync, onSubmittedWorkDone, popErrorScope) that `start`
   * begins; Node's waits without a busy loop on the main thread (platform-node.ts). */
  gpuWait<T>(start: () => Promise<T>): Promise<T>;
}

let current: Platform | null = null;

/** Installs the host's platform; the entry points (index.ts through platform-node.ts, browser.ts) call it. */
export function setPlatform(p: Platform): void {
  current = p;
}

/** The installed platform; before any entry point installs one, a web page's (when there is `navigator.gpu`)
 * or Node's, loaded on first use. */
export async function loadPlatform(): Promise<Platform> {
  if (current) return current;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  if (!inNode && nav) {
    const { browserPlatform } = await import('./platform-browser.ts');
    current = browserPlatform;
  } else {
    const { nodePlatform } = await import('./platform-node.ts');
    current = nodePlatform;
  }
  return current;
}

/** The platform after `loadPlatform()` (initGpu awaits it, so every op after initGpu can use this). */
export function platform(): Platform {
  if (!current) throw new Error('t5-webgpu: no platform yet: call `await initGpu()` first');
  return current;
}
