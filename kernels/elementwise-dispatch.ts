// The elementwise dispatcher: one generated kernel for any WGSL expression over NumPy-broadcast inputs, shared by
// the table ops (elementwise.ts), broadcastTo and mean's backward (reduce.ts) and the matmul/layout shape helpers.
//
// Two kernel shapes:
//  * same-shape operands: a flat loop, vec4 loads when the size is a multiple of 4, a few vec4 per invocation
//    at a stride of the workgroup (coalesced on a GPU; on lavapipe several vec4 per invocation move about
//    twice the bytes of one, shared/LAVAPIPE.md).
//  * NumPy broadcasting: the output index is decomposed over the (collapsed) output shape and each input
//    reads at its own strides (0 along broadcast axes). When the innermost axis is a multiple of 4 and every
//    input either runs along it (stride 1) or is constant along it, the loop is still vec4.
import { bindingChunks } from '../engine/binding-chunks.ts';
import { gpu } from '../engine/gpu.ts';
import { grid1D, rt, type BufferBinding, type Param } from '../engine/runtime.ts';
import { helpersFor } from './elementwise-table.ts';
import { empty, type Shape, type Tensor } from '../engine/tensor.ts';
import { memoWgsl } from './wgsl-memo.ts';

const WORKGROUP = 256;
/** Per-invocation work, mutable so benchmarks can compare settings (pipelines are cached by source). */
const EW_TUNING = {
  /** vec4 (or scalars) per invocation on the flat path. lavapipe under load, add of 16M elements, best of 4
   * interleaved runs: 2 -> 168 ms, 4 -> 154 ms, 8 -> 275 ms, 16 -> 341 ms */
  vecPerThread: 4,
  /** vec4 (or scalars) per invocation on the broadcasting path (each pays an index decomposition); [4096, 2048]
   * + [2048] on lavapipe: 1 -> 84 ms, 4 -> 83 ms, 8 -> 108 ms, 16 -> 143 ms */
  bcastPerThread: 4,
};
/** broadcast shapes are collapsed first; T5 needs at most 4 axes after collapsing */
const MAX_RANK = 8;

// ---------------------------------------------------------------------------------------------------------
// shapes

export function broadcastShapes(op: string, shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < rank; d++) {
    let size = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + d] ?? 1;
      if (v === 1) continue;
      if (size !== 1 && v !== size) {
        throw new RangeError(`${op}: shapes ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')} do not broadcast`);
      }
      size = v;
    }
    // a 0-length axis wins over 1 (NumPy)
    out.push(shapes.some((s) => s[s.length - rank + d] === 0) ? 0 : size);
  }
  return out;
}

/** Strides of `shape` (contiguous) seen from an output of rank `outShape.length`, 0 along broadcast axes. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const rank = outShape.length;
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = rank - shape.length + d;
    strides[od] = shape[d] === 1 ? 0 : s;
    s *= shape[d]!;
  }
  return strides;
}

/** Drops size-1 axes and merges neighbours that every operand walks contiguously. */
export function collapse(shape: Shape, strides: number[][]): { dims: number[]; strides: number[][] } {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k]![last] === s[d]! * shape[d]!)) {
      dims[last] *= shape[d]!;
      strides.forEach((s, k) => (st[k]![last] = s[d]!));
    } else {
      dims.push(shape[d]!);
      strides.forEach((s, k) => st[k]!.push(s[d]!));
    }
  }
  return { dims, strides: st };
}

// ---------------------------------------------------------------------------------------------------------
// kernel generation

export interface EwInput {
  t: Tensor;
  /** the identifier the expression uses */
  name: string;
}

type Plan =
  | { kind: 'flat'; vec: boolean; n: number }
  | { kind: 'bcast'; vec: boolean; dims: number[]; strides: number[][]; splat: boolean[] };

function plan(inputs: EwInput[], outShape: number[]): Plan {
  const n = outShape.reduce((a, b) => a * b, 1);
  const same = inputs.every((i) => i.t.size === n);
  if (same) return { kind: 'flat', vec: n % 4 === 0, n };
  const c = collapse(outShape, inputs.map((i) => broadcastStrides(i.t.shape, outShape)));
  if (c.dims.length > MAX_RANK) throw new RangeError(`elementwise: more than ${MAX_RANK} axes after collapsing`);
  const r = c.dims.length;
  const inner = c.dims[r - 1] ?? 1;
  const vec = r > 0 && inner % 4 === 0 && c.strides.every((s) => s[r - 1] === 0 || s[r - 1] === 1);
  return { kind: 'bcast', vec, dims: c.dims, strides: c.strides, splat: c.strides.map((s) => vec && s[r - 1] === 0) };
}

function scalarType(t: Tensor): string {
  return t.dtype === 'i32' ? 'i32' : 'f32';
}

/** What a plan's source depends on: its kind, vector width, rank and splats, not its sizes. */
type CodeShape = { kind: 'flat'; vec: boolean } | { kind: 'bcast'; vec: boolean; rank: number; splat: boolean[] };

function codeShape(p: Plan): CodeShape {
  if (p.kind === 'flat') return { kind: 'flat', vec: p.vec };
  return { kind: 'bcast', vec: p.vec, rank: p.dims.length, splat: p.splat };
}

function kernelCode(inputs: Array<{ name: string; dtype: string }>, expr: string, p: CodeShape): string {
  const T = p.vec ? 'vec4<f32>' : 'f32';
  const decls = inputs.map((inp, k) => {
    const st = inp.dtype;
    const elem = p.vec && !(p.kind === 'bcast' && p.splat[k]) ? `vec4<${st}>` : st;
    return `@group(0) @binding(${k}) var<storage, read> v_${inp.name}: array<${elem}>;`;
  });
  const outBinding = inputs.length;
  const fields = ['n: u32', 's: f32'];
  if (p.kind === 'bcast') {
    for (let d = 0; d < p.rank; d++) fields.push(`d${d}: u32`);
    inputs.forEach((_, k) => { for (let d = 0; d < p.rank; d++) fields.push(`s${k}_${d}: u32`); });
  }
  const helpers = helpersFor([expr]).join('\n');
  let body: string;
  if (p.kind === 'flat') {
    const loads = inputs.map((inp) => `let ${inp.name} = T(v_${inp.name}[i]);`).join(' ');
    body = `
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * EW_TUNING.vecPerThread}u + lid;
  for (var k = 0u; k < ${EW_TUNING.vecPerThread}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) { ${loads} out[i] = ${expr}; }
  }`;
  } else {
    const r = p.rank;
    const W = p.vec ? 4 : 1;
    const offs = inputs.map((_, k) => `var o${k} = 0u;`).join(' ');
    const decompose: string[] = [];
    for (let d = r - 1; d >= 0; d--) {
      const idx = d === 0 ? 'rem' : `rem % p.d${d}`;
      decompose.push(`{ let q = ${idx}; ${inputs.map((_, k) => `o${k} += q * p.s${k}_${d};`).join(' ')}${d > 0 ? ` rem = rem / p.d${d};` : ''} }`);
    }
    const loads = inputs
      .map((inp, k) => {
        if (!p.vec) return `let ${inp.name} = T(v_${inp.name}[o${k}]);`;
        return p.splat[k] ? `let ${inp.name} = T(f32(v_${inp.name}[o${k}]));` : `let ${inp.name} = T(v_${inp.name}[o${k} / 4u]);`;
      })
      .join(' ');
    body = `
  let base = (wid.x + wid.y * nwg.x) * ${WORKGROUP * EW_TUNING.bcastPerThread}u + lid;
  for (var k = 0u; k < ${EW_TUNING.bcastPerThread}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) {
      var rem = i * ${W}u; ${offs}
      ${decompose.join('\n      ')}
      ${loads}
      out[i] = ${expr};
    }
  }`;
  }
  return /* wgsl */ `
alias T = ${T};
${decls.join('\n')}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<T>;
struct Params { ${fields.join(', ')} }
@group(0) @binding(${outBinding + 1}) var<uniform> p: Params;
${helpers}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = p.s;${body}
}`;
}

/** Runs `expr` over broadcast inputs into a new f32 tensor of the broadcast shape (no autograd). */
export function ewDispatch(name: string, inputs: EwInput[], expr: string, scalar = 0, outShape?: number[]): Tensor {
  const shape = outShape ?? broadcastShapes(name, inputs.map((i) => i.t.shape));
  const out = empty(shape);
  if (out.size === 0) return out;
  const p = plan(inputs, shape);
  const units = p.vec ? out.size / 4 : out.size;
  const params: Param[] = [['u32', units], ['f32', scalar]];
  if (p.kind === 'bcast') {
    for (const d of p.dims) params.push(['u32', d]);
    for (const s of p.strides) for (const v of s) params.push(['u32', v]);
  }
  const per = p.kind === 'flat' ? EW_TUNING.vecPerThread : EW_TUNING.bcastPerThread;
  const code = kernelCodeMemo(inputs.map((i) => ({ name: i.name, dtype: scalarType(i.t) })), expr, codeShape(p));
  const maxBind = gpu().limits.maxStorageBufferBindingSize;
  if (p.kind === 'flat' && out.bytes > maxBind) {
    // same-shape operands over one binding (mT5's 489 MiB embedding gradients summed): the same window of every
    // operand at a time; windows start on 256-byte boundaries, so each one's first element is index 0
    for (const c of bindingChunks(0, out.size, p.vec ? 4 : 1, maxBind)) {
      const window = (t: Tensor, write: boolean, what: string): BufferBinding => ({ buffer: t.buffer, offset: c.offset, size: c.size, write, what });
      rt().dispatch({
        name,
        code,
        bindings: [...inputs.map((i) => window(i.t, false, `${name} input ${i.name} ${i.t.describe()}`)), window(out, true, `${name} output`)],
        params: [['u32', c.count], ['f32', scalar]],
        workgroups: grid1D(Math.ceil(c.count / (WORKGROUP * per))),
      });
    }
    return out;
  }
  const bindings: BufferBinding[] = inputs.map((i) => i.t.read(`${name} input ${i.name} ${i.t.describe()}`));
  rt().dispatch({
    name,
    code,
    bindings: [...bindings, out.write(`${name} output`)],
    params,
    workgroups: grid1D(Math.ceil(units / (WORKGROUP * per))),
  });
  return out;
}

// each source built once per argument set (wgsl-memo.ts)
const kernelCodeMemo = memoWgsl(kernelCode);
