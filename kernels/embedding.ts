// Embedding lookup: out[..., :] = weight[ids[...], :], and its backward, a scatter-add of the output gradient
// into a [V, D] weight gradient.
//
// Backward without float atomics, deterministic: positions are grouped by id in increasing position order
// (a stable counting sort: rowStart[v] .. rowStart[v+1] indexes `perm`, the positions holding id v), then one
// invocation per (vocabulary row, vec4 of columns) sums its positions' gradient rows in that order and writes
// its gradient element once (zero for ids that do not occur). The sort is built
// - on the CPU when the ids' host data is known (an Int32Array argument, or a tensor made by `idsTensor`):
//   O(N + V), uploaded as two small i32 tensors;
// - otherwise on the GPU, from integer work only: per block of B positions, each position's rank among
//   equal ids before it in its block and the block's count per id (written by the last occurrence), a running
//   sum of those counts over blocks per id, a scan over ids, then every position's slot. O(N ⋅ B + V ⋅ N/B) for
//   blocks of B positions, B chosen per shape (`blockSize`).
//
// Out-of-range ids: host ids are checked on the CPU and throw, naming the op, the id and its position. Ids that
// only live on the GPU cannot be checked without a readback: an out-of-range id gives a zero output row and
// contributes no gradient.
//
// Tables over maxStorageBufferBindingSize (t5-large's 32128x1024 f32, 131.6 MB, against lavapipe's 128 MiB) are
// bound in row ranges whose offsets are multiples of minStorageBufferOffsetAlignment, one dispatch per range.
import { recordOp } from './record-op.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, Storage, tensor, zeros, type Shape, type Tensor } from '../engine/tensor.ts';
import { rowChunks, rowRange, vecType, vecWidth } from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

const WORKGROUP = 64;
/** vectors of one row per invocation in the gather and the gradient accumulation */
const VECS_PER_THREAD = 4;
/** the GPU-side counting sort keeps a count per (block of positions, id): blocks are sized so that this table
 * stays near BLOCK_TABLE_ENTRIES, within [MIN_BLOCK, MAX_BLOCK] positions (ranking costs O(block) per position) */
const BLOCK_TABLE_ENTRIES = 1 << 20;
const MIN_BLOCK = 32;
const MAX_BLOCK = 1024;

function blockSize(N: number, V: number): number {
  const want = 2 ** Math.ceil(Math.log2(Math.max(1, (N * V) / BLOCK_TABLE_ENTRIES)));
  return Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, want));
}
const SCAN_WORKGROUP = 256;

const hostCopies = new WeakMap<Storage, Int32Array>();

/** An i32 ids tensor that remembers its host data, so ops can validate ids and plan on the CPU. */
export function idsTensor(data: Int32Array | ArrayLike<number>, shape: Shape): Tensor {
  const host = Int32Array.from(data as ArrayLike<number>);
  const t = tensor(host, shape, { dtype: 'i32' });
  hostCopies.set(t.storage, host);
  return t;
}

/** The host data behind an ids tensor (or a reshape of one), when it is known. */
export function hostIds(t: Tensor): Int32Array | undefined {
  return t.disposed ? undefined : hostCopies.get(t.storage);
}

/** WGSL entry of a grid1D dispatch of WORKGROUP-sized groups: invocation `index` (flattened), none past `p.<bound>`. */
function gridEntry(index: string, bound: string): string {
  return flatGridEntry(WORKGROUP, index, `p.${bound}`);
}

/** WGSL: position i's id; the invocation stops for an id outside [0, p.v) (GPU-only ids are not checked). */
const VALID_ID = /* wgsl */ `let id = ids[i];
  if (id < 0 || u32(id) >= p.v) { return; }`;

/** The gather and the accumulation give each invocation one row (position or vocabulary id) and VECS_PER_THREAD
 * vectors of it, `blocks` apart, so the row's id or range is read once and neighbouring invocations touch
 * neighbouring vectors (coalesced on a GPU). */
function gatherCode(w: number): string {
  const T = vecType(w);
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> table: array<${T}>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<${T}>;
struct Params { total: u32, d: u32, blocks: u32, v: u32, t0: u32, tn: u32, first: u32 }
@group(0) @binding(3) var<uniform> p: Params;

${gridEntry('i', 'total')}
  let pos = i / p.blocks;
  let c0 = i % p.blocks;
  let id = ids[pos];
  let o = pos * p.d;
  if (id < 0 || u32(id) >= p.v) {
    // the first table range writes the zero row of an out-of-range id (GPU-only ids: not checked)
    if (p.first == 1u) {
      for (var c = c0; c < p.d; c += p.blocks) { out[o + c] = ${T}(0.0); }
    }
    return;
  }
  let local = u32(id) - p.t0;
  if (u32(id) < p.t0 || local >= p.tn) { return; }
  let src = local * p.d;
  for (var c = c0; c < p.d; c += p.blocks) { out[o + c] = table[src + c]; }
}`;
}

/** Stage 1 of the GPU sort: rank of each position among equal ids earlier in its block; the last occurrence
 * writes the block's count for its id. */
const RANK_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read_write> rank: array<u32>;
@group(0) @binding(2) var<storage, read_write> blockCount: array<u32>;
struct Params { n: u32, v: u32, blk: u32 }
@group(0) @binding(3) var<uniform> p: Params;

${gridEntry('i', 'n')}
  ${VALID_ID}
  let b = i / p.blk;
  let start = b * p.blk;
  let end = min(p.n, start + p.blk);
  var before = 0u;
  for (var j = start; j < i; j++) { before += select(0u, 1u, ids[j] == id); }
  var last = true;
  for (var j = i + 1u; j < end; j++) { if (ids[j] == id) { last = false; break; } }
  rank[i] = before;
  if (last) { blockCount[b * p.v + u32(id)] = before + 1u; }
}`;

/** Stage 2: per id, counts over blocks become exclusive running sums; the total goes to `total`. */
const BLOCK_SCAN_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> blockCount: array<u32>;
@group(0) @binding(1) var<storage, read_write> total: array<u32>;
struct Params { v: u32, blocks: u32 }
@group(0) @binding(2) var<uniform> p: Params;

${gridEntry('v', 'v')}
  var t = 0u;
  for (var b = 0u; b < p.blocks; b++) {
    let c = blockCount[b * p.v + v];
    blockCount[b * p.v + v] = t;
    t += c;
  }
  total[v] = t;
}`;

/** Stage 3: one workgroup turns per-id totals into rowStart (exclusive scan, V + 1 entries). */
const ID_SCAN_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> total: array<u32>;
@group(0) @binding(1) var<storage, read_write> rowStart: array<u32>;
struct Params { v: u32 }
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> part: array<u32, ${SCAN_WORKGROUP}>;

@compute @workgroup_size(${SCAN_WORKGROUP})
fn main(@builtin(local_invocation_index) lid: u32) {
  let per = (p.v + ${SCAN_WORKGROUP - 1}u) / ${SCAN_WORKGROUP}u;
  let start = min(p.v, lid * per);
  let end = min(p.v, start + per);
  var s = 0u;
  for (var v = start; v < end; v++) { s += total[v]; }
  part[lid] = s;
  workgroupBarrier();
  // inclusive Hillis-Steele scan over the lanes' segment sums
  for (var k = 1u; k < ${SCAN_WORKGROUP}u; k = k << 1u) {
    var inc = 0u;
    if (lid >= k) { inc = part[lid - k]; }
    workgroupBarrier();
    part[lid] += inc;
    workgroupBarrier();
  }
  var run = part[lid] - s;
  for (var v = start; v < end; v++) {
    rowStart[v] = run;
    run += total[v];
  }
  if (lid == ${SCAN_WORKGROUP - 1}u) { rowStart[p.v] = part[lid]; }
}`;

/** Stage 4: every valid position's slot in `perm`. */
const PLACE_CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> rank: array<u32>;
@group(0) @binding(2) var<storage, read> blockCount: array<u32>;
@group(0) @binding(3) var<storage, read> rowStart: array<u32>;
@group(0) @binding(4) var<storage, read_write> perm: array<u32>;
struct Params { n: u32, v: u32, blk: u32 }
@group(0) @binding(5) var<uniform> p: Params;

${gridEntry('i', 'n')}
  ${VALID_ID}
  let u = u32(id);
  perm[rowStart[u] + blockCount[(i / p.blk) * p.v + u] + rank[i]] = i;
}`;

function accumulateCode(w: number): string {
  const T = vecType(w);
  const accs = Array.from({ length: VECS_PER_THREAD }, (_, k) => k);
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> dout: array<${T}>;
@group(0) @binding(1) var<storage, read> rowStart: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<${T}>;
struct Params { total: u32, d: u32, blocks: u32, g0: u32 }
@group(0) @binding(4) var<uniform> p: Params;

${gridEntry('i', 'total')}
  let lv = i / p.blocks;
  let c0 = i % p.blocks;
  let v = p.g0 + lv;
  ${accs.map((k) => `var a${k} = ${T}(0.0);`).join('\n  ')}
  let end = rowStart[v + 1u];
  for (var k = rowStart[v]; k < end; k++) {
    let src = perm[k] * p.d + c0;
    ${accs.map((k) => `if (c0 + ${k}u * p.blocks < p.d) { a${k} += dout[src + ${k}u * p.blocks]; }`).join('\n    ')}
  }
  let o = lv * p.d + c0;
  ${accs.map((k) => `if (c0 + ${k}u * p.blocks < p.d) { grad[o + ${k}u * p.blocks] = a${k}; }`).join('\n  ')}
}`;
}

function checkIds(host: Int32Array, V: number, weight: Tensor): void {
  for (let i = 0; i < host.length; i++) {
    const id = host[i]!;
    if (!(id >= 0 && id < V)) {
      throw new RangeError(`embedding: id ${id} at position ${i} is out of range [0, ${V}) for weight [${weight.shape.join(', ')}]`);
    }
  }
}

/** Counting sort of positions by id on the CPU: rowStart [V + 1] and perm [N] (positions in increasing order). */
export function sortPositions(host: Int32Array, V: number): { rowStart: Int32Array; perm: Int32Array } {
  const rowStart = new Int32Array(V + 1);
  for (const id of host) rowStart[id + 1]!++;
  for (let v = 0; v < V; v++) rowStart[v + 1]! += rowStart[v]!;
  const next = rowStart.slice(0, V);
  const perm = new Int32Array(host.length);
  for (let i = 0; i < host.length; i++) perm[next[host[i]!]!++] = i;
  return { rowStart, perm };
}

/** The same sort on the GPU from an ids tensor (integer work only, deterministic). */
function sortPositionsGpu(ids: Tensor, V: number): { rowStart: Tensor; perm: Tensor } {
  const N = ids.size;
  const blk = blockSize(N, V);
  const blocks = Math.ceil(N / blk);
  const rank = empty([N], 'i32');
  const blockCount = zeros([blocks * V], 'i32');
  const total = empty([V], 'i32');
  const rowStart = empty([V + 1], 'i32');
  const perm = empty([N], 'i32');
  const r = rt();
  const posGrid = grid1D(Math.ceil(N / WORKGROUP));
  r.dispatch({
    name: 'embedding_sort_rank', code: RANK_CODE,
    bindings: [ids.read('embedding ids'), rank.write('embedding ranks'), blockCount.write('embedding block counts')],
    params: [['u32', N], ['u32', V], ['u32', blk]], workgroups: posGrid,
  });
  r.dispatch({
    name: 'embedding_sort_blocks', code: BLOCK_SCAN_CODE,
    bindings: [blockCount.write('embedding block counts'), total.write('embedding id counts')],
    params: [['u32', V], ['u32', blocks]], workgroups: grid1D(Math.ceil(V / WORKGROUP)),
  });
  r.dispatch({
    name: 'embedding_sort_scan', code: ID_SCAN_CODE,
    bindings: [total.read('embedding id counts'), rowStart.write('embedding row starts')],
    params: [['u32', V]], workgroups: [1],
  });
  r.dispatch({
    name: 'embedding_sort_place', code: PLACE_CODE,
    bindings: [
      ids.read('embedding ids'), rank.read('embedding ranks'), blockCount.read('embedding block counts'),
      rowStart.read('embedding row starts'), perm.write('embedding permutation'),
    ],
    params: [['u32', N], ['u32', V], ['u32', blk]], workgroups: posGrid,
  });
  for (const t of [rank, blockCount, total]) t.dispose();
  return { rowStart, perm };
}

function checkWeight(op: string, weight: Tensor): [number, number] {
  if (weight.disposed) throw new Error(`${op}: weight is a disposed tensor [${weight.shape.join(', ')}]`);
  if (weight.dtype !== 'f32' || weight.rank !== 2) {
    throw new TypeError(`${op}: weight must be f32 [V, D], got ${weight.dtype}[${weight.shape.join(', ')}]`);
  }
  return weight.shape as [number, number];
}

/** weight [V, D] gathered at i32 ids [...] → [..., D]. Differentiable in weight. */
export function embedding(weight: Tensor, ids: Tensor | Int32Array): Tensor {
  const [V, D] = checkWeight('embedding', weight);
  let idsT: Tensor;
  let own = false;
  if (ids instanceof Int32Array) {
    checkIds(ids, V, weight);
    idsT = idsTensor(ids, [ids.length]);
    own = true;
  } else {
    if (ids.disposed) throw new Error(`embedding: ids is a disposed tensor [${ids.shape.join(', ')}]`);
    if (ids.dtype !== 'i32') throw new TypeError(`embedding: ids must be i32, got ${ids.dtype}[${ids.shape.join(', ')}]`);
    const host = hostIds(ids);
    if (host) checkIds(host, V, weight);
    idsT = ids;
  }
  const N = idsT.size;
  const out = empty([...idsT.shape, D]);
  if (N > 0 && D > 0) {
    const w = vecWidth(D);
    const d = D / w;
    const blocks = Math.ceil(d / VECS_PER_THREAD);
    const total = N * blocks;
    const chunks = V > 0 ? rowChunks('embedding', V, D * 4) : [[0, 0] as [number, number]];
    chunks.forEach(([t0, tn], k) => {
      rt().dispatch({
        name: 'embedding',
        code: gatherCodeMemo(w),
        bindings: [rowRange(weight, t0, tn, D * 4, false, `embedding weight rows ${t0}..${t0 + tn}`), idsT.read('embedding ids'), out.write('embedding out')],
        params: [['u32', total], ['u32', d], ['u32', blocks], ['u32', V], ['u32', t0], ['u32', tn], ['u32', k === 0 ? 1 : 0]],
        workgroups: grid1D(Math.ceil(total / WORKGROUP)),
      });
    });
  }
  const result = recordOp('embedding', [weight], out, [idsT], (g, [savedIds]) => [embeddingBackward(g, savedIds!, V)]);
  if (own) idsT.dispose();
  return result;
}

/** d weight [V, D] = Σ over positions p with ids[p] = v of dout[p, :], deterministic. */
export function embeddingBackward(dout: Tensor, ids: Tensor, V: number): Tensor {
  const N = ids.size;
  const D = N > 0 ? dout.size / N : dout.shape[dout.rank - 1] ?? 0;
  if (dout.size !== N * D || dout.shape[dout.rank - 1] !== D) {
    throw new RangeError(`embeddingBackward: gradient [${dout.shape.join(', ')}] does not match ids [${ids.shape.join(', ')}]`);
  }
  if (N === 0 || V === 0 || D === 0) return zeros([V, D]); // a sum over no positions
  const grad = empty([V, D]);
  const host = hostIds(ids);
  let rowStart: Tensor;
  let perm: Tensor;
  if (host) {
    const s = sortPositions(host, V);
    rowStart = tensor(s.rowStart, [V + 1], { dtype: 'i32' });
    perm = tensor(s.perm, [N], { dtype: 'i32' });
  } else {
    ({ rowStart, perm } = sortPositionsGpu(ids, V));
  }
  const w = vecWidth(D);
  const d = D / w;
  const blocks = Math.ceil(d / VECS_PER_THREAD);
  for (const [g0, gn] of rowChunks('embeddingBackward', V, D * 4)) {
    rt().dispatch({
      name: 'embedding_backward',
      code: accumulateCodeMemo(w),
      bindings: [
        dout.read('embedding dout'), rowStart.read('embedding row starts'), perm.read('embedding permutation'),
        rowRange(grad, g0, gn, D * 4, true, `embedding dweight rows ${g0}..${g0 + gn}`),
      ],
      params: [['u32', gn * blocks], ['u32', d], ['u32', blocks], ['u32', g0]],
      workgroups: grid1D(Math.ceil((gn * blocks) / WORKGROUP)),
    });
  }
  rowStart.dispose();
  perm.dispose();
  return grad;
}

/** Reference gather (ids assumed valid). */
export function embeddingReference(weight: ArrayLike<number>, D: number, ids: ArrayLike<number>): Float32Array {
  const out = new Float32Array(ids.length * D);
  for (let i = 0; i < ids.length; i++) for (let j = 0; j < D; j++) out[i * D + j] = weight[ids[i]! * D + j]!;
  return out;
}

/** Reference scatter-add in float64, positions in increasing order. */
export function embeddingBackwardReference(dout: ArrayLike<number>, D: number, ids: ArrayLike<number>, V: number): Float64Array {
  const g = new Float64Array(V * D);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= V) continue;
    for (let j = 0; j < D; j++) g[id * D + j] += dout[i * D + j]!;
  }
  return g;
}

// each source built once per argument set (wgsl-memo.ts)
const gatherCodeMemo = memoWgsl(gatherCode);
const accumulateCodeMemo = memoWgsl(accumulateCode);
