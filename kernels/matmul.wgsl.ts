// WGSL generators for matmul C = op(A) · op(B) (+ bias, activation), five variants:
//
// * `subgroup` (the default on a CPU adapter): a workgroup is one subgroup of S lanes. Each lane loads a few
//   rows of A once (vec4 along K) and hands them to the others with `subgroupBroadcast`, so A is read once per
//   subgroup instead of once per lane; each lane keeps TM rows x CV vec4 of output columns in registers, K
//   unrolled by 4. On lavapipe every storage load is gathered lane by lane (shared/LAVAPIPE.md); this kernel
//   loads each element once per 32x32 tile. 26-33 GFLOP/s on 2 Zen 4 cores for the big products.
// * `packed`: op(B) is first repacked (a small kernel) into 64 KiB blocks of [k][4S columns], each bound as a
//   *uniform* buffer; A as in `subgroup`. A uniform-buffer load with per-lane addresses is a plain gather on
//   lavapipe (~2.5 instructions per element, against ~9 for a storage load with its exec-mask test, descriptor
//   reload and bounds branch per element), so the main loop runs 2.5 flops per instruction against 1.6. A load
//   whose index depends on the K loop's counter is gathered lane by lane too, even when every lane reads the
//   same element (Mesa 25.0 loads once and broadcasts only where the offset is a constant or a parameter), so
//   B cannot reach the lanes through a broadcast from inside the loop. The fixed choice for many-row x·W and
//   x·Wᵀ on a CPU adapter (matmul.ts packedSuits); slower on small or batched products (a pack and several
//   dispatches per B). One dispatch covers CV column blocks and one K chunk (16384 / 4S rows) for all rows;
//   later K chunks write partial sums to scratch copies of C that a light second pass adds up, with bias and
//   activation (fusing them tripled LLVM's compile time for ~1% of run time). Its kernels:
//   matmul-packed.wgsl.ts; dispatch: matmul-packed.ts.
// * `gemv`: products of a few rows (decoding): lanes split K to load A, each weight element is loaded once and
//   feeds only the rows that exist. Its kernel: matmul-gemv.wgsl.ts.
// * `regblock`: register blocking without shared memory or subgroups: each invocation loads its own rows of A
//   and CV vec4 of B per k and keeps TR x CV vec4 of outputs.
// * `tiled`: the classic GPU kernel: 64x64 tiles staged through workgroup memory, 4x4 outputs per invocation
//   (what a real GPU prefers; on lavapipe its barriers are coroutine switches).
//
// Every variant handles any M, N, K (tiles are clamped on load and masked on store), both transposes, a batch
// (two-level batch index, strides per operand, 0 for a broadcast operand), and "windows": each storage binding
// may be a range of its buffer (for tensors over maxStorageBufferBindingSize), so every index gets a per-operand
// shift added (`aAdd`, `bAdd`, `cAdd`, wrapping u32 arithmetic). Layouts are specialised per transpose flag and
// per alignment: loads and stores of four consecutive floats as one vec4 where the contiguous axis is a
// multiple of 4.

export type MatmulVariant = 'packed' | 'subgroup' | 'gemv' | 'regblock' | 'tiled';
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ['packed', 'subgroup', 'gemv', 'regblock', 'tiled'];
export type Activation = 'none' | 'relu' | 'gelu';

export interface MatmulKernelSpec {
  variant: MatmulVariant;
  transA: boolean;
  transB: boolean;
  /** A read 4 floats at a time along its contiguous axis (K when !transA, M when transA): that axis % 4 == 0 */
  vecA: boolean;
  /** B read 4 floats at a time along its contiguous axis (N when !transB, K when transB) */
  vecB: boolean;
  /** N % 4 == 0: C, the pre-activation and the bias accessed as vec4 */
  vecC: boolean;
  bias: boolean;
  activation: Activation;
  /** also write the pre-activation (x + bias) to a second output, for the activation's backward */
  writePre: boolean;
  /** add a tensor of the output's shape after the activation (a residual connection): C = act(AB + bias) + R */
  residual?: boolean;
  /** subgroup variant: lanes per subgroup (the workgroup size) */
  subgroupSize?: number;
  /** rows per subgroup (subgroup) or per invocation (regblock); vec4 columns per lane/invocation */
  tm?: number;
  cv?: number;
}

export interface MatmulKernel {
  code: string;
  /** output rows and columns covered by one workgroup */
  tileM: number;
  tileN: number;
}

/** Uniform parameters, in this order (u32 each). */
const MATMUL_PARAMS = [
  'M', 'N', 'K', 'inner', 'aS1', 'aS2', 'bS1', 'bS2', 'm0', 'n0', 'z0', 'aAdd', 'bAdd', 'cAdd',
] as const;

const u = (n: number) => `${n}u`;
export const COMP = ['x', 'y', 'z', 'w'];

export function header(spec: MatmulKernelSpec): string {
  const lines: string[] = [];
  if (spec.variant === 'subgroup' || spec.variant === 'gemv') lines.push('enable subgroups;');
  let b = 0;
  const arr = (vec: boolean) => (vec ? 'array<vec4<f32>>' : 'array<f32>');
  lines.push(`@group(0) @binding(${b++}) var<storage, read> ${spec.vecA ? 'A4' : 'A1'}: ${arr(spec.vecA)};`);
  lines.push(`@group(0) @binding(${b++}) var<storage, read> ${spec.vecB ? 'B4' : 'B1'}: ${arr(spec.vecB)};`);
  if (spec.bias) lines.push(`@group(0) @binding(${b++}) var<storage, read> ${spec.vecC ? 'bias4' : 'bias1'}: ${arr(spec.vecC)};`);
  if (spec.residual) lines.push(`@group(0) @binding(${b++}) var<storage, read> ${spec.vecC ? 'R4' : 'R1'}: ${arr(spec.vecC)};`);
  lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${spec.vecC ? 'C4' : 'C1'}: ${arr(spec.vecC)};`);
  if (spec.writePre) lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${spec.vecC ? 'P4' : 'P1'}: ${arr(spec.vecC)};`);
  lines.push(`struct Params { ${MATMUL_PARAMS.map((n) => `${n}: u32`).join(', ')} }`);
  lines.push(`@group(0) @binding(${b}) var<uniform> p: Params;`);
  lines.push(activationFn(spec.activation));
  return lines.join('\n');
}

export function activationFn(act: Activation): string {
  if (act === 'relu') return 'fn act(x: vec4<f32>) -> vec4<f32> { return max(x, vec4<f32>(0.0)); }';
  if (act === 'gelu') {
    // Hugging Face gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); the tanh argument is clamped
    // (tanh(10) is 1 in f32) so that no implementation's tanh overflows internally
    return `fn act(x: vec4<f32>) -> vec4<f32> {
  let t = tanh(clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), vec4<f32>(-10.0), vec4<f32>(10.0)));
  return 0.5 * x * (1.0 + t);
}`;
  }
  return '';
}

/** Batch offsets and dims, shared by all variants. */
export function prologue(): string {
  return `  let M = p.M;
  let N = p.N;
  let K = p.K;
  let z = p.z0 + wid.z;
  let z1 = z / p.inner;
  let z2 = z - z1 * p.inner;
  let aOff = z1 * p.aS1 + z2 * p.aS2 + p.aAdd;
  let bOff = z1 * p.bS1 + z2 * p.bS2 + p.bAdd;
  let cOff = z * M * N + p.cAdd;`;
}

/**
 * Bias, pre-activation, activation, residual and the store of one vec4 of outputs `x` at row `row` and column
 * group `cg` (columns 4cg..4cg+3). The caller has checked row < M.
 */
export function storeOne(spec: MatmulKernelSpec, x: string, row: string, cg: string, ind: string): string {
  const out: string[] = [];
  const idx = `cOff + ${row} * N + 4u * ${cg}`;
  if (spec.vecC) {
    out.push(`${ind}if (${cg} < N / 4u) {`);
    out.push(`${ind}  var x = ${x};`);
    if (spec.bias) out.push(`${ind}  x += bias4[${cg}];`);
    if (spec.writePre) out.push(`${ind}  P4[(${idx}) >> 2u] = x;`);
    if (spec.activation !== 'none') out.push(`${ind}  x = act(x);`);
    if (spec.residual) out.push(`${ind}  x += R4[(${idx}) >> 2u];`);
    out.push(`${ind}  C4[(${idx}) >> 2u] = x;`);
    out.push(`${ind}}`);
  } else {
    out.push(`${ind}{`);
    out.push(`${ind}  var x = ${x};`);
    out.push(`${ind}  let n = 4u * ${cg};`);
    if (spec.bias) {
      out.push(`${ind}  x += vec4<f32>(${[0, 1, 2, 3].map((c) => `bias1[min(n + ${u(c)}, N - 1u)]`).join(', ')});`);
    }
    if (spec.writePre) for (let c = 0; c < 4; c++) out.push(`${ind}  if (n + ${u(c)} < N) { P1[${idx} + ${u(c)}] = x.${COMP[c]}; }`);
    if (spec.activation !== 'none') out.push(`${ind}  x = act(x);`);
    const r = (c: number) => (spec.residual ? ` + R1[${idx} + ${u(c)}]` : '');
    for (let c = 0; c < 4; c++) out.push(`${ind}  if (n + ${u(c)} < N) { C1[${idx} + ${u(c)}] = x.${COMP[c]}${r(c)}; }`);
    out.push(`${ind}}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// B loads shared by the subgroup and regblock variants: the invocation owns CV column groups, column group v
// being `cgExpr(v)`; per k step it needs b{kk}_{v}: vec4 of B[k+kk][4cg .. 4cg+3].

export function bSetup(spec: MatmulKernelSpec, cv: number, cgExpr: (v: number) => string): string {
  const lines: string[] = [];
  for (let v = 0; v < cv; v++) {
    if (!spec.transB && spec.vecB) {
      lines.push(`  let bc${v} = bOff + 4u * min(${cgExpr(v)}, N / 4u - 1u);`);
    } else {
      for (let c = 0; c < 4; c++) {
        const col = `min(4u * ${cgExpr(v)} + ${u(c)}, N - 1u)`;
        lines.push(`  let bc${v}_${c} = bOff + ${spec.transB ? `${col} * K` : col};`);
      }
    }
  }
  return lines.join('\n');
}

/** Loads of B for `nk` consecutive k (1, or 4 in the unrolled main loop) into b{kk}_{v}. */
export function bLoads(spec: MatmulKernelSpec, cv: number, nk: number): string {
  const lines: string[] = [];
  for (let v = 0; v < cv; v++) {
    if (!spec.transB && spec.vecB) {
      for (let kk = 0; kk < nk; kk++) lines.push(`    let b${kk}_${v} = B4[(bc${v} + (k + ${u(kk)}) * N) >> 2u];`);
    } else if (!spec.transB) {
      for (let kk = 0; kk < nk; kk++) {
        const row = `(k + ${u(kk)}) * N`;
        lines.push(`    let b${kk}_${v} = vec4<f32>(${[0, 1, 2, 3].map((c) => `B1[bc${v}_${c} + ${row}]`).join(', ')});`);
      }
    } else if (spec.vecB && nk % 4 === 0) {
      // B is [N, K]: vec4 along K per column, then 4x4 transposes in registers
      for (let q = 0; q < nk / 4; q++) {
        for (let c = 0; c < 4; c++) lines.push(`    let t${v}_${c}_${q} = B4[(bc${v}_${c} + k + ${u(4 * q)}) >> 2u];`);
      }
      for (let kk = 0; kk < nk; kk++) {
        const q = Math.floor(kk / 4);
        lines.push(`    let b${kk}_${v} = vec4<f32>(${[0, 1, 2, 3].map((c) => `t${v}_${c}_${q}.${COMP[kk % 4]}`).join(', ')});`);
      }
    } else {
      for (let kk = 0; kk < nk; kk++) {
        lines.push(`    let b${kk}_${v} = vec4<f32>(${[0, 1, 2, 3].map((c) => `B1[bc${v}_${c} + k + ${u(kk)}]`).join(', ')});`);
      }
    }
  }
  return lines.join('\n');
}

/** Whether the K loop needs a scalar tail: vec4 loads along K imply K % 4 == 0. */
function needsTail(spec: MatmulKernelSpec): boolean {
  return !((spec.vecA && !spec.transA) || (spec.vecB && spec.transB));
}

/** The K loop: unrolled by 4, then (unless K % 4 == 0 is implied) a scalar tail. (Unrolling by 8 measured
 * slower on lavapipe, with twice the compile time.) */
export function kLoops(step: (nk: number) => string, tail: boolean, bound = 'K'): string {
  let s = `  var k = 0u;
  for (; k + 4u <= ${bound}; k += 4u) {
${step(4)}
  }`;
  if (tail) {
    s += `
  for (; k < ${bound}; k += 1u) {
${step(1)}
  }`;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// subgroup variant

/**
 * The A side of the subgroup kernels: lane l loads rows l, l+S, ... (or, for Aᵀ with vec4 along M, row groups
 * of 4) once per k step; `val(r, kk)` hands A[row0 + r][k + kk] to every lane with subgroupBroadcast.
 * `kShift` is added to every k (the packed kernel's K chunk start).
 */
export function subgroupASide(spec: MatmulKernelSpec, S: number, tm: number, kShift = '') {
  const aRowGroups = spec.transA && spec.vecA;
  if (tm % S !== 0) throw new RangeError(`matmul subgroup kernel: ${tm} rows is not a multiple of the subgroup size ${S}`);
  if (aRowGroups && tm % (4 * S) !== 0) throw new RangeError(`matmul subgroup kernel: vec4 A^T needs rows % ${4 * S} == 0`);
  const perLane = aRowGroups ? tm / (4 * S) : tm / S;
  const ks = kShift ? ` + ${kShift}` : '';
  const setup: string[] = [];
  for (let i = 0; i < perLane; i++) {
    if (!spec.transA) setup.push(`  let ar${i} = aOff + min(row0 + ${u(i * S)} + lane, M - 1u) * K${ks};`);
    else if (aRowGroups) setup.push(`  let ar${i} = aOff + min(row0 + 4u * (${u(i * S)} + lane), M - 4u)${kShift ? ` + ${kShift} * M` : ''};`);
    else setup.push(`  let ar${i} = aOff + min(row0 + ${u(i * S)} + lane, M - 1u)${kShift ? ` + ${kShift} * M` : ''};`);
  }
  const loads = (nk: number): string => {
    const lines: string[] = [];
    for (let i = 0; i < perLane; i++) {
      if (!spec.transA && spec.vecA && nk % 4 === 0) {
        for (let q = 0; q < nk / 4; q++) lines.push(`    let a${i}_${q} = A4[(ar${i} + k + ${u(4 * q)}) >> 2u];`);
      } else if (!spec.transA) for (let kk = 0; kk < nk; kk++) lines.push(`    let a${i}_${kk} = A1[ar${i} + k + ${u(kk)}];`);
      else if (aRowGroups) for (let kk = 0; kk < nk; kk++) lines.push(`    let a${i}_${kk} = A4[(ar${i} + (k + ${u(kk)}) * M) >> 2u];`);
      else for (let kk = 0; kk < nk; kk++) lines.push(`    let a${i}_${kk} = A1[ar${i} + (k + ${u(kk)}) * M];`);
    }
    return lines.join('\n');
  };
  const val = (r: number, kk: number, nk: number): string => {
    if (!spec.transA && spec.vecA && nk % 4 === 0) {
      return `subgroupBroadcast(a${Math.floor(r / S)}_${Math.floor(kk / 4)}.${COMP[kk % 4]}, ${u(r % S)})`;
    }
    if (aRowGroups) {
      const g = Math.floor(r / 4);
      return `subgroupBroadcast(a${Math.floor(g / S)}_${kk}.${COMP[r % 4]}, ${u(g % S)})`;
    }
    return `subgroupBroadcast(a${Math.floor(r / S)}_${kk}, ${u(r % S)})`;
  };
  return { setup: setup.join('\n'), loads, val };
}

function subgroupKernel(spec: MatmulKernelSpec): MatmulKernel {
  const S = spec.subgroupSize ?? 8;
  const tm = spec.tm ?? 32;
  const cv = spec.cv ?? 1;
  const aSide = subgroupASide(spec, S, tm);
  const setup: string[] = [aSide.setup];
  setup.push(bSetup(spec, cv, (v) => `(cg0 + ${u(v * S)} + lane)`));
  for (let r = 0; r < tm; r++) for (let v = 0; v < cv; v++) setup.push(`  var acc${r}_${v} = vec4<f32>(0.0);`);
  const aLoads = aSide.loads;
  const aVal = aSide.val;
  const step = (nk: number): string => {
    const lines = [aLoads(nk), bLoads(spec, cv, nk)];
    for (let r = 0; r < tm; r++) {
      for (let kk = 0; kk < nk; kk++) {
        let s = `    { let x = ${aVal(r, kk, nk)};`;
        for (let v = 0; v < cv; v++) s += ` acc${r}_${v} += x * b${kk}_${v};`;
        lines.push(s + ' }');
      }
    }
    return lines.join('\n');
  };

  return subgroupTileKernel(spec, S, tm, cv, setup.join('\n'), kLoops(step, needsTail(spec)));
}

/**
 * The shell of a kernel whose workgroup is one subgroup of S lanes owning TM rows from row0 and, per lane, CV
 * vec4 column groups cg0 + v*S + lane, accumulated in acc{r}_{v} by `loops` (after `setup`): the subgroup and
 * gemv variants. Stores the accumulators through the epilogue.
 */
export function subgroupTileKernel(spec: MatmulKernelSpec, S: number, tm: number, cv: number, setup: string, loops: string): MatmulKernel {
  const epi: string[] = [];
  for (let r = 0; r < tm; r++) {
    epi.push(`  if (row0 + ${u(r)} < M) {`);
    for (let v = 0; v < cv; v++) epi.push(storeOne(spec, `acc${r}_${v}`, `(row0 + ${u(r)})`, `(cg0 + ${u(v * S)} + lane)`, '    '));
    epi.push('  }');
  }
  const code = `${header(spec)}
@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
${prologue()}
  let row0 = p.m0 + wid.y * ${u(tm)};
  let cg0 = p.n0 / 4u + wid.x * ${u(cv * S)};
${setup}
${loops}
${epi.join('\n')}
}`;
  return { code, tileM: tm, tileN: 4 * cv * S };
}

// ---------------------------------------------------------------------------------------------------------
// regblock variant: workgroup WX x WY invocations; invocation (lx, ly) owns rows row0 + ly*TR + r and column
// groups cg0 + lx + v*WX

const RB_WX = 8;
const RB_WY = 2;

function regblockKernel(spec: MatmulKernelSpec): MatmulKernel {
  const tr = spec.tm ?? 8;
  const cv = spec.cv ?? 2;
  const aRowGroups = spec.transA && spec.vecA;
  if (aRowGroups && tr % 4 !== 0) throw new RangeError('matmul regblock kernel: vec4 A^T needs rows % 4 == 0');
  const setup: string[] = [];
  if (!spec.transA) for (let r = 0; r < tr; r++) setup.push(`  let ar${r} = aOff + min(rb + ${u(r)}, M - 1u) * K;`);
  else if (aRowGroups) for (let j = 0; j < tr / 4; j++) setup.push(`  let ar${j} = aOff + min(rb + ${u(4 * j)}, M - 4u);`);
  else for (let r = 0; r < tr; r++) setup.push(`  let ar${r} = aOff + min(rb + ${u(r)}, M - 1u);`);
  setup.push(bSetup(spec, cv, (v) => `(cg0 + ${u(v * RB_WX)})`));
  for (let r = 0; r < tr; r++) for (let v = 0; v < cv; v++) setup.push(`  var acc${r}_${v} = vec4<f32>(0.0);`);

  const step = (nk: number): string => {
    const lines: string[] = [];
    const aVal: string[][] = [];
    if (!spec.transA && spec.vecA && nk % 4 === 0) {
      for (let r = 0; r < tr; r++) {
        aVal.push([]);
        for (let q = 0; q < nk / 4; q++) {
          lines.push(`    let a${r}_${q} = A4[(ar${r} + k + ${u(4 * q)}) >> 2u];`);
          for (let c = 0; c < 4; c++) aVal[r]!.push(`a${r}_${q}.${COMP[c]}`);
        }
      }
    } else if (!spec.transA) {
      for (let r = 0; r < tr; r++) {
        aVal.push([]);
        for (let kk = 0; kk < nk; kk++) {
          lines.push(`    let a${r}_${kk} = A1[ar${r} + k + ${u(kk)}];`);
          aVal[r]!.push(`a${r}_${kk}`);
        }
      }
    } else if (aRowGroups) {
      for (let r = 0; r < tr; r++) aVal.push([]);
      for (let j = 0; j < tr / 4; j++) {
        for (let kk = 0; kk < nk; kk++) {
          lines.push(`    let a${j}_${kk} = A4[(ar${j} + (k + ${u(kk)}) * M) >> 2u];`);
          for (let c = 0; c < 4; c++) aVal[4 * j + c]![kk] = `a${j}_${kk}.${COMP[c]}`;
        }
      }
    } else {
      for (let r = 0; r < tr; r++) {
        aVal.push([]);
        for (let kk = 0; kk < nk; kk++) {
          lines.push(`    let a${r}_${kk} = A1[ar${r} + (k + ${u(kk)}) * M];`);
          aVal[r]!.push(`a${r}_${kk}`);
        }
      }
    }
    lines.push(bLoads(spec, cv, nk));
    for (let r = 0; r < tr; r++) {
      for (let kk = 0; kk < nk; kk++) {
        let s = '   ';
        for (let v = 0; v < cv; v++) s += ` acc${r}_${v} += ${aVal[r]![kk]} * b${kk}_${v};`;
        lines.push(s);
      }
    }
    return lines.join('\n');
  };

  const epi: string[] = [];
  for (let r = 0; r < tr; r++) {
    epi.push(`  if (rb + ${u(r)} < M) {`);
    for (let v = 0; v < cv; v++) epi.push(storeOne(spec, `acc${r}_${v}`, `(rb + ${u(r)})`, `(cg0 + ${u(v * RB_WX)})`, '    '));
    epi.push('  }');
  }
  const code = `${header(spec)}
@compute @workgroup_size(${RB_WX}, ${RB_WY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
${prologue()}
  let rb = p.m0 + wid.y * ${u(RB_WY * tr)} + lid.y * ${u(tr)};
  let cg0 = p.n0 / 4u + wid.x * ${u(cv * RB_WX)} + lid.x;
${setup.join('\n')}
${kLoops(step, needsTail(spec))}
${epi.join('\n')}
}`;
  return { code, tileM: RB_WY * tr, tileN: 4 * cv * RB_WX };
}

// ---------------------------------------------------------------------------------------------------------
// tiled variant: 16x16 invocations, a 64x64 output tile, K in steps of 16 staged through workgroup memory.
// Global loads are scalar (any layout); out-of-range elements load as 0.

const T_K = 16;

function tiledKernel(spec: MatmulKernelSpec): MatmulKernel {
  // element (row, k) of op(A) and (k, col) of op(B), clamped in range, 0 outside
  const aIdx = spec.transA ? 'aOff + kc * M + rc' : 'aOff + rc * K + kc';
  const bIdx = spec.transB ? 'bOff + cc * K + kc' : 'bOff + kc * N + cc';
  const aLoad = spec.vecA ? `A4[(${aIdx}) >> 2u][(${aIdx}) & 3u]` : `A1[${aIdx}]`;
  const bLoad = spec.vecB ? `B4[(${bIdx}) >> 2u][(${bIdx}) & 3u]` : `B1[${bIdx}]`;
  const epi: string[] = [];
  for (let i = 0; i < 4; i++) {
    epi.push(`  if (row0 + 4u * ty + ${u(i)} < M) {`);
    epi.push(storeOne(spec, `acc${i}`, `(row0 + 4u * ty + ${u(i)})`, '(cg0 + tx)', '    '));
    epi.push('  }');
  }
  const code = `${header(spec)}
var<workgroup> As: array<vec4<f32>, ${T_K * 16}>;
var<workgroup> Bs: array<vec4<f32>, ${T_K * 16}>;

fn loadA(aOff: u32, row: u32, k: u32) -> f32 {
  let M = p.M;
  let K = p.K;
  let rc = min(row, M - 1u);
  let kc = min(k, K - 1u);
  return select(0.0, ${aLoad}, row < M && k < K);
}
fn loadB(bOff: u32, k: u32, col: u32) -> f32 {
  let N = p.N;
  let K = p.K;
  let cc = min(col, N - 1u);
  let kc = min(k, K - 1u);
  return select(0.0, ${bLoad}, col < N && k < K);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
${prologue()}
  let tx = lid.x;
  let ty = lid.y;
  let row0 = p.m0 + wid.y * 64u;
  let cg0 = p.n0 / 4u + wid.x * 16u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  // staging: invocation li loads rows 4g..4g+3 of A at k0 + kk, and columns 4g..4g+3 of B at k0 + kb
  let kk = li % ${u(T_K)};
  let g = li / ${u(T_K)};
  let kb = li / 16u;
  let gb = li % 16u;
  for (var k0 = 0u; k0 < K; k0 += ${u(T_K)}) {
    let ra = row0 + 4u * g;
    As[kk * 16u + g] = vec4<f32>(loadA(aOff, ra, k0 + kk), loadA(aOff, ra + 1u, k0 + kk),
                                 loadA(aOff, ra + 2u, k0 + kk), loadA(aOff, ra + 3u, k0 + kk));
    let cb = 4u * (cg0 + gb);
    Bs[kb * 16u + gb] = vec4<f32>(loadB(bOff, k0 + kb, cb), loadB(bOff, k0 + kb, cb + 1u),
                                  loadB(bOff, k0 + kb, cb + 2u), loadB(bOff, k0 + kb, cb + 3u));
    workgroupBarrier();
    for (var j = 0u; j < ${u(T_K)}; j++) {
      let a = As[j * 16u + ty];
      let b = Bs[j * 16u + tx];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }
${epi.join('\n')}
}`;
  return { code, tileM: 64, tileN: 64 };
}

/** The kernel of a subgroup, regblock or tiled spec (packed and gemv: their own files). */
export function matmulKernel(spec: MatmulKernelSpec): MatmulKernel {
  if (spec.variant === 'packed') throw new Error('matmulKernel: the packed kernel is packedKernel (matmul-packed.wgsl.ts)');
  if (spec.variant === 'gemv') throw new Error('matmulKernel: the gemv kernel is gemvKernel (matmul-gemv.wgsl.ts)');
  if (spec.variant === 'subgroup') return subgroupKernel(spec);
  if (spec.variant === 'regblock') return regblockKernel(spec);
  return tiledKernel(spec);
}
