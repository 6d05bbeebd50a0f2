// Dispatch of the tiled, register-blocked and subgroup matmul kernels, in chunks whose operand ranges fit a binding.
//
// Tensors larger than maxStorageBufferBindingSize (128 MiB on lavapipe; the t5-small LM head writes 526 MB)
// are bound in ranges: the work is split into chunks of batches, rows and columns whose operand ranges each fit
// one binding (offsets aligned to minStorageBufferOffsetAlignment), one dispatch per chunk. An operand range
// that no split can bring under the binding limit fails with an error naming the limit. On a CPU adapter a wide
// B is also split into column blocks that stay in cache (cacheBlockCols).
import { gpu } from '../engine/gpu.ts';
import { rt, type BufferBinding, type Param } from '../engine/runtime.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { MatmulKernelSpec } from './matmul.wgsl.ts';
import type { Problem } from './matmul-problem.ts';
import { kernelFor, MATMUL_TUNING } from './matmul-spec.ts';

interface Chunk {
  z0: number;
  zc: number;
  m0: number;
  mc: number;
  n0: number;
  nc: number;
}

export interface Window {
  offset: number; // bytes, aligned
  size: number; // bytes
  shift: number; // element shift to add to logical indices (u32 wrap)
}

/** Element range [lo, hi) an operand touches for a chunk (hi === lo: nothing). */
function ranges(p: Problem, o: Problem['outer'][number], ch: Chunk) {
  const { M, N, K } = p;
  const m1 = ch.m0 + ch.mc;
  const n1 = ch.n0 + ch.nc;
  let aLo = Infinity, aHi = -Infinity, bLo = Infinity, bHi = -Infinity, cLo = Infinity, cHi = -Infinity;
  for (let z = ch.z0; z < ch.z0 + ch.zc; z++) {
    const z1 = Math.floor(z / p.inner);
    const z2 = z - z1 * p.inner;
    const aOff = o.a.base + z1 * p.aS1 + z2 * p.aS2;
    const bOff = o.b.base + z1 * p.bS1 + z2 * p.bS2;
    const cOff = o.c.base + z * M * N;
    if (K > 0) {
      const [al, ah] = p.transA ? [ch.m0, (K - 1) * M + m1] : [ch.m0 * K, m1 * K];
      const [bl, bh] = p.transB ? [ch.n0 * K, n1 * K] : [ch.n0, (K - 1) * N + n1];
      aLo = Math.min(aLo, aOff + al);
      aHi = Math.max(aHi, aOff + ah);
      bLo = Math.min(bLo, bOff + bl);
      bHi = Math.max(bHi, bOff + bh);
    }
    cLo = Math.min(cLo, cOff + ch.m0 * N + ch.n0);
    cHi = Math.max(cHi, cOff + (m1 - 1) * N + n1);
  }
  return { a: [aLo, aHi], b: [bLo, bHi], c: [cLo, cHi] } as const;
}

/** The largest storage binding a matmul dispatch may use (MATMUL_TUNING.maxBindingBytes lowers it in tests) and
 * the alignment of a binding's offset. */
export function matmulBindingLimits(): { maxBind: number; align: number } {
  const g = gpu().limits;
  return {
    maxBind: Math.min(MATMUL_TUNING.maxBindingBytes ?? Infinity, g.maxStorageBufferBindingSize),
    align: Math.max(16, g.minStorageBufferOffsetAlignment),
  };
}

/** The aligned binding range covering elements [lo, hi) and the shift that maps an element index into it. */
export function windowOf([lo, hi]: readonly [number, number], align: number): Window {
  if (!(hi > lo)) return { offset: 0, size: 16, shift: 0 };
  const offset = Math.floor((lo * 4) / align) * align;
  const size = Math.ceil((hi * 4 - offset) / 4) * 4;
  return { offset, size, shift: -offset / 4 };
}

/** Bytes of B a chunk's row tiles share on a CPU adapter: within one core's L2 (1 MiB on Zen 4, 2 MiB on the
 * Xeons here). */
const CACHE_BLOCK_BYTES = 1 << 20;
/** Blocking pays from this size of B (in blocks; 32 MiB at 1 MiB) and this many row tiles. */
const CACHE_BLOCK_MIN_B_BLOCKS = 32;
const CACHE_BLOCK_MIN_ROW_TILES = 16;

/**
 * Columns per chunk for a wide B stored [K, N] on a CPU adapter, so that every row tile reads the same block
 * of it while the block is cached (Infinity: no limit). lavapipe runs a dispatch's workgroups x first, along
 * a row of tiles, so each row tile walked all of B; with N = 32,128 a tile's 32 columns are K rows 128 KB
 * apart, one page each: 4096x512x32128 ran at 26.5 GFLOP/s, and at 40-41 in blocks of 1 MiB (512 columns;
 * alternating processes). A Bᵀ stored [N, K] (a Linear weight, the LM head) reads a tile's columns as one
 * contiguous run and gained nothing (1024x768x32128ᵀ 45-46 either way), nor did 64 or 256 rows, where the
 * blocks only add dispatches.
 */
function cacheBlockCols(p: Problem, tile: { tileM: number; tileN: number }): number {
  const block = MATMUL_TUNING.cacheBlockBytes ?? (gpu().info.isSoftware ? CACHE_BLOCK_BYTES : 0);
  const colBytes = 4 * p.K;
  const wide = colBytes * p.N >= CACHE_BLOCK_MIN_B_BLOCKS * block;
  if (block <= 0 || p.transB || !wide || Math.ceil(p.M / tile.tileM) < CACHE_BLOCK_MIN_ROW_TILES) return Infinity;
  return Math.max(tile.tileN, Math.floor(block / colBytes / tile.tileN) * tile.tileN);
}

function planChunks(p: Problem, o: Problem['outer'][number], tile: { tileM: number; tileN: number }) {
  const { maxBind, align } = matmulBindingLimits();
  const maxWg = gpu().limits.maxComputeWorkgroupsPerDimension;
  const roundTo = (x: number, t: number) => Math.max(t, Math.ceil(x / t) * t);
  const tryPlan = (zc: number, mc: number, nc: number) => {
    if (zc > maxWg || Math.ceil(mc / tile.tileM) > maxWg || Math.ceil(nc / tile.tileN) > maxWg) return null;
    const out: Array<{ ch: Chunk; a: Window; b: Window; c: Window }> = [];
    for (let z0 = 0; z0 < p.nb; z0 += zc) {
      for (let m0 = 0; m0 < p.M; m0 += mc) {
        for (let n0 = 0; n0 < p.N; n0 += nc) {
          const ch = { z0, zc: Math.min(zc, p.nb - z0), m0, mc: Math.min(mc, p.M - m0), n0, nc: Math.min(nc, p.N - n0) };
          const r = ranges(p, o, ch);
          const w = {
            ch,
            a: windowOf(r.a, align),
            b: windowOf(r.b, align),
            c: windowOf(r.c, align),
          };
          if (w.a.size > maxBind || w.b.size > maxBind || w.c.size > maxBind) return null;
          out.push(w);
        }
      }
    }
    return out;
  };
  const halvings = (n: number, t: number) => {
    const list: number[] = [];
    for (let x = roundTo(n, t); ; x = roundTo(Math.ceil(x / 2), t)) {
      list.push(x);
      if (x <= t) break;
    }
    return list;
  };
  const zs = halvings(p.nb, 1);
  const ms = halvings(p.M, tile.tileM);
  const ns = halvings(Math.min(p.N, cacheBlockCols(p, tile)), tile.tileN);
  for (const zc of zs) {
    const plan = tryPlan(zc, ms[0]!, ns[0]!);
    if (plan) return plan;
  }
  for (const mc of ms.slice(1)) {
    const plan = tryPlan(1, mc, ns[0]!);
    if (plan) return plan;
  }
  for (const mc of ms) {
    for (const nc of ns.slice(1)) {
      const plan = tryPlan(1, mc, nc);
      if (plan) return plan;
    }
  }
  // explain which operand cannot be bound: the smallest chunk's ranges
  const r = ranges(p, o, { z0: 0, zc: 1, m0: 0, mc: Math.min(p.M, tile.tileM), n0: 0, nc: Math.min(p.N, tile.tileN) });
  const worst = (['a', 'b', 'c'] as const)
    .map((k) => ({ k, size: windowOf(r[k], align).size }))
    .sort((x, y) => y.size - x.size)[0]!;
  const name = worst.k === 'c' ? 'the output' : `operand ${worst.k}`;
  throw new RangeError(
    `${p.desc}: ${name} needs a ${worst.size}-byte storage binding even for a single ${tile.tileM}x${tile.tileN} tile, ` +
      `over this adapter's maxStorageBufferBindingSize (${maxBind} bytes); a transposed operand can only be split ` +
      'along its contiguous axis',
  );
}

export interface Launch {
  a: Tensor;
  b: Tensor;
  bias?: Tensor;
  /** added after the activation; the output's shape and layout */
  residual?: Tensor;
  out: Tensor;
  pre?: Tensor;
}

/** Records one problem with a tiled, register-blocked or subgroup kernel (not 'packed': matmul-packed.ts). */
export function dispatchTiles(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): void {
  const k = kernelFor(spec);
  for (const o of p.outer) {
    for (const w of planChunks(p, o, k)) {
      const bind = (tn: Tensor, win: Window, write: boolean, what: string): BufferBinding => ({
        buffer: tn.buffer,
        offset: win.offset,
        size: win.size,
        write,
        what,
      });
      const bindings: BufferBinding[] = [
        bind(t.a, w.a, false, `a ${t.a.describe()}`),
        bind(t.b, w.b, false, `b ${t.b.describe()}`),
      ];
      if (t.bias) bindings.push(t.bias.read(`bias ${t.bias.describe()}`));
      if (t.residual) bindings.push(bind(t.residual, w.c, false, `residual ${t.residual.describe()}`));
      bindings.push(bind(t.out, w.c, true, `out ${t.out.describe()}`));
      if (t.pre) bindings.push(bind(t.pre, w.c, true, `pre-activation ${t.pre.describe()}`));
      const ch = w.ch;
      const params: Param[] = [
        ['u32', p.M], ['u32', p.N], ['u32', p.K], ['u32', p.inner],
        ['u32', p.aS1], ['u32', p.aS2], ['u32', p.bS1], ['u32', p.bS2],
        ['u32', ch.m0], ['u32', ch.n0], ['u32', ch.z0],
        // index shifts: the host batch offset minus the binding's start (u32 arithmetic wraps)
        ['u32', (o.a.base + w.a.shift) >>> 0],
        ['u32', (o.b.base + w.b.shift) >>> 0],
        ['u32', (o.c.base + w.c.shift) >>> 0],
      ];
      rt().dispatch({
        name,
        code: k.code,
        bindings,
        params,
        workgroups: [Math.ceil(ch.nc / k.tileN), Math.ceil(ch.mc / k.tileM), ch.zc],
        site: p.desc,
        flops: 2 * ch.mc * ch.nc * p.K * ch.zc,
      });
    }
  }
}
