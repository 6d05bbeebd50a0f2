// Deterministic column sums over rows, the parameter gradients of the norms (Σ_rows of a per-element term):
// no atomics, a fixed order: each invocation sums CHUNK_ROWS rows of one column, then a second pass sums the
// chunks. Inputs over the binding limit are bound a range of rows at a time.
import { grid1D, rt, type BufferBinding } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import { rowChunks, rowRange, vecType, vecWidth } from './row-kernel.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

/** rows summed by one invocation in the first stage of a column reduction */
const CHUNK_ROWS = 32;
const COLUMN_WORKGROUP = 64;

interface ColumnInput {
  t: Tensor;
  /** 'elem': [rows, D] like x; 'row': one value per row, [rows] */
  kind: 'elem' | 'row';
}

/** Deterministic Σ over rows of WGSL terms (one output [D] per term). In a term, `e<i>` is input i's element
 * (a vector of the kernel's width) and `r<i>` its per-row value. */
export function columnSums(name: string, inputs: ColumnInput[], terms: string[], rows: number, D: number): Tensor[] {
  const w = vecWidth(D);
  const T = vecType(w);
  const n = D / w;
  const chunks = Math.ceil(rows / CHUNK_ROWS);
  const partials = terms.map(() => empty([chunks, D]));
  const outs = terms.map(() => empty([D]));
  const decls = inputs
    .map((inp, i) => `@group(0) @binding(${i}) var<storage, read> in${i}: array<${inp.kind === 'elem' ? T : 'f32'}>;`)
    .join('\n');
  const loads = inputs
    .map((inp, i) => (inp.kind === 'elem' ? `let e${i} = in${i}[r * p.n + c];` : `let r${i} = ${T}(in${i}[p.row0 + r]);`))
    .join('\n      ');
  const stage1 = /* wgsl */ `
${decls}
${terms.map((_, k) => `@group(0) @binding(${inputs.length + k}) var<storage, read_write> part${k}: array<${T}>;`).join('\n')}
struct Params { rows: u32, n: u32, chunks: u32, row0: u32 }
@group(0) @binding(${inputs.length + terms.length}) var<uniform> p: Params;

${flatGridEntry(COLUMN_WORKGROUP, 'i', 'p.chunks * p.n')}
  let chunk = i / p.n;
  let c = i % p.n;
  ${terms.map((_, k) => `var acc${k} = ${T}(0.0);`).join('\n  ')}
  let end = min(p.rows, (chunk + 1u) * ${CHUNK_ROWS}u);
  for (var r = chunk * ${CHUNK_ROWS}u; r < end; r++) {
      ${loads}
      ${terms.map((t, k) => `acc${k} += ${t};`).join('\n      ')}
  }
  let o = (p.row0 / ${CHUNK_ROWS}u) * p.n + i;
  ${terms.map((_, k) => `part${k}[o] = acc${k};`).join('\n  ')}
}`;
  const stage2 = /* wgsl */ `
@group(0) @binding(0) var<storage, read> part: array<${T}>;
@group(0) @binding(1) var<storage, read_write> out: array<${T}>;
struct Params { n: u32, chunks: u32 }
@group(0) @binding(2) var<uniform> p: Params;

${flatGridEntry(COLUMN_WORKGROUP, 'c', 'p.n')}
  var acc = ${T}(0.0);
  for (var k = 0u; k < p.chunks; k++) { acc += part[k * p.n + c]; }
  out[c] = acc;
}`;
  // inputs over the binding limit are bound a range of rows at a time (ranges start on a chunk boundary)
  for (const [r0, nr] of rowChunks(name, rows, D * 4, CHUNK_ROWS)) {
    const bindings: BufferBinding[] = [
      ...inputs.map((inp, i) =>
        inp.kind === 'elem' ? rowRange(inp.t, r0, nr, D * 4, false, `${name} input ${i}`) : inp.t.read(`${name} input ${i}`)),
      ...partials.map((t) => t.write(`${name} partial sums`)),
    ];
    const localChunks = Math.ceil(nr / CHUNK_ROWS);
    rt().dispatch({
      name: `${name}_columns`,
      code: stage1,
      bindings,
      params: [['u32', nr], ['u32', n], ['u32', localChunks], ['u32', r0]],
      workgroups: grid1D(Math.ceil((localChunks * n) / COLUMN_WORKGROUP)),
    });
  }
  partials.forEach((part, k) => {
    rt().dispatch({
      name: `${name}_columns_total`,
      code: stage2,
      bindings: [part.read(`${name} partial sums`), outs[k]!.write(`${name} column sums`)],
      params: [['u32', n], ['u32', chunks]],
      workgroups: grid1D(Math.ceil(n / COLUMN_WORKGROUP)),
    });
    part.dispose();
  });
  return outs;
}
