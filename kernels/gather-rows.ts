// Row gather through a one-to-one index: out[i, ...] = x[from[i], ...], a zero row where from[i] = -1. Since no
// two output rows take the same input row, the gradient is the same gather the other way round: dx[j, ...] =
// dout[i, ...] for the i with from[i] = j, a zero row for an input row nobody took (no scatter, no atomics).
// T5's encoder uses it to drop a padded batch's padding rows and to put them back around attention
// (model/token-rows.ts).
//
// The index is host data (it comes from the attention mask), checked on the CPU and uploaded per call.
import { recordOp } from './record-op.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, tensor, type Tensor } from '../engine/tensor.ts';
import { vecType, vecWidth } from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

const WORKGROUP = 64;

function gatherCode(w: number): string {
  const T = vecType(w);
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<${T}>;
@group(0) @binding(1) var<storage, read> rowFrom: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<${T}>;
struct Params { total: u32, d: u32 }
@group(0) @binding(3) var<uniform> p: Params;

${flatGridEntry(WORKGROUP, 'i', 'p.total')}
  let row = i / p.d;
  let src = rowFrom[row];
  if (src < 0) {
    out[i] = ${T}(0.0);
  } else {
    out[i] = x[u32(src) * p.d + i % p.d];
  }
}`;
}
const gatherCodeMemo = memoWgsl(gatherCode);

/** The inverse of a one-to-one `from` over `inRows` input rows (-1 for rows nobody takes); throws, naming the
 * op, on an index out of [-1, inRows) or an input row taken twice. */
export function inverseRowIndex(op: string, from: Int32Array, inRows: number): Int32Array {
  const inverse = new Int32Array(inRows).fill(-1);
  for (let i = 0; i < from.length; i++) {
    const j = from[i]!;
    if (j === -1) continue;
    if (!(Number.isInteger(j) && j >= 0 && j < inRows)) {
      throw new RangeError(`${op}: index ${j} at output row ${i} is out of range [-1, ${inRows})`);
    }
    if (inverse[j] !== -1) throw new RangeError(`${op}: input row ${j} is taken by output rows ${inverse[j]} and ${i}`);
    inverse[j] = i;
  }
  return inverse;
}

function gatherKernel(x: Tensor, from: Int32Array, rowShape: number[]): Tensor {
  const out = empty([from.length, ...rowShape]);
  const rowSize = rowShape.reduce((a, b) => a * b, 1);
  if (out.size === 0) return out;
  const w = vecWidth(rowSize);
  const d = rowSize / w;
  const index = tensor(from, [from.length], { dtype: 'i32' });
  rt().dispatch({
    name: 'gather rows',
    code: gatherCodeMemo(w),
    bindings: [x.read('gather rows x'), index.read('gather rows index'), out.write('gather rows out')],
    params: [['u32', out.size / w], ['u32', d]],
    workgroups: grid1D(Math.ceil(out.size / w / WORKGROUP)),
  });
  index.dispose();
  return out;
}

/** x [R, ...] -> [from.length, ...]: row i is x's row from[i], zeros where from[i] = -1; no input row may be
 * taken twice. Differentiable in x. */
export function gatherRows(x: Tensor, from: Int32Array): Tensor {
  if (x.disposed) throw new Error(`gatherRows: x is a disposed tensor [${x.shape.join(', ')}]`);
  if (x.dtype !== 'f32' || x.rank < 1) throw new TypeError(`gatherRows: x must be f32 with a row axis, got ${x.dtype}[${x.shape.join(', ')}]`);
  const [rows, ...rowShape] = x.shape as [number, ...number[]];
  const inverse = inverseRowIndex('gatherRows', from, rows);
  const out = gatherKernel(x, from, rowShape);
  return recordOp('gatherRows', [x], out, [], (g) => [gatherKernel(g, inverse, rowShape)]);
}

/** Reference in float64. */
export function gatherRowsReference(x: ArrayLike<number>, rowSize: number, from: ArrayLike<number>): Float64Array {
  const out = new Float64Array(from.length * rowSize);
  for (let i = 0; i < from.length; i++) {
    const j = from[i]!;
    if (j >= 0) for (let c = 0; c < rowSize; c++) out[i * rowSize + c] = x[j * rowSize + c]!;
  }
  return out;
}
