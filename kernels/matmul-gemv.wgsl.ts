// WGSL of the gemv matmul variant (see matmul.wgsl.ts): products with a few rows, as in decoding (one token per
// sequence: M = batch x beams), where op(B) (the weight) is read once and every load of it should feed as
// little other work as possible.
//
// A workgroup is one subgroup of S lanes and owns TM rows and CV vec4 column groups per lane. K is walked in
// blocks of 4S: lane l loads A[row][kb + 4l .. kb + 4l + 3] (one vec4 per row and block, so A costs 1/S of a
// load per k), and `subgroupShuffle(a, j)` hands lane j's four values to every lane; the last K % 4S values
// go one k at a time. The subgroup kernel, by contrast, gives each lane whole rows of A and at least S rows
// per workgroup: at M = 1 it computes S rows of which one is kept, about 20 instructions of wasted arithmetic
// and broadcasts per weight element on lavapipe against about 10 for the weight's (gathered) load itself. Here
// each weight element costs its load and TM multiply-adds. The load stays the bound: 6-11 GB/s of weights on
// lavapipe here with the tiles of gemvTile (2-3 GB/s on an earlier Xeon), however the lanes walk them (along K
// or along N, storage or uniform buffers, rgba32float textures: measured, the texture 30% slower).
//
// Any M, N, K, both transposes, batches and binding windows are handled (rows and columns clamped on load and
// masked on store), so the variant passes the same tests as the others; the autotuner offers it only for short
// products (gemvMaxRows).
import { bLoads, bSetup, COMP, subgroupTileKernel, type MatmulKernel, type MatmulKernelSpec } from './matmul.wgsl.ts';

/** The longest product (rows of op(A)) this variant is chosen or timed for with 8 lanes: on lavapipe, the
 * subgroup kernel (8-row tiles) won from 5 rows on (5x2048x512ᵀ 3.2 / 3.5 ms, 5x512x32128ᵀ 50 / 80), and
 * 8-row gemv tiles cost LLVM twice the compile time of 4-row ones. */
export const GEMV_MAX_ROWS = 4;

const u = (n: number) => `${n}u`;

/** The longest product the heuristic and the autotuner give this variant on S-lane subgroups: with 16 lanes
 * (LP_NATIVE_VECTOR_WIDTH=512) the subgroup kernel already wins at 4 rows (4x512x32128ᵀ 14.1 ms against 19.4,
 * 4x512x2048ᵀ 1.02 against 1.88) and gemv only at 2 (2x512x32128ᵀ 11.8 against 13.8). */
export function gemvMaxRows(S: number): number {
  return S >= 16 ? 2 : GEMV_MAX_ROWS;
}

/**
 * Rows and vec4 column groups per lane for a product of M rows on S-lane subgroups. The best tiles hold a fixed
 * number of vec4 accumulators per lane, rows x column groups: 4 with 8 lanes, 2 with 16 (lavapipe with
 * LP_NATIVE_VECTOR_WIDTH=512, where each lane's value is twice as wide); with 8 lanes a single row is computed
 * twice (the copy masked on store) rather than once with four column groups. Measured on lavapipe (2-core AMD
 * EPYC, weights cycled through 160 MB as in decoding; ms, tm x cv):
 *   8 lanes   1x512x32128ᵀ  1x2 10.3  1x4 7.5  2x2 6.1  4x1 6.8      4x512x32128ᵀ  2x2 11.5  4x1 6.8  4x2 7.2
 *             1x512x2048ᵀ   1x2 0.73  1x4 0.56 2x2 0.47 4x1 0.50     4x512x2048ᵀ   2x2 0.83  4x1 0.52 4x2 0.55
 *             1x512x512ᵀ    1x2 0.25  1x4 0.20 2x2 0.20 4x1 0.17     2x512x32128ᵀ  2x2 6.2   4x1 6.8  4x2 7.4
 *   16 lanes  1x512x32128ᵀ  1x1 12.5  1x2 7.7  2x1 12.2 2x2 11.5     4x512x32128ᵀ  2x1 23.4  2x2 21.9 4x1 21.7
 *             1x512x2048ᵀ   1x1 0.89  1x2 0.58 2x1 0.80 2x2 0.86     4x512x2048ᵀ   2x1 1.54  2x2 1.84 4x1 1.42
 */
export function gemvTile(M: number, S: number): { tm: number; cv: number } {
  const accumulators = S >= 16 ? 2 : 4;
  const tm = M <= 2 ? (S >= 16 ? M : 2) : GEMV_MAX_ROWS;
  return { tm, cv: Math.max(1, accumulators / tm) };
}

export function gemvKernel(spec: MatmulKernelSpec): MatmulKernel {
  const S = spec.subgroupSize ?? 8;
  const tm = spec.tm ?? 2;
  const cv = spec.cv ?? 2;
  const KB = 4 * S;
  const aVec = spec.vecA && !spec.transA;
  const bVecT = spec.vecB && spec.transB; // [N, K], vec4 along K (K % 4 == 0)
  const bVecN = spec.vecB && !spec.transB; // [K, N], vec4 along N

  const setup: string[] = [];
  for (let r = 0; r < tm; r++) {
    const row = `min(row0 + ${u(r)}, M - 1u)`;
    setup.push(`  let ar${r} = aOff + ${spec.transA ? row : `${row} * K`};`);
  }
  setup.push(bSetup(spec, cv, (v) => `(cg0 + ${u(v * S)} + lane)`));
  for (let r = 0; r < tm; r++) for (let v = 0; v < cv; v++) setup.push(`  var acc${r}_${v} = vec4<f32>(0.0);`);

  // a whole block of 4S k values from kb: lane l holds A[row][kb + 4l .. kb + 4l + 3] of each row
  const blockLoads: string[] = ['    let ka = kb + 4u * lane;'];
  for (let r = 0; r < tm; r++) {
    if (aVec) blockLoads.push(`    let a${r} = A4[(ar${r} + ka) >> 2u];`);
    else {
      const el = (c: number) => `A1[ar${r} + ${spec.transA ? `(ka + ${u(c)}) * M` : `ka + ${u(c)}`}]`;
      blockLoads.push(`    let a${r} = vec4<f32>(${[0, 1, 2, 3].map(el).join(', ')});`);
    }
  }
  /** Sub-block j of a block: k .. k + 3 (k = kb + 4j), lane j's A values handed to every lane as x{r}. */
  const subBlock = (): string => {
    const inner: string[] = ['let k = kb + 4u * j;'];
    for (let r = 0; r < tm; r++) inner.push(`let x${r} = subgroupShuffle(a${r}, j);`);
    inner.push(bLoads(spec, cv, 4).replace(/^ +/gm, ''));
    for (let r = 0; r < tm; r++) {
      for (let kk = 0; kk < 4; kk++) {
        inner.push(Array.from({ length: cv }, (_, v) => `acc${r}_${v} += x${r}.${COMP[kk]} * b${kk}_${v};`).join(' '));
      }
    }
    return inner.join('\n').split('\n').map((l) => `      ${l}`).join('\n');
  };
  // a loop over the lanes with subgroupShuffle (the index is uniform) measured as fast as S unrolled copies with
  // constant-lane subgroupBroadcast, at a fraction of lavapipe's compile time
  const mainBody = `    for (var j = 0u; j < ${u(S)}; j++) {\n${subBlock()}\n    }`;

  // the last K % 4S values one k at a time, each lane loading A itself (the same address in every lane)
  const tail: string[] = [];
  for (let r = 0; r < tm; r++) {
    const at = spec.transA ? `ar${r} + k * M` : `ar${r} + k`;
    tail.push(`    let x${r} = ${aVec ? `A4[(${at}) >> 2u][k & 3u]` : `A1[${at}]`};`);
  }
  for (let v = 0; v < cv; v++) {
    let load: string;
    if (bVecN) load = `B4[(bc${v} + k * N) >> 2u]`;
    else if (bVecT) load = `vec4<f32>(${[0, 1, 2, 3].map((c) => `B4[(bc${v}_${c} + k) >> 2u][k & 3u]`).join(', ')})`;
    else load = `vec4<f32>(${[0, 1, 2, 3].map((c) => `B1[bc${v}_${c} + ${spec.transB ? 'k' : 'k * N'}]`).join(', ')})`;
    tail.push(`    let b${v} = ${load};`);
  }
  for (let r = 0; r < tm; r++) tail.push(`   ${Array.from({ length: cv }, (_, v) => ` acc${r}_${v} += x${r} * b${v};`).join('')}`);

  const loops = `  var kb = 0u;
  for (; kb + ${u(KB)} <= K; kb += ${u(KB)}) {
${blockLoads.join('\n')}
${mainBody}
  }
  for (var k = kb; k < K; k++) {
${tail.join('\n')}
  }`;
  return subgroupTileKernel(spec, S, tm, cv, setup.join('\n'), loops);
}
