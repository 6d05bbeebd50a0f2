// The row-kernel toolkit shared by softmax, the norms, cross-entropy and embedding: one row of a tensor per
// subgroup, invocation or workgroup, the WGSL that reduces a row, and binding tensors a range of rows at a time.
//
// Three row layouts (`RowImpl`, chosen by `defaultRowImpl`):
// - 'subgroup': one subgroup per row, lanes stride the row in vec4s, subgroupMax/subgroupAdd combine them: no
//   workgroup barrier at all. The default on lavapipe for every width (measured, 16384x256 / 256x32128:
//   2.7 / 3.0 GB/s against 2.0-3.0 / 1.8 for 'invocation' and 0.10 / 1.05 for 'workgroup'; copy kernel 3.1-4.0),
//   and on GPUs with subgroups for rows up to SUBGROUP_MAX_ROW.
// - 'invocation': one invocation per row, no barriers, no subgroups: lavapipe's fallback without subgroups
//   (a barrier there is a coroutine switch, and every lane's loads are gathered anyway).
// - 'workgroup': one workgroup per row, lanes stride the row (coalesced on a GPU), tree reduction in workgroup
//   memory: GPUs without subgroups, and wide rows (32128-wide logits) on GPUs.
// Tensors over maxStorageBufferBindingSize are bound a row range at a time (`rowChunks`).
import { gpu } from '../engine/gpu.ts';
import { grid1D, type BufferBinding } from '../engine/runtime.ts';
import type { Tensor } from '../engine/tensor.ts';

/** invocations per workgroup in the subgroup-per-row layout (a multiple of every subgroup size, 4 to 128) */
const SUBGROUP_WORKGROUP = 128;
/** rows per workgroup in the invocation-per-row layout */
const ROWS_PER_WORKGROUP = 64;
/** lanes per row in the workgroup-per-row layout */
const ROW_WORKGROUP = 128;
/** widest row (elements) that takes the subgroup-per-row layout on a real GPU; wider rows get a workgroup */
const SUBGROUP_MAX_ROW = 2048;

export type RowImpl = 'invocation' | 'subgroup' | 'workgroup';

/** Layout for a row kernel by adapter and row width (elements): a subgroup per row where subgroups exist (on a
 * GPU only up to SUBGROUP_MAX_ROW), else one invocation per row on CPU adapters and a workgroup per row on GPUs. */
export function defaultRowImpl(rowLength: number): RowImpl {
  const g = gpu();
  if (g.info.isSoftware) return g.hasSubgroups ? 'subgroup' : 'invocation';
  return g.hasSubgroups && rowLength <= SUBGROUP_MAX_ROW ? 'subgroup' : 'workgroup';
}

// WGSL rejects -inf as a constant expression, so it arrives as a uniform (`p.ninf`)
export const NEG_INF = 'p.ninf';

interface RowLayout {
  /** workgroup size */
  size: number;
  /** WGSL opening the per-row body with \`r\` bound; \`tail\` closes it */
  head: string;
  tail: string;
  /** this invocation's first element of the row and its stride (in vectors) */
  first: string;
  step: string;
}

/** Row index and the invocation's lane within the row, by layout; `tail` closes what `head` opens. */
export function rowHeader(impl: RowImpl): RowLayout {
  if (impl === 'invocation') {
    return {
      size: ROWS_PER_WORKGROUP,
      head: `let r = (wid.x + wid.y * nwg.x) * ${ROWS_PER_WORKGROUP}u + lid;\n  if (r >= p.rows) { return; }`,
      tail: '',
      first: '0u',
      step: '1u',
    };
  }
  if (impl === 'subgroup') {
    // rows are handed out per subgroup in a grid-stride loop, so any subgroup size the adapter picks works;
    // the loop condition is subgroup-uniform because all lanes of a subgroup share r. Assumes what every
    // Vulkan/Metal/D3D12 driver does for a 1-D workgroup (WebGPU does not promise it): subgroup k holds
    // local invocations k*sgs .. k*sgs + sgs - 1, with subgroup_invocation_id = lid % sgs
    return {
      size: SUBGROUP_WORKGROUP,
      head: `let perWg = ${SUBGROUP_WORKGROUP}u / sgs;
  let stride = nwg.x * nwg.y * perWg;
  for (var r = (wid.x + wid.y * nwg.x) * perWg + lid / sgs; r < p.rows; r += stride) {`,
      tail: '}',
      first: 'sl',
      step: 'sgs',
    };
  }
  return {
    size: ROW_WORKGROUP,
    head: `let r = wid.x + wid.y * nwg.x;\n  if (r >= p.rows) { return; }`,
    tail: '',
    first: 'lid',
    step: `${ROW_WORKGROUP}u`,
  };
}

/** Vector width of a row kernel over rows of `rowLength` elements: vec4 where the length allows it. */
export function vecWidth(rowLength: number): 1 | 4 {
  return rowLength % 4 === 0 ? 4 : 1;
}

/** WGSL type of one vector of width `w`. */
export function vecType(w: number): string {
  return w === 4 ? 'vec4<f32>' : 'f32';
}

/** WGSL sum of the lanes of a vector of width `w` (the value itself for width 1). */
export function hsum(w: number, v: string): string {
  return w === 4 ? `dot(${v}, vec4<f32>(1.0))` : v;
}

/** WGSL preamble and entry-point builtins for a layout. */
export function shaderPrelude(impl: RowImpl): { enable: string; builtins: string } {
  const base = `@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32`;
  if (impl !== 'subgroup') return { enable: '', builtins: base };
  return {
    // Tint cannot prove that r is subgroup-uniform (it is: one row per subgroup)
    enable: 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);',
    builtins: `${base}, @builtin(subgroup_invocation_id) sl: u32, @builtin(subgroup_size) sgs: u32`,
  };
}

/** WGSL scratch for `rowMergeMaxSum` in the workgroup layout. */
export function rowMergeScratch(impl: RowImpl): string {
  return impl === 'workgroup' ? `var<workgroup> sm: array<f32, ${ROW_WORKGROUP}>;\nvar<workgroup> ss: array<f32, ${ROW_WORKGROUP}>;` : '';
}

/** WGSL combining every lane's running (m, s) (max, and sum of exp(v − m)) into the row's, in every lane.
 * Needs `MERGE_FN` and a uniform `p.ninf` = -inf. */
export function rowMergeMaxSum(impl: RowImpl): string {
  if (impl === 'invocation') return '';
  if (impl === 'subgroup') {
    return /* wgsl */ `
  let mAll = subgroupMax(m);
  s = subgroupAdd(s * rescale(m, mAll));
  m = mAll;`;
  }
  return /* wgsl */ `
  sm[lid] = m;
  ss[lid] = s;
  workgroupBarrier();
  for (var k = ${ROW_WORKGROUP / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) {
      let a = sm[lid];
      let b = sm[lid + k];
      let mn = max(a, b);
      ss[lid] = ss[lid] * rescale(a, mn) + ss[lid + k] * rescale(b, mn);
      sm[lid] = mn;
    }
    workgroupBarrier();
  }
  m = sm[0];
  s = ss[0];`;
}

/** WGSL merging (m, s) pairs of running max and rescaled sum; an empty side (m = -inf) adds nothing. */
export const MERGE_FN = /* wgsl */ `
fn rescale(m: f32, to: f32) -> f32 {
  return select(exp(m - to), 0.0, m == ${NEG_INF});
}`;

export function rowWorkgroups(impl: RowImpl, rows: number): [number, number] {
  if (impl === 'subgroup') {
    // enough workgroups for one row per subgroup at the smallest subgroup size; larger subgroups loop
    const minSize = gpu().limits.subgroupMinSize ?? 4;
    return grid1D(Math.ceil(rows / (SUBGROUP_WORKGROUP / minSize)));
  }
  return grid1D(impl === 'invocation' ? Math.ceil(rows / ROWS_PER_WORKGROUP) : rows);
}

let bindingLimitOverride: number | null = null;
/** Tests: pretend maxStorageBufferBindingSize is `bytes` (null: the adapter's), to exercise row-range binding. */
export function setBindingLimitForTests(bytes: number | null): void {
  bindingLimitOverride = bytes;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Row ranges [first, count] whose bytes fit one storage binding and start at an offset the adapter accepts
 * (a multiple of minStorageBufferOffsetAlignment): tensors over maxStorageBufferBindingSize (128 MiB on
 * lavapipe) are bound a range at a time. */
export function rowChunks(op: string, rows: number, rowBytes: number, multipleOf = 1): Array<[number, number]> {
  const { limits } = gpu();
  const limit = bindingLimitOverride ?? limits.maxStorageBufferBindingSize;
  const align = limits.minStorageBufferOffsetAlignment;
  const aligned = align / gcd(rowBytes, align);
  // range starts are also multiples of `multipleOf` rows (a caller's own row blocking)
  const step = (aligned * multipleOf) / gcd(aligned, multipleOf);
  const per = Math.floor(Math.floor(limit / rowBytes) / step) * step;
  if (rows * rowBytes <= limit) return rows > 0 ? [[0, rows]] : [];
  if (per === 0) {
    throw new RangeError(`${op}: a row of ${rowBytes} bytes cannot be bound in ranges under maxStorageBufferBindingSize ${limit}`);
  }
  const out: Array<[number, number]> = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(per, rows - r)]);
  return out;
}

/** A binding of rows [first, first + count) of a tensor whose rows are `rowBytes` long. */
export function rowRange(t: Tensor, first: number, count: number, rowBytes: number, write: boolean, what: string): BufferBinding {
  return { buffer: t.buffer, offset: first * rowBytes, size: Math.max(4, count * rowBytes), write, what };
}

/** WGSL scratch for `rowSum` in the workgroup layout. */
export function rowScratch(impl: RowImpl): string {
  return impl === 'workgroup' ? `var<workgroup> rsum: array<f32, ${ROW_WORKGROUP}>;` : '';
}

/** WGSL that replaces the f32 \`name\` (this lane's partial) by the row's total, for every lane of the row. */
export function rowSum(impl: RowImpl, name: string): string {
  if (impl === 'subgroup') return `${name} = subgroupAdd(${name});`;
  if (impl === 'invocation') return '';
  return /* wgsl */ `
  rsum[lid] = ${name};
  workgroupBarrier();
  for (var k = ${ROW_WORKGROUP / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { rsum[lid] += rsum[lid + k]; }
    workgroupBarrier();
  }
  ${name} = rsum[0];
  workgroupBarrier();`;
}

/** WGSL condition true for exactly one invocation of the row. */
export function rowLeader(impl: RowImpl): string {
  return impl === 'subgroup' ? 'sl == 0u' : impl === 'workgroup' ? 'lid == 0u' : 'true';
}

/** One storage binding of a row kernel, numbered in order: access, name, WGSL type. */
export type StorageDecl = [access: 'read' | 'read_write', name: string, type: string];

/**
 * A row kernel's WGSL: the storage bindings in order, then the uniform `p: Params { <params> }`, the layout's
 * scratch for `rowSum`, the kernel's own `moduleDecls` (functions, workgroup scratch), and `body(layout)`
 * once per row `r`, whose first vector is at `base = r * p.n`.
 */
export function rowKernelCode(impl: RowImpl, storage: StorageDecl[], params: string, body: (h: RowLayout) => string, moduleDecls = ''): string {
  const h = rowHeader(impl);
  const pre = shaderPrelude(impl);
  const decls = storage.map(([access, name, type], i) => `@group(0) @binding(${i}) var<storage, ${access}> ${name}: ${type};`);
  return /* wgsl */ `${pre.enable}
${decls.join('\n')}
struct Params { ${params} }
@group(0) @binding(${storage.length}) var<uniform> p: Params;
${rowScratch(impl)}
${moduleDecls ? `${moduleDecls}\n` : ''}
@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  ${body(h)}
  ${h.tail}
}`;
}
