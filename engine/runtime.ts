// Recording kernels: pipelines cached by shader source and layout, every dispatch recorded into one
// compute pass of one command encoder, submitted in batches. On lavapipe a submit costs ~15 µs and a
// submit-and-wait ~64 µs, against ~7 µs for a dispatch inside an open pass (shared/LAVAPIPE.md).
import { BufferPool, sizeClass } from './buffer-pool.ts';
import { gpu, Gpu, GpuError } from './gpu.ts';
import { platform } from './platform.ts';

/** Dispatches recorded before a submit is forced; the GPU starts on a batch while the CPU records the next. */
const MAX_DISPATCHES_PER_SUBMIT = 128;
/** Uploads up to this size made while work is recorded go through a staging copy in recording order (see
 * `write`); larger ones submit the recorded work first. */
const STAGED_WRITE_MAX_BYTES = 1 << 20;
/** Small uploads of one batch are packed into staging buffers of this size (a larger one gets its own). */
const STAGING_CHUNK_BYTES = 64 * 1024;
/** Readback staging buffers kept for reuse, at most this many bytes of them (see `read`). */
const READBACK_KEEP_BYTES = 64 << 20;
/** WebGPU's minUniformBufferOffsetAlignment is at most 256 on every adapter. */
const UNIFORM_SLOT_BYTES = 256;
/** Bind groups kept for reuse (see `bindGroupFor`); past this many the cache starts over. */
const BIND_GROUP_CACHE_MAX = 4096;

export type ParamType = 'u32' | 'i32' | 'f32';
export type Param = [ParamType, number];

export interface BufferBinding {
  buffer: GPUBuffer;
  /** byte offset and size of the bound range; default: the whole buffer */
  offset?: number;
  size?: number;
  /** a read-only binding (`var<storage, read>`), or read-write */
  write: boolean;
  /** bound as `var<uniform>` instead (read-only, at most maxUniformBufferBindingSize; the buffer needs UNIFORM
   * usage, so it is not a pooled tensor buffer) */
  uniform?: boolean;
  /** what the binding holds, for error messages */
  what: string;
}

export interface KernelLaunch {
  /** op name: shows up in WebGPU error messages and profiles */
  name: string;
  code: string;
  entryPoint?: string;
  /** buffer bindings 0..n-1, in order; a uniform `params` struct, if given, is binding n */
  bindings: BufferBinding[];
  params?: Param[];
  workgroups: [number, number?, number?];
  /** for profiles only: the call site (a matmul's shapes) and the FLOPs this launch does */
  site?: string;
  flops?: number;
}

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** names the layout in bind-group cache keys */
  id: number;
}

export interface RuntimeCounters {
  dispatches: number;
  submits: number;
  pipelinesCompiled: number;
  readbacks: number;
  bindGroupsCreated: number;
}

export class Runtime {
  readonly pool: BufferPool;
  /** shader source -> `entryPoint|binding kinds` -> pipeline */
  private pipelines = new Map<string, Map<string, CachedPipeline>>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  /** staging buffers of writes recorded since the last submit, destroyed once it is submitted */
  private staged: GPUBuffer[] = [];
  /** the staging buffer small uploads are packed into, still mapped; unmapped before the batch is submitted */
  private staging: { buffer: GPUBuffer; bytes: Uint8Array; used: number } | null = null;
  /** idle readback buffers (MAP_READ), by size class */
  private readbacks = new Map<number, GPUBuffer[]>();
  private readbackBytes = 0;
  private uniformArena: GPUBuffer;
  private uniformCpu: DataView;
  private uniformBytes = new Uint8Array(MAX_DISPATCHES_PER_SUBMIT * UNIFORM_SLOT_BYTES);
  private uniformUsed = 0;
  private lastOps: string[] = [];
  /** layout id and bound ranges -> bind group; the params binding takes its slot as a dynamic offset */
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  /** false: a new bind group per dispatch (A/B timings and the test that the cache changes nothing) */
  cacheBindGroups = true;
  readonly counters: RuntimeCounters = { dispatches: 0, submits: 0, pipelinesCompiled: 0, readbacks: 0, bindGroupsCreated: 0 };
  private readonly maxUniformBinding: number;

  constructor(readonly gpu: Gpu) {
    this.pool = new BufferPool(gpu.device, gpu.limits.maxBufferSize);
    this.uniformArena = this.createOther({
      size: this.uniformBytes.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'uniform arena',
    });
    this.uniformCpu = new DataView(this.uniformBytes.buffer);
    this.maxUniformBinding = gpu.device.limits.maxUniformBufferBindingSize;
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  private pipelineFor(k: KernelLaunch): CachedPipeline {
    const sig = k.bindings.map(bindingKind).join('') + (k.params ? 'p' : '');
    const key = `${k.entryPoint ?? 'main'}|${sig}`;
    // keyed by the source string itself, not a key built around it: the kernels hand over the same string object
    // each time, whose hash V8 keeps, while a concatenated key was hashed anew, kilobytes per dispatch (CPU
    // profile of greedy decoding: 59 µs per dispatch, a sixth of the host's recording time)
    let byLayout = this.pipelines.get(k.code);
    if (!byLayout) this.pipelines.set(k.code, (byLayout = new Map()));
    let cached = byLayout.get(key);
    if (!cached) {
      const entries: GPUBindGroupLayoutEntry[] = k.bindings.map((b, i) => ({
        binding: i,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.uniform ? 'uniform' : b.write ? 'storage' : 'read-only-storage' },
      }));
      if (k.params) {
        entries.push({
          binding: k.bindings.length,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: 'uniform', hasDynamicOffset: true },
        });
      }
      const layout = this.device.createBindGroupLayout({ entries, label: k.name });
      const module = this.device.createShaderModule({ code: k.code, label: k.name });
      const pipeline = this.device.createComputePipeline({
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout], label: k.name }),
        compute: { module, entryPoint: k.entryPoint ?? 'main' },
        label: k.name,
      });
      this.counters.pipelinesCompiled++;
      cached = { pipeline, layout, id: this.nextId++ };
      byLayout.set(key, cached);
    }
    return cached;
  }

  /** Records one kernel; nothing runs until a submit (automatic, or `flush`, `read`, `sync`). */
  dispatch(k: KernelLaunch): void {
    for (const b of k.bindings) {
      const size = b.size ?? b.buffer.size;
      const maxBinding = b.uniform ? this.maxUniformBinding : this.gpu.limits.maxStorageBufferBindingSize;
      if (size > maxBinding) {
        const limit = b.uniform ? 'maxUniformBufferBindingSize' : 'maxStorageBufferBindingSize';
        throw new RangeError(
          `${k.name}: ${b.what} needs a ${size}-byte binding, over this adapter's ${limit} ` +
            `(${maxBinding} bytes); split the tensor or bind it in ranges`,
        );
      }
    }
    const [x, y = 1, z = 1] = k.workgroups;
    const maxWg = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new RangeError(`${k.name}: ${x}x${y}x${z} workgroups exceed the per-dimension limit ${maxWg}`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    if (this.pending >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
    const cached = this.pipelineFor(k);
    const bindGroup = this.bindGroupFor(k, cached);
    let slot = 0;
    if (k.params) {
      slot = this.uniformUsed;
      this.writeParams(slot, k.params);
      this.uniformUsed += UNIFORM_SLOT_BYTES;
    }
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    this.pass ??= this.encoder.beginComputePass({ label: 'batch' });
    this.pass.setPipeline(cached.pipeline);
    if (k.params) this.pass.setBindGroup(0, bindGroup, [slot]);
    else this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.pending++;
    this.counters.dispatches++;
    this.lastOps.push(k.name);
  }

  /**
   * The bind group of a launch's bindings, made once per layout and set of bound ranges. A decoding step records
   * the same ~100 launches on the same pooled buffers every step, and Dawn validates each new bind group; the
   * params binding is the uniform arena at a dynamic offset, so it does not split the key. A cached group that
   * holds a destroyed buffer is never hit again: the pool does not reuse a destroyed buffer.
   */
  private bindGroupFor(k: KernelLaunch, cached: CachedPipeline): GPUBindGroup {
    let key = '';
    if (this.cacheBindGroups) {
      key = `${cached.id}`;
      for (const b of k.bindings) key += `|${this.bufferId(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
      const hit = this.bindGroups.get(key);
      if (hit) return hit;
    }
    const entries: GPUBindGroupEntry[] = k.bindings.map((b, i) => ({
      binding: i,
      resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size },
    }));
    if (k.params) {
      entries.push({ binding: k.bindings.length, resource: { buffer: this.uniformArena, offset: 0, size: UNIFORM_SLOT_BYTES } });
    }
    const group = this.device.createBindGroup({ layout: cached.layout, entries, label: k.name });
    this.counters.bindGroupsCreated++;
    if (this.cacheBindGroups) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE_MAX) this.bindGroups.clear();
      this.bindGroups.set(key, group);
    }
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = this.nextId++));
    return id;
  }

  private writeParams(offset: number, params: Param[]): void {
    if (params.length * 4 > UNIFORM_SLOT_BYTES) throw new RangeError('kernel params exceed 256 bytes');
    params.forEach(([type, v], i) => {
      const at = offset + i * 4;
      if (type === 'f32') this.uniformCpu.setFloat32(at, v, true);
      else if (type === 'i32') this.uniformCpu.setInt32(at, v, true);
      else this.uniformCpu.setUint32(at, v, true);
    });
  }

  /** The encoder with the compute pass closed, for copies. */
  private copyEncoder(): GPUCommandEncoder {
    this.pass?.end();
    this.pass = null;
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    return this.encoder;
  }

  /** Submits what was recorded. */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.uniformUsed > 0) {
      // queue.writeBuffer runs in queue order, so this lands before the commands below and after earlier batches
      this.device.queue.writeBuffer(this.uniformArena, 0, this.uniformBytes, 0, this.uniformUsed);
    }
    this.unmapStaging();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pending = 0;
    this.uniformUsed = 0;
    this.counters.submits++;
    // WebGPU defers the destruction of a buffer until the submitted work using it has finished
    for (const b of this.staged.splice(0)) this.destroyOther(b);
    this.pool.destroyRetired();
    const ops = this.lastOps.splice(0);
    this.gpu.check(`a batch of ${ops.length} kernels (${[...new Set(ops)].slice(0, 8).join(', ')})`);
  }

  /**
   * Uploads bytes into a buffer. Recorded work that is not yet submitted may still read the buffer's old
   * contents (a pooled buffer is reused as soon as its tensor is freed), and queue.writeBuffer would overtake
   * it. So while work is recorded, a small upload is copied from a staging buffer as the next recorded command;
   * a large one submits the recorded work first. Submitting instead cut each decoding step into pieces: one
   * step of t5-small uploaded 9 values of 4 bytes (token ids, the cache's row table, attention's zero operand)
   * and submitted 8 times. The uploads of one batch share a staging buffer, mapped until the submit (a buffer
   * each cost ~75 µs of host time per upload: 0.7 ms of a greedy decoding step).
   */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    const bytes = data.byteLength;
    if (this.encoder && bytes <= STAGED_WRITE_MAX_BYTES && bytes % 4 === 0 && offset % 4 === 0) {
      if (bytes === 0) return;
      let s = this.staging;
      if (!s || s.used + bytes > s.bytes.byteLength) {
        this.unmapStaging();
        const staged = this.createOther({
          size: Math.max(STAGING_CHUNK_BYTES, bytes), usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true, label: 'staged writes',
        });
        this.staged.push(staged);
        s = this.staging = { buffer: staged, bytes: new Uint8Array(staged.getMappedRange()), used: 0 };
      }
      s.bytes.set(new Uint8Array(data.buffer, data.byteOffset, bytes), s.used);
      this.copy(s.buffer, s.used, buffer, offset, bytes);
      s.used += bytes; // a multiple of 4, as copyBufferToBuffer's offsets must be
      return;
    }
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  private unmapStaging(): void {
    this.staging?.buffer.unmap();
    this.staging = null;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.copyEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.pending++;
  }

  /** Gives every free pooled buffer back to the driver (PyTorch's torch.cuda.empty_cache). */
  emptyCache(): void {
    this.flush();
    this.pool.trim();
    this.pool.destroyRetired();
    for (const list of this.readbacks.values()) for (const b of list) this.destroyOther(b);
    this.readbacks.clear();
    this.readbackBytes = 0;
  }

  /**
   * Reads bytes back (into `into` when it is large enough: a loop that reads the same size every step spares
   * the garbage collector a new buffer each time); waits only for the work recorded so far. The staging buffer
   * is kept for the next read of its size class: a new one each time cost ~8 ms for the 8 MB of log-probs a
   * 4-beam batch-16 step reads (its creation and Dawn's zeroing of it, on the CPU under lavapipe).
   */
  async read(buffer: GPUBuffer, offset: number, bytes: number, what: string, into?: ArrayBuffer): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const cls = sizeClass(size);
    const kept = this.readbacks.get(cls)?.pop();
    if (kept) this.readbackBytes -= cls;
    const staging = kept ?? this.createOther({ size: cls, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
    this.copyEncoder().copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.flush();
    this.counters.readbacks++;
    try {
      await platform().gpuWait(() => staging.mapAsync(GPUMapMode.READ, 0, size));
      this.gpu.check(`reading back ${what}`);
    } catch (e) {
      this.destroyOther(staging);
      this.gpu.check(`reading back ${what}`);
      if (e instanceof GpuError) throw e;
      throw new GpuError(`reading back ${what} failed: ${(e as Error).message}`);
    }
    let out: ArrayBuffer;
    if (into && into.byteLength >= bytes) {
      new Uint8Array(into, 0, bytes).set(new Uint8Array(staging.getMappedRange(0, size), 0, bytes));
      out = into;
    } else {
      out = staging.getMappedRange(0, size).slice(0, bytes);
    }
    staging.unmap();
    this.keepReadback(staging);
    return out;
  }

  /** A GPU buffer outside the pool, counted in memory().bytesOther and so in peakBytes until destroyOther. */
  createOther(desc: GPUBufferDescriptor): GPUBuffer {
    const b = this.device.createBuffer(desc);
    this.pool.noteOther(b.size);
    return b;
  }

  destroyOther(b: GPUBuffer): void {
    this.pool.noteOther(-b.size);
    b.destroy();
  }

  private keepReadback(b: GPUBuffer): void {
    if (this.readbackBytes + b.size > READBACK_KEEP_BYTES) {
      this.destroyOther(b);
      return;
    }
    const list = this.readbacks.get(b.size) ?? [];
    list.push(b);
    this.readbacks.set(b.size, list);
    this.readbackBytes += b.size;
  }

  /** Submits everything and waits until the GPU has finished it. */
  async sync(): Promise<void> {
    this.flush();
    await platform().gpuWait(() => this.device.queue.onSubmittedWorkDone());
    this.gpu.check('waiting for the GPU');
  }
}

function bindingKind(b: BufferBinding): string {
  return b.uniform ? 'u' : b.write ? 'w' : 'r';
}

let runtime: Runtime | null = null;

/** The process-wide runtime on the device opened by `initGpu()`. */
export function rt(): Runtime {
  const g = gpu();
  if (!runtime || runtime.gpu !== g) runtime = new Runtime(g);
  return runtime;
}

/** Workgroup grid for `n` workgroups along one logical axis, folded into 2-D past the per-dimension limit.
 * Kernels recover the index as `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups) nwg`). */
export function grid1D(n: number): [number, number] {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (n <= max) return [n, 1];
  const y = Math.ceil(n / max);
  return [Math.ceil(n / y), y];
}
