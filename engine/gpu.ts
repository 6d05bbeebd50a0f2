// The WebGPU device: adapter choice, limits, features, and turning WebGPU's asynchronous errors into
// exceptions that name the operation that caused them.
// The host (Dawn in Node, navigator.gpu in a page) comes from platform.ts: this file imports neither.
import { loadPlatform, platform, type Platform } from './platform.ts';

export type Backend = 'vulkan' | 'metal' | 'd3d12' | 'd3d11' | 'opengl' | 'opengles' | 'null';
const BACKENDS: Backend[] = ['vulkan', 'metal', 'd3d12', 'd3d11', 'opengl', 'opengles'];
const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups' as GPUFeatureName, 'timestamp-query'];

export interface GpuOptions {
  /** Dawn backend; default: env T5_WEBGPU_BACKEND, else Dawn's choice. */
  backend?: Backend;
  /** Substring of the adapter name; default: env T5_WEBGPU_ADAPTER. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
}

export interface AdapterSummary {
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  backend: string;
  driver: string;
  isSoftware: boolean;
}

export class GpuError extends Error {
  override name = 'GpuError';
}


function summarize(adapter: GPUAdapter, backend: string): AdapterSummary {
  const info = adapter.info as GPUAdapterInfo & { driver?: string; backendType?: string };
  const description = info.description ?? '';
  const name = info.device || description || info.vendor || 'unknown adapter';
  return {
    name,
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    description,
    backend: info.backendType ?? backend,
    driver: info.driver ?? description,
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(`${name} ${description} ${info.architecture}`),
  };
}

/** Every adapter Dawn can open on this machine, backend by backend. */
export async function listAdapters(): Promise<AdapterSummary[]> {
  const host = await loadPlatform();
  const found: AdapterSummary[] = [];
  if (!host.choosesBackends) {
    const a = await host.gpu([]).requestAdapter();
    return a ? [summarize(a, '')] : [];
  }
  for (const backend of BACKENDS) {
    try {
      const gpu = host.gpu([`backend=${backend}`]);
      for (const powerPreference of ['high-performance', 'low-power'] as const) {
        const a = await gpu.requestAdapter({ powerPreference });
        if (!a) continue;
        const s = summarize(a, backend);
        if (!found.some((f) => f.name === s.name && f.backend === s.backend)) found.push(s);
      }
    } catch {
      // a backend that is not compiled in or has no driver simply offers nothing
    }
  }
  return found;
}

export interface DeviceLimitsSummary {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupStorageSize: number;
  maxStorageBuffersPerShaderStage: number;
  minUniformBufferOffsetAlignment: number;
  minStorageBufferOffsetAlignment: number;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

export class Gpu {
  readonly features: Set<string>;
  readonly limits: DeviceLimitsSummary;
  private errors: string[] = [];
  private lostReason: string | null = null;

  constructor(
    readonly device: GPUDevice,
    readonly adapter: GPUAdapter,
    readonly info: AdapterSummary,
  ) {
    this.features = new Set([...device.features] as string[]);
    const l = device.limits;
    const ai = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
    this.limits = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
      subgroupMinSize: ai.subgroupMinSize,
      subgroupMaxSize: ai.subgroupMaxSize,
    };
    device.addEventListener('uncapturederror', (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
    void device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  get hasSubgroups(): boolean {
    return this.features.has('subgroups');
  }
  get hasF16(): boolean {
    return this.features.has('shader-f16');
  }
  get hasTimestamps(): boolean {
    return this.features.has('timestamp-query');
  }

  /** Throws if the device was lost or WebGPU reported an error since the last check. */
  check(context: string): void {
    if (this.lostReason !== null) throw new GpuError(`WebGPU device lost (${this.lostReason}) during ${context}`);
    if (this.errors.length > 0) {
      const msgs = this.errors.splice(0).join('\n  ');
      throw new GpuError(`WebGPU error during ${context}:\n  ${msgs}`);
    }
  }
}

async function openAdapter(host: Platform, opts: GpuOptions): Promise<{ adapter: GPUAdapter; backend: string } | { dawnList: string }> {
  const flags: string[] = [];
  if (opts.backend) flags.push(`backend=${opts.backend}`);
  if (opts.adapter) flags.push(`adapter=${opts.adapter}`);
  try {
    const gpu = host.gpu(flags);
    const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    return adapter ? { adapter, backend: opts.backend ?? '' } : { dawnList: '' };
  } catch (e) {
    // Dawn names the adapters it has when a requested one is missing: pass its list on
    const msg = (e as Error).message ?? '';
    const at = msg.indexOf('Available adapters:');
    return { dawnList: at >= 0 ? msg.slice(at + 'Available adapters:'.length).trim() : '' };
  }
}

/** Opens a device with the adapter's largest limits and every optional feature it offers. */
export async function openGpu(options: GpuOptions = {}): Promise<Gpu> {
  const host = await loadPlatform();
  const opts: GpuOptions = {
    backend: options.backend ?? (host.setting('T5_WEBGPU_BACKEND') as Backend | undefined) ?? undefined,
    adapter: options.adapter ?? host.setting('T5_WEBGPU_ADAPTER') ?? undefined,
    powerPreference: options.powerPreference,
  };
  if (opts.backend && !BACKENDS.includes(opts.backend) && opts.backend !== 'null') {
    throw new GpuError(`unknown WebGPU backend '${opts.backend}'; choose one of ${BACKENDS.join(', ')}`);
  }
  if (!host.choosesBackends && (opts.backend || opts.adapter)) {
    throw new GpuError('a web page has one WebGPU adapter (navigator.gpu): backend and adapter cannot be chosen');
  }
  const opened = await openAdapter(host, opts);
  if ('dawnList' in opened && !host.choosesBackends) {
    throw new GpuError('this browser has WebGPU but offers no adapter (requestAdapter() gave null): enable hardware acceleration or WebGPU in its settings');
  }
  if ('dawnList' in opened) {
    const available = opened.dawnList
      ? opened.dawnList.split('\n').map((l) => l.trim().replace(/^\*\s*/, ''))
      : (await listAdapters()).map((a) => `backend: '${a.backend}', name: '${a.name}'`);
    const list = available.length
      ? available.map((a) => `  * ${a}`).join('\n')
      : '  (none: install a Vulkan driver such as Mesa lavapipe >= 24; `npm run setup` does it on Debian/Ubuntu)';
    const wanted = [opts.backend && `backend '${opts.backend}'`, opts.adapter && `adapter '${opts.adapter}'`]
      .filter(Boolean)
      .join(', ');
    throw new GpuError(`no WebGPU adapter${wanted ? ` matching ${wanted}` : ''}. Available adapters:\n${list}`);
  }
  const { adapter, backend } = opened;
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, number>)[key];
    if (typeof v === 'number') requiredLimits[key] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 't5-webgpu' });
  return new Gpu(device, adapter, summarize(adapter, backend));
}

let current: Promise<Gpu> | null = null;

/** The process-wide device, opened on first use. */
export function getGpu(options?: GpuOptions): Promise<Gpu> {
  current ??= openGpu(options);
  return current;
}

let currentSync: Gpu | null = null;
/** Opens the process-wide device; after this, ops run synchronously with `gpu()`. */
export async function initGpu(options?: GpuOptions): Promise<Gpu> {
  currentSync = await getGpu(options);
  return currentSync;
}

/** The device opened by `initGpu`; ops call this, so `await initGpu()` must come first. */
export function gpu(): Gpu {
  if (!currentSync) throw new GpuError('WebGPU is not initialised: call `await initGpu()` before creating tensors');
  return currentSync;
}

/**
 * The key of what is measured on a device and cached (ceilings, matmul autotuning): adapter and driver, and for a
 * CPU adapter (lavapipe) the host's processor as well, since the same driver name runs on every machine at that
 * machine's speed (a cache carried over from another machine was trusted as this one's).
 */
export function measurementKey(g: Gpu = gpu()): string {
  const base = `${g.info.name} | ${g.info.driver}`;
  const cpu = g.info.isSoftware ? platform().hostCpu : undefined;
  return cpu ? `${base} | ${cpu}` : base;
}
