// Cross-entropy from logits, as `torch.nn.CrossEntropyLoss(ignore_index=-100)` (Hugging Face T5's loss):
// loss_r = logsumexp(logits_r) − logits_r[label_r], 0 for rows whose label is the ignore index;
// 'mean' divides the sum by the number of non-ignored rows, so all rows ignored gives 0/0 = NaN, as PyTorch.
//
// Forward: one pass over each row keeps a running max and a rescaled sum of exp (online softmax), so the
// softmax is never materialised; the per-row logsumexp is saved. Backward recomputes the softmax from it:
// dlogits = (exp(logits − lse) − onehot(label)) ⋅ gradOut / count for non-ignored rows, 0 for ignored ones.
//
// Label smoothing ε (torch's CrossEntropyLoss(label_smoothing=ε), the same as HF Trainer's LabelSmoother for one
// label per row): the target is (1 − ε)·onehot + ε/V, so loss_r = lse_r − (1 − ε)·logits_r[label_r] − ε·mean(logits_r)
// and dlogits = softmax − (1 − ε)·onehot − ε/V. The row mean needs one more sum in the forward pass; without
// smoothing the kernels are the plain ones.
//
// Labels out of [0, V) other than the ignore index: labels given as host data (an Int32Array, or a tensor made
// by `idsTensor`) are checked on the CPU and throw, naming the op, the row and the label. A labels tensor that
// only lives on the GPU cannot be checked without a readback; there the kernels clamp the label into [0, V)
// so that nothing is read out of bounds (the loss of such a row is then that of the clamped class).
import { recordOp } from './record-op.ts';
import { rt } from '../engine/runtime.ts';
import { empty, tensor, type Tensor } from '../engine/tensor.ts';
import { hostIds } from './embedding.ts';
import {
  defaultRowImpl, MERGE_FN, rowChunks, rowHeader, rowRange, rowLeader, rowMergeScratch, rowMergeMaxSum, rowScratch, rowSum, rowWorkgroups,
  shaderPrelude, vecType, vecWidth, type RowImpl,
} from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';

/** invocations of the single workgroup that sums row losses (a fixed order: deterministic) */
const REDUCE_WORKGROUP = 256;

export type Reduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  reduction?: Reduction;
  /** ε in [0, 1): the target mixes the label with the uniform distribution (torch's label_smoothing); default 0 */
  labelSmoothing?: number;
  /** row-kernel layout; default by adapter and vocabulary size */
  impl?: RowImpl;
}

/** WGSL: the row's label clamped into [0, V), or the ignore index. */
const LABEL_FN = /* wgsl */ `
fn labelOf(r: u32) -> i32 {
  let l = labels[r];
  if (l == p.ignore) { return l; }
  return clamp(l, 0, i32(p.v) - 1);
}`;

function forwardCode(impl: RowImpl, w: number, smoothing: boolean): string {
  const T = vecType(w);
  const h = rowHeader(impl);
  const pre = shaderPrelude(impl);
  const cmax = w === 4 ? 'max(max(v.x, v.y), max(v.z, v.w))' : 'v';
  const esum = w === 4 ? 'dot(exp(v - vec4<f32>(m)), vec4<f32>(1.0))' : 'exp(v - m)';
  const rowLoss = smoothing
    ? 'z - p.keep * flat[r * p.v + u32(l)] - p.eps * (sx / f32(p.v))'
    : 'z - flat[r * p.v + u32(l)]';
  return /* wgsl */ `${pre.enable}
@group(0) @binding(0) var<storage, read> logits: array<${T}>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read> flat: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
struct Params { rows: u32, n: u32, ninf: f32, v: u32, ignore: i32, row0: u32, eps: f32, keep: f32 }
@group(0) @binding(5) var<uniform> p: Params;
${rowMergeScratch(impl)}
${smoothing ? rowScratch(impl) : ''}
${MERGE_FN}
${LABEL_FN}

@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  var m = p.ninf;
  var s = 0.0;
  var sx = 0.0;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = logits[base + j];
    ${smoothing ? `sx += ${w === 4 ? 'dot(v, vec4<f32>(1.0))' : 'v'};` : ''}
    let c = ${cmax};
    if (c > m) {
      s *= rescale(m, c);
      m = c;
    }
    if (m != p.ninf) {
      s += ${esum};
    }
  }
  ${rowMergeMaxSum(impl)}
  ${smoothing ? rowSum(impl, 'sx') : ''}
  if (${rowLeader(impl)}) {
    let z = m + log(s);
    lse[p.row0 + r] = z;
    let l = labelOf(p.row0 + r);
    loss[p.row0 + r] = select(${rowLoss}, 0.0, l == p.ignore);
  }
  ${h.tail}
}`;
}

/** One workgroup: total of the row losses and the count of non-ignored rows, in a fixed order. */
function reduceCode(): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> loss: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<f32>;
struct Params { rows: u32, ignore: i32, mean: u32, nan: f32 }
@group(0) @binding(4) var<uniform> p: Params;
var<workgroup> ssum: array<f32, ${REDUCE_WORKGROUP}>;
var<workgroup> scnt: array<u32, ${REDUCE_WORKGROUP}>;

@compute @workgroup_size(${REDUCE_WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0u;
  for (var r = lid; r < p.rows; r += ${REDUCE_WORKGROUP}u) {
    s += loss[r];
    c += select(1u, 0u, labels[r] == p.ignore);
  }
  ssum[lid] = s;
  scnt[lid] = c;
  workgroupBarrier();
  for (var k = ${REDUCE_WORKGROUP / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) {
      ssum[lid] += ssum[lid + k];
      scnt[lid] += scnt[lid + k];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let n = f32(scnt[0]);
    count[0] = n;
    // 0/0 is not guaranteed to be NaN in WGSL, and NaN is no constant expression: PyTorch's NaN for
    // "no target" arrives as a uniform
    out[0] = select(ssum[0], select(ssum[0] / n, p.nan, scnt[0] == 0u), p.mean == 1u);
  }
}`;
}

function backwardCode(impl: RowImpl, w: number, perRowGrad: boolean, smoothing: boolean): string {
  const T = vecType(w);
  const h = rowHeader(impl);
  const pre = shaderPrelude(impl);
  const lane = w === 4 ? 'vec4<i32>(i32(j) * 4) + vec4<i32>(0, 1, 2, 3)' : 'i32(j)';
  const onehot = w === 4 ? `select(vec4<f32>(0.0), vec4<f32>(1.0), ${lane} == vec4<i32>(l))` : `select(0.0, 1.0, ${lane} == l)`;
  return /* wgsl */ `${pre.enable}
@group(0) @binding(0) var<storage, read> logits: array<${T}>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> gradOut: array<f32>;
@group(0) @binding(4) var<storage, read> count: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<${T}>;
struct Params { rows: u32, n: u32, v: u32, ignore: i32, mean: u32, row0: u32, eps: f32, keep: f32 }
@group(0) @binding(6) var<uniform> p: Params;
${LABEL_FN}

@compute @workgroup_size(${h.size})
fn main(${pre.builtins}) {
  ${h.head}
  let base = r * p.n;
  let l = labelOf(p.row0 + r);
  var g = ${perRowGrad ? 'gradOut[p.row0 + r]' : 'gradOut[0]'};
  if (p.mean == 1u) { g = g / count[0]; }
  if (l == p.ignore) { g = 0.0; }
  let z = lse[p.row0 + r];
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    dlogits[base + j] = (exp(logits[base + j] - ${T}(z)) - ${smoothing ? `p.keep * ${onehot} - ${T}(p.eps / f32(p.v))` : onehot}) * g;
  }
  ${h.tail}
}`;
}

function checkLabels(host: Int32Array, V: number, ignoreIndex: number): void {
  for (let i = 0; i < host.length; i++) {
    const l = host[i]!;
    if (l !== ignoreIndex && (l < 0 || l >= V)) {
      throw new RangeError(`crossEntropy: label ${l} at row ${i} is out of range [0, ${V}) (ignore index ${ignoreIndex})`);
    }
  }
}

/** Cross-entropy of logits [N, V] against i32 labels [N]: a scalar ('mean', 'sum') or [N] ('none'). */
export function crossEntropy(logits: Tensor, labels: Tensor | Int32Array, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  if (logits.disposed) throw new Error(`crossEntropy: logits is a disposed tensor [${logits.shape.join(', ')}]`);
  if (logits.dtype !== 'f32' || logits.rank !== 2) {
    throw new TypeError(`crossEntropy: logits must be f32 [N, V], got ${logits.dtype}[${logits.shape.join(', ')}]`);
  }
  const [N, V] = logits.shape as [number, number];
  if (!['mean', 'sum', 'none'].includes(reduction)) throw new RangeError(`crossEntropy: unknown reduction '${reduction}'`);
  if (!Number.isInteger(ignoreIndex)) throw new RangeError(`crossEntropy: ignoreIndex must be an integer, got ${ignoreIndex}`);
  const eps = opts.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps < 1)) throw new RangeError(`crossEntropy: label smoothing must be in [0, 1), got ${eps}`);
  let labelsT: Tensor;
  let ownLabels = false;
  if (labels instanceof Int32Array) {
    if (labels.length !== N) throw new RangeError(`crossEntropy: ${labels.length} labels for logits [${N}, ${V}]`);
    checkLabels(labels, V, ignoreIndex);
    labelsT = tensor(labels, [N], { dtype: 'i32' });
    ownLabels = true;
  } else {
    if (labels.disposed) throw new Error(`crossEntropy: labels is a disposed tensor [${labels.shape.join(', ')}]`);
    if (labels.dtype !== 'i32' || labels.rank !== 1 || labels.shape[0] !== N) {
      throw new TypeError(`crossEntropy: labels must be i32 [${N}] for logits [${N}, ${V}], got ${labels.dtype}[${labels.shape.join(', ')}]`);
    }
    const host = hostIds(labels);
    if (host) checkLabels(host, V, ignoreIndex);
    labelsT = labels;
  }
  if (V === 0 && N > 0) throw new RangeError(`crossEntropy: logits [${N}, 0] have no classes`);
  const impl = opts.impl ?? defaultRowImpl(V);
  const w = vecWidth(V);
  const rowLoss = empty([N]);
  const lse = empty([N]);
  const rowBytes = V * 4;
  for (const [r0, n] of rowChunks('crossEntropy', N, rowBytes)) {
    rt().dispatch({
      name: 'cross_entropy',
      code: forwardCodeMemo(impl, w, eps > 0),
      bindings: [
        rowRange(logits, r0, n, rowBytes, false, 'crossEntropy logits'), labelsT.read('crossEntropy labels'),
        rowRange(logits, r0, n, rowBytes, false, 'crossEntropy logits (label gather)'),
        rowLoss.write('crossEntropy row losses'), lse.write('crossEntropy logsumexp'),
      ],
      params: [['u32', n], ['u32', V / w], ['f32', -Infinity], ['u32', V], ['i32', ignoreIndex], ['u32', r0], ['f32', eps], ['f32', 1 - eps]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  let out: Tensor;
  const count = empty([1]);
  if (reduction === 'none') {
    out = rowLoss;
  } else {
    out = empty([]);
    rt().dispatch({
      name: 'cross_entropy_total',
      code: reduceCodeMemo(),
      bindings: [rowLoss.read('crossEntropy row losses'), labelsT.read('crossEntropy labels'), out.write('crossEntropy loss'), count.write('crossEntropy count')],
      params: [['u32', N], ['i32', ignoreIndex], ['u32', reduction === 'mean' ? 1 : 0], ['f32', NaN]],
      workgroups: [1],
    });
    rowLoss.dispose();
  }
  out = recordOp('crossEntropy', [logits], out, [logits, labelsT, lse, count], (g, [x, lab, z, cnt]) => [
    crossEntropyBackward(g, x!, lab!, z!, cnt!, { ignoreIndex, reduction, impl, labelSmoothing: eps }),
  ]);
  lse.dispose();
  count.dispose();
  if (ownLabels) labelsT.dispose();
  return out;
}

/** dlogits from the saved logsumexp; `count` (non-ignored rows, f32 [1]) is used for 'mean'. */
function crossEntropyBackward(
  gradOut: Tensor, logits: Tensor, labels: Tensor, lse: Tensor, count: Tensor, opts: CrossEntropyOptions = {},
): Tensor {
  const [N, V] = logits.shape as [number, number];
  const reduction = opts.reduction ?? 'mean';
  const perRow = reduction === 'none';
  if (gradOut.size !== (perRow ? N : 1)) {
    throw new RangeError(`crossEntropyBackward: gradient [${gradOut.shape.join(', ')}] for a '${reduction}' loss over ${N} rows`);
  }
  const impl = opts.impl ?? defaultRowImpl(V);
  const w = vecWidth(V);
  const eps = opts.labelSmoothing ?? 0;
  const dlogits = empty([N, V]);
  const rowBytes = V * 4;
  for (const [r0, n] of rowChunks('crossEntropyBackward', N, rowBytes)) {
    rt().dispatch({
      name: 'cross_entropy_backward',
      code: backwardCodeMemo(impl, w, perRow, eps > 0),
      bindings: [
        rowRange(logits, r0, n, rowBytes, false, 'crossEntropy logits'), labels.read('crossEntropy labels'),
        lse.read('crossEntropy logsumexp'), gradOut.read('crossEntropy gradOut'), count.read('crossEntropy count'),
        rowRange(dlogits, r0, n, rowBytes, true, 'crossEntropy dlogits'),
      ],
      params: [
        ['u32', n], ['u32', V / w], ['u32', V], ['i32', opts.ignoreIndex ?? -100], ['u32', reduction === 'mean' ? 1 : 0], ['u32', r0],
        ['f32', eps], ['f32', 1 - eps],
      ],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  return dlogits;
}

/** Float64 reference: per-row losses (0 for ignored rows) and the reduced loss; with label smoothing ε, HF's
 * LabelSmoother term by term: (1 − ε)·nll + ε·(Σ_v −log p_v) / V. */
export function crossEntropyReference(
  logits: ArrayLike<number>, labels: ArrayLike<number>, V: number, ignoreIndex = -100, labelSmoothing = 0,
): { rows: Float64Array; sum: number; count: number; mean: number } {
  const N = labels.length;
  const rows = new Float64Array(N);
  let sum = 0;
  let count = 0;
  for (let r = 0; r < N; r++) {
    const l = labels[r]!;
    if (l === ignoreIndex) continue;
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, logits[r * V + j]!);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[r * V + j]! - m);
    const lse = m + Math.log(s);
    let smooth = 0;
    for (let j = 0; j < V; j++) smooth += lse - logits[r * V + j]!;
    rows[r] = (1 - labelSmoothing) * (lse - logits[r * V + l]!) + labelSmoothing * (smooth / V);
    sum += rows[r]!;
    count++;
  }
  return { rows, sum, count, mean: sum / count };
}

// each source built once per argument set (wgsl-memo.ts)
const forwardCodeMemo = memoWgsl(forwardCode);
const reduceCodeMemo = memoWgsl(reduceCode);
const backwardCodeMemo = memoWgsl(backwardCode);
