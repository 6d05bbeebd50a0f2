// Which matmul kernels run here, and the spec (tiles, vector widths, epilogue) a problem gets from a variant.
import { gpu } from '../engine/gpu.ts';
import { matmulKernel, type Activation, type MatmulKernelSpec, type MatmulVariant } from './matmul.wgsl.ts';
import { gemvKernel, gemvTile } from './matmul-gemv.wgsl.ts';
import { PACK_BLOCK_FLOATS, packedKernel } from './matmul-packed.wgsl.ts';
import type { Problem } from './matmul-problem.ts';

/** The variants this adapter can run (subgroup kernels need subgroups of 4 to 32 lanes; packed, uniform blocks). */
export function eligibleMatmulVariants(): MatmulVariant[] {
  const g = gpu();
  const out: MatmulVariant[] = [];
  const s = g.limits.subgroupMinSize;
  if (g.hasSubgroups && s !== undefined && s >= 4 && s <= 32 && s <= g.limits.maxComputeInvocationsPerWorkgroup) {
    const l = g.device.limits;
    const cv = MATMUL_TUNING.packedCols ?? 2;
    if (l.maxUniformBufferBindingSize >= PACK_BLOCK_FLOATS * 4 && l.maxUniformBuffersPerShaderStage > cv) out.push('packed');
    out.push('subgroup', 'gemv');
  }
  out.push('regblock', 'tiled');
  return out;
}

/** Tile overrides for experiments and benchmarks (null: the defaults below). Pipelines are cached by source. */
export const MATMUL_TUNING = {
  subgroupRows: null as number | null,
  subgroupCols: null as number | null,
  regRows: null as number | null,
  regCols: null as number | null,
  packedRows: null as number | null,
  packedCols: null as number | null,
  gemvRows: null as number | null,
  gemvCols: null as number | null,
  /** plan chunks as if maxStorageBufferBindingSize were this (tests of the splitting on small tensors) */
  maxBindingBytes: null as number | null,
  /** bytes of a wide B a chunk's row tiles share (matmul-dispatch.ts cacheBlockCols; 0: no blocking) */
  cacheBlockBytes: null as number | null,
  /** packed variant: bytes of scratch partial sums held at once (tests force small values) */
  slabBytes: null as number | null,
};

function subgroupRows(M: number, S: number): number {
  // a short problem (decoding: batch x beams rows) wastes less of a smaller tile. Measured on lavapipe, ms,
  // tm 8 / 16 / 32: 16x512x2048ᵀ 6.1 / 5.0 / 11.2, 16x512x32128ᵀ 89 / 58 / 86, 64x512x2048ᵀ 23.4 / 19.2 / 14.8.
  // (Up to 16 rows a residual is added apart: matmul.ts's residualApart.)
  return Math.max(S, M <= 8 ? 8 : M <= 16 ? 16 : 32);
}

export function specFor(
  variant: MatmulVariant, p: Problem, bias: boolean, activation: Activation, writePre: boolean, residual = false,
): MatmulKernelSpec {
  const spec: MatmulKernelSpec = {
    variant,
    transA: p.transA,
    transB: p.transB,
    vecA: (p.transA ? p.M : p.K) % 4 === 0 && p.M > 0 && p.K > 0,
    vecB: (p.transB ? p.K : p.N) % 4 === 0 && p.N > 0 && p.K > 0,
    vecC: p.N % 4 === 0 && p.N > 0,
    bias,
    activation,
    writePre,
  };
  if (residual) spec.residual = true;
  if (variant === 'gemv') {
    spec.subgroupSize = gpu().limits.subgroupMinSize!;
    const tile = gemvTile(p.M, spec.subgroupSize);
    spec.tm = MATMUL_TUNING.gemvRows ?? tile.tm;
    spec.cv = MATMUL_TUNING.gemvCols ?? tile.cv;
    spec.vecA = spec.vecA && !p.transA; // lanes split K: vec4 of A only along K
  } else if (variant === 'subgroup' || variant === 'packed') {
    const S = gpu().limits.subgroupMinSize!;
    spec.subgroupSize = S;
    if (variant === 'subgroup') {
      spec.tm = MATMUL_TUNING.subgroupRows ?? subgroupRows(p.M, S);
      spec.cv = MATMUL_TUNING.subgroupCols ?? 1;
    } else {
      spec.tm = MATMUL_TUNING.packedRows ?? Math.max(S, p.M <= 8 ? 8 : 16);
      spec.cv = MATMUL_TUNING.packedCols ?? 2;
      spec.vecB = false; // B comes packed
    }
    if (p.transA && spec.tm % (4 * S) !== 0) spec.vecA = false;
  } else if (variant === 'regblock') {
    spec.tm = MATMUL_TUNING.regRows ?? 8;
    spec.cv = MATMUL_TUNING.regCols ?? 2;
  }
  return spec;
}

const kernelCache = new Map<string, { code: string; tileM: number; tileN: number }>();
export function kernelFor(spec: MatmulKernelSpec) {
  const key = JSON.stringify(spec);
  let k = kernelCache.get(key);
  if (!k) {
    k = spec.variant === 'packed' ? packedKernel(spec) : spec.variant === 'gemv' ? gemvKernel(spec) : matmulKernel(spec);
    kernelCache.set(key, k);
  }
  return k;
}
