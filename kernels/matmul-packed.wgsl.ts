// WGSL of the packed matmul variant (see matmul.wgsl.ts): the main kernel reading op(B) from uniform blocks, the
// kernel that packs op(B) into them, and the second pass that adds the partial sums of later K chunks.
import {
  activationFn, kLoops, subgroupASide, type Activation, type MatmulKernel, type MatmulKernelSpec,
} from './matmul.wgsl.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

const u = (n: number) => `${n}u`;
const COMP = ['x', 'y', 'z', 'w'];

/** Invocations per workgroup of the pack and combine passes (one vec4, or one output, each). */
export const PACK_WORKGROUP = 64;
/** Floats in one packed block (one uniform binding): 64 KiB. */
export const PACK_BLOCK_FLOATS = 16384;
/** k rows per packed block for a subgroup of S lanes (each row holds 4S columns). */
export function packRows(S: number): number {
  return PACK_BLOCK_FLOATS / (4 * S);
}

/** Uniform parameters of the packed kernel, in order. */
const PACKED_PARAMS = ['M', 'N', 'K', 'kLen', 'k0', 'g0', 'm0', 'aAdd', 'cAdd'] as const;

/**
 * Store of one vec4 of the packed kernel's outputs. Bias, residual and gelu are not fused here (a separate pass,
 * `combineCode`): the per-lane code of every fused access multiplies LLVM's compile time on lavapipe, for
 * about 1% of the run time. A relu alone is a max per vec4 with nothing to load, so it is fused when one K chunk
 * makes the main pass the last.
 */
function storePacked(spec: MatmulKernelSpec, x: string, row: string, cg: string, ind: string): string {
  const out: string[] = [];
  const idx = `cOff + ${row} * N + 4u * ${cg}`;
  if (spec.vecC) {
    out.push(`${ind}if (${cg} < N / 4u) { C4[(${idx}) >> 2u] = ${x}; }`);
  } else {
    out.push(`${ind}{`);
    out.push(`${ind}  let n = 4u * ${cg};`);
    for (let c = 0; c < 4; c++) out.push(`${ind}  if (n + ${u(c)} < N) { C1[${idx} + ${u(c)}] = ${x}.${COMP[c]}; }`);
    out.push(`${ind}}`);
  }
  return out.join('\n');
}

export function packedKernel(spec: MatmulKernelSpec): MatmulKernel {
  const S = spec.subgroupSize ?? 8;
  const tm = spec.tm ?? 16;
  const cv = spec.cv ?? 2;
  const aSide = subgroupASide(spec, S, tm, 'p.k0');
  const lines: string[] = ['enable subgroups;'];
  let b = 0;
  lines.push(`@group(0) @binding(${b++}) var<storage, read> ${spec.vecA ? 'A4: array<vec4<f32>>' : 'A1: array<f32>'};`);
  for (let v = 0; v < cv; v++) lines.push(`@group(0) @binding(${b++}) var<uniform> U${v}: array<vec4<f32>, ${PACK_BLOCK_FLOATS / 4}>;`);
  const arr = spec.vecC ? 'array<vec4<f32>>' : 'array<f32>';
  if (spec.bias || spec.writePre || spec.residual || (spec.activation !== 'none' && spec.activation !== 'relu')) {
    throw new Error('matmul packed kernel: the epilogue is a separate pass, except a relu alone');
  }
  lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${spec.vecC ? 'C4' : 'C1'}: ${arr};`);
  lines.push(`struct Params { ${PACKED_PARAMS.map((n) => `${n}: u32`).join(', ')} }`);
  lines.push(`@group(0) @binding(${b}) var<uniform> p: Params;`);

  const setup: string[] = [aSide.setup];
  for (let r = 0; r < tm; r++) for (let v = 0; v < cv; v++) setup.push(`  var acc${r}_${v} = vec4<f32>(0.0);`);
  const step = (nk: number): string => {
    const out = [aSide.loads(nk)];
    for (let kk = 0; kk < nk; kk++) {
      for (let v = 0; v < cv; v++) out.push(`    let b${kk}_${v} = U${v}[(k + ${u(kk)}) * ${u(S)} + lane];`);
    }
    for (let r = 0; r < tm; r++) {
      for (let kk = 0; kk < nk; kk++) {
        let t = `    { let x = ${aSide.val(r, kk, nk)};`;
        for (let v = 0; v < cv; v++) t += ` acc${r}_${v} += x * b${kk}_${v};`;
        out.push(t + ' }');
      }
    }
    return out.join('\n');
  };
  const epi: string[] = [];
  for (let r = 0; r < tm; r++) {
    epi.push(`  if (row0 + ${u(r)} < M) {`);
    for (let v = 0; v < cv; v++) {
      const x = spec.activation === 'relu' ? `act(acc${r}_${v})` : `acc${r}_${v}`;
      epi.push(storePacked(spec, x, `(row0 + ${u(r)})`, `((p.g0 + ${u(v)}) * ${u(S)} + lane)`, '    '));
    }
    epi.push('  }');
  }
  // vec4 loads along K imply K % 4 == 0, so every chunk length is a multiple of 4
  const tail = !(spec.vecA && !spec.transA);
  const code = `${lines.join('\n')}
${activationFn(spec.activation)}
@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let M = p.M;
  let N = p.N;
  let K = p.K;
  let aOff = p.aAdd;
  let cOff = p.cAdd;
  let row0 = p.m0 + wid.x * ${u(tm)};
${setup.join('\n')}
${kLoops(step, tail, 'p.kLen')}
${epi.join('\n')}
}`;
  return { code, tileM: tm, tileN: 4 * cv * S };
}

/** Uniform parameters of the pack kernel, in order. */
const PACK_PARAMS = ['N', 'K', 'g0', 'gCount', 'c0', 'cCount', 'chunks', 'bAdd', 'pBase', 'total', 'rows'] as const;

/** k rows of op(B) one pack invocation writes: 4 when it reads a 4x4 tile of Bᵀ as vec4s along K. */
export function packRowsPerInvocation(transB: boolean, vecB: boolean): number {
  return transB && vecB ? 4 : 1;
}

/**
 * Repacks op(B) (B is [K, N], or [N, K] with transB) into blocks: block (g, c) holds rows c*R .. c*R+R-1 and
 * columns 4Sg .. 4Sg+4S-1 of op(B) as [R][4S] floats (R = packRows(S)), zero outside op(B). One invocation per
 * vec4 of a block's first `rows` rows (R, or K when K < R: the kernel reads no further), for groups
 * g0 .. g0+gCount-1 and chunks c0 .. c0+cCount-1; block (g, c) lands at vec4 offset pBase + (g * chunks + c) * 4096.
 * With transB and vecB (K % 4 == 0) an invocation covers 4 rows instead (`rows` counts quads of rows): it loads
 * the 4x4 tile of B as 4 vec4s along K and stores it transposed: read one float at a time, the 4 columns of a row
 * are 4 gathers K apart (lavapipe, replayed alone, ms: 512x512 Bᵀ 0.70 -> 0.35, 2048x512 3.0-3.4 -> 0.86-0.90,
 * 512x2048 2.3 -> 0.86-1.27; t5-small's forward packs 48 weights).
 */
export function packCode(S: number, transB: boolean, vecB: boolean): string {
  const R = packRows(S);
  const quads = packRowsPerInvocation(transB, vecB) === 4;
  const vec = vecB && !transB;
  const at = (n: string, k: string) => (transB ? `bAdd + ${n} * K + ${k}` : `bAdd + ${k} * N + ${n}`);
  const load = (c: number) =>
    `select(0.0, B1[${at(`min(n + ${u(c)}, N - 1u)`, 'min(k, K - 1u)')}], n + ${u(c)} < N && k < K)`;
  const value = vec
    ? `select(vec4<f32>(0.0), B4[(bAdd + min(k, K - 1u) * N + min(n, N - 4u)) >> 2u], n < N && k < K)`
    : `vec4<f32>(${[0, 1, 2, 3].map(load).join(', ')})`;
  const kk = quads ? `4u * ((i / ${u(S)}) % p.rows)` : `(i / ${u(S)}) % p.rows`;
  const store = quads
    ? [0, 1, 2, 3].map((c) => `  let t${c} = select(vec4<f32>(0.0), B4[(bAdd + min(n + ${u(c)}, N - 1u) * K + min(k, K - 4u)) >> 2u], n + ${u(c)} < N && k < K);`)
      .concat(COMP.map((x, r) => `  P4[at + ${u(r * S)}] = vec4<f32>(t0.${x}, t1.${x}, t2.${x}, t3.${x});`)).join('\n')
    : `  P4[at] = ${value};`;
  return `@group(0) @binding(0) var<storage, read> ${vecB ? 'B4: array<vec4<f32>>' : 'B1: array<f32>'};
@group(0) @binding(1) var<storage, read_write> P4: array<vec4<f32>>;
struct Params { ${PACK_PARAMS.map((n) => `${n}: u32`).join(', ')} }
@group(0) @binding(2) var<uniform> p: Params;
${flatGridEntry(PACK_WORKGROUP, 'i', 'p.total')}
  let N = p.N;
  let K = p.K;
  let bAdd = p.bAdd;
  let lane = i % ${u(S)};
  let kk = ${kk};
  let blk = i / (p.rows * ${u(S)});
  let c = p.c0 + blk % p.cCount;
  let g = p.g0 + blk / p.cCount;
  let k = c * ${u(R)} + kk;
  let n = 4u * (g * ${u(S)} + lane);
  let at = p.pBase + (g * p.chunks + c) * ${u(PACK_BLOCK_FLOATS / 4)} + kk * ${u(S)} + lane;
${store}
}`;
}

/**
 * The packed variant's second pass over the output: x = C + S0 + ... (the partial sums of later K chunks) +
 * bias[col]; P = x; C = act(x) (+ R, a residual), over `n` elements (vec4 of them when `vec`) from element
 * `first` of the bound window, the first of them at column `col0` of a row.
 */
export function combineCode(slabs: number, activation: Activation, bias: boolean, writePre: boolean, vec: boolean, residual = false): string {
  const T = vec ? 'vec4<f32>' : 'f32';
  let i = 0;
  const lines = [`@group(0) @binding(${i++}) var<storage, read_write> C: array<${T}>;`];
  for (let j = 0; j < slabs; j++) lines.push(`@group(0) @binding(${i++}) var<storage, read> S${j}: array<${T}>;`);
  if (bias) lines.push(`@group(0) @binding(${i++}) var<storage, read> ${vec ? 'bias4' : 'bias1'}: array<${T}>;`);
  if (writePre) lines.push(`@group(0) @binding(${i++}) var<storage, read_write> P: array<${T}>;`);
  if (residual) lines.push(`@group(0) @binding(${i++}) var<storage, read> R: array<${T}>;`);
  lines.push('struct Params { n: u32, N: u32, col0: u32, first: u32 }');
  lines.push(`@group(0) @binding(${i}) var<uniform> p: Params;`);
  const act = activation === 'none' ? '' : activationFn(activation).replace(/vec4<f32>/g, T);
  let sum = 'C[i]';
  for (let j = 0; j < slabs; j++) sum += ` + S${j}[i]`;
  if (bias) sum += vec ? ' + bias4[col / 4u]' : ' + bias1[col]';
  return `${lines.join('\n')}
${act}
${flatGridEntry(PACK_WORKGROUP, 'j', 'p.n')}
  let i = p.first + j;
  let col = (p.col0 + j${vec ? ' * 4u' : ''}) % p.N;
  var x = ${sum};
${writePre ? '  P[i] = x;\n' : ''}${activation === 'none' ? '' : '  x = act(x);\n'}${residual ? '  x += R[i];\n' : ''}  C[i] = x;
}`;
}
