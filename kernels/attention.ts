// Fused attention for T5: out = softmax(scale·q·kᵀ + bias + mask) · v, forward and backward.
//
// T5 semantics (Hugging Face modeling_t5.py, T5Attention): no 1/sqrt(d) scaling (scale defaults to 1);
// the relative position bias [1, H, Lq, Lk] is broadcast over the batch and trained through this op
// (dBias = Σ_b dScores); the padding mask is additive ((1 - mask) · finfo(float32).min, broadcast from
// [B, 1, 1, Lk] or [B, 1, Lq, Lk]) and has no gradient; the softmax runs in f32.
// `causal` hides key j from query i when j > i + (Lk - Lq): plain decoder self-attention when Lq = Lk, or Lq
// new positions after Lk - Lq cached ones (generation's one-position steps use attention-decode.ts). Unlike HF's eager decoder, which folds the causal mask into
// the additive one as finfo.min, hidden keys are left out entirely: the two differ only in rows whose
// every visible key is also padding (HF then averages over all Lk keys, we over the visible ones).
//
// Training: `dropout` drops probabilities inside the kernels with the Philox stream of kernels/random.ts,
// numbered as dropout(softmax(scores)) numbers the [B, H, Lq, Lk] probabilities, so the fused op equals
// that unfused composition up to float rounding. `layout: 'BLHD'` reads q, k, v as [B, L, H, D] (a linear
// projection's output reshaped, no head permute) and writes out (and the gradients) the same way.
//
// Kernels (attention.wgsl.ts): a flash-style forward that writes only out and (max, log-sum) per row, and a
// backward in two kernels, row owner (dQ, ds) then key owner (dK, dV), plus a batch reduction of ds for the
// broadcast bias. Nothing of size Lq·Lk is kept between forward and backward. In the backward, the plain
// kernels both recompute the probabilities and materialise ds [B, H, Lq, Lk] only when the bias needs a
// gradient (dBias is that size anyway); the subgroup row owner also stores ds and the dropped probabilities
// for its key owner, which then does two products per (row, key) instead of four, with no exp or dropout draw
// (t5-small encoder layer, batch 8 x 256, dropout 0.1, lavapipe: 161-221 ms -> 134-144 ms for the backward;
// its cross-attention 34-44 -> 20-23 ms), for two transient [B, H, Lq, Lk] buffers. Which family runs where:
//   - software adapters with a fixed subgroup size dividing D, D <= 64 (lavapipe: 8 lanes): `subgroup`; a
//     forward of at most FEW_ROWS_MAX queries per head splits the head dim over the lanes instead.
//     64x256x64 on lavapipe, CPU-time-normalised to its 2 cores: forward 27 GFLOP/s without bias/mask,
//     18-19 with T5's bias and padding mask; forward+backward 15.5 (flops counted as 3.5x the forward);
//     64x512x64 the same. The plain kernels run at 2.3 GFLOP/s there (each lane gathers whole k/v rows;
//     0.55 wall-clock under load), and a materialising
//     path (q·kᵀ matmul, softmax, p·v matmul) cannot beat the fused one: LAVAPIPE.md's best batched matmul
//     for exactly these products runs at 17.7 GFLOP/s before the softmax's extra passes over 16 MB.
//   - everything else (real GPUs, D > 64): `plain`, one query (or key) row per invocation; a warp reading
//     the same k/v row is served by the cache's broadcast. Not yet measured on a real GPU.
import { recordOp } from './record-op.ts';
import { noGrad } from '../engine/autograd.ts';
import { gpu } from '../engine/gpu.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, tensor, type Tensor } from '../engine/tensor.ts';
import { checkRandomOptions, dropoutThreshold, philoxStreamParams, uniformRef } from './random.ts';
import {
  DQ_STORAGE_BUFFERS, SUBGROUP_DQ_STORAGE_BUFFERS,
  PLAIN_WORKGROUP,
  REDUCE_WORKGROUP,
  deltaKernel,
  plainBackwardDkv,
  plainBackwardDq,
  plainForward,
  reduceBatchKernel,
  type AttnVariant,
} from './attention.wgsl.ts';
import { subgroupBackwardDkvStored, subgroupBackwardDq, subgroupForward, subgroupForwardFewRows, type SubgroupShape } from './attention-subgroup.wgsl.ts';
import { memoWgsl } from './wgsl-memo.ts';
import { add } from './elementwise.ts';
import { concat, slice } from './layout.ts';

export interface AttentionOptions {
  /** additive bias [1 | B, H, Lq, Lk] (T5's relative position bias); differentiable */
  bias?: Tensor;
  /** additive mask [1 | B, 1 | H, 1 | Lq, Lk]; no gradient */
  mask?: Tensor;
  /** hide key j from query i when j > i + Lk - Lq */
  causal?: boolean;
  /** multiplies q·kᵀ; T5 uses 1 (its init folds 1/sqrt(d) into the weights) */
  scale?: number;
  /** dropout on the probabilities, drawn as kernels/random.ts's dropout(probs, rate, { seed, offset }) */
  dropout?: AttentionDropout;
  /** 'BHLD' (default): q [B, H, Lq, D], k and v [B, H, Lk, D], out [B, H, Lq, D]; 'BLHD': q [B, Lq, H, D],
   * k and v [B, Lk, H, D], out [B, Lq, H, D]. Gradients come in their input's layout. */
  layout?: AttentionLayout;
}

export type AttentionLayout = 'BHLD' | 'BLHD';

export interface AttentionDropout {
  /** probability of dropping, in [0, 1] */
  rate: number;
  seed: number;
  /** stream position of probability element 0; the op uses B·H·Lq·Lk positions from here */
  offset: number;
}

interface Dims {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
}

const MAX_HEAD_DIM = 256;

function shapeStr(t: Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

/** Dims of a q-like [B, H, L, D] or [B, L, H, D] tensor as (B, H, L, D). */
function bhld(t: Tensor, layout: AttentionLayout): [number, number, number, number] {
  const [b, x, y, d] = t.shape as [number, number, number, number];
  return layout === 'BLHD' ? [b, y, x, d] : [b, x, y, d];
}

function checkArgs(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Dims {
  const layout = o.layout ?? 'BHLD';
  if (layout !== 'BHLD' && layout !== 'BLHD') throw new RangeError(`attention: layout must be 'BHLD' or 'BLHD', got ${String(layout)}`);
  const all: Array<[string, Tensor | undefined]> = [['q', q], ['k', k], ['v', v], ['bias', o.bias], ['mask', o.mask]];
  for (const [name, t] of all) {
    if (!t) continue;
    if (t.disposed) throw new Error(`attention: ${name} is a disposed tensor`);
    if (t.dtype !== 'f32') throw new TypeError(`attention: ${name} must be f32, got ${t.dtype} ${shapeStr(t)}`);
    if (t.rank !== 4) throw new RangeError(`attention: ${name} must have rank 4, got ${shapeStr(t)}`);
  }
  const [B, H, Lq, D] = bhld(q, layout);
  const [kB, kH, Lk, kD] = bhld(k, layout);
  const shapes = `q ${shapeStr(q)}, k ${shapeStr(k)}, v ${shapeStr(v)}`;
  if (kB !== B || kH !== H || kD !== D || v.shape.join() !== k.shape.join()) {
    const want = layout === 'BLHD' ? 'q [B, Lq, H, D] and k, v [B, Lk, H, D]' : 'q [B, H, Lq, D] and k, v [B, H, Lk, D]';
    throw new RangeError(`attention: ${want} disagree: ${shapes}`);
  }
  if (D % 4 !== 0 || D > MAX_HEAD_DIM || D === 0) {
    throw new RangeError(`attention: head dim ${D} must be a positive multiple of 4 up to ${MAX_HEAD_DIM} (${shapes})`);
  }
  if (o.bias) {
    const [bb, bhh, bq, bk] = o.bias.shape;
    if (!(bb === 1 || bb === B) || bhh !== H || bq !== Lq || bk !== Lk) {
      throw new RangeError(`attention: bias must be [1 | ${B}, ${H}, ${Lq}, ${Lk}], got ${shapeStr(o.bias)} (${shapes})`);
    }
  }
  if (o.mask) {
    const [mb, mh, mq, mk] = o.mask.shape;
    if (!(mb === 1 || mb === B) || !(mh === 1 || mh === H) || !(mq === 1 || mq === Lq) || mk !== Lk) {
      throw new RangeError(
        `attention: mask must broadcast as [1 | ${B}, 1 | ${H}, 1 | ${Lq}, ${Lk}], got ${shapeStr(o.mask)} (${shapes})`,
      );
    }
  }
  if (o.causal && Lq > Lk) {
    throw new RangeError(`attention: causal needs Lq <= Lk (query i sees keys j <= i + Lk - Lq), got ${shapes}`);
  }
  const scale = o.scale ?? 1;
  if (!Number.isFinite(scale)) throw new RangeError(`attention: scale must be finite, got ${scale}`);
  if (o.dropout) {
    const { rate } = o.dropout;
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`attention: dropout rate must be in [0, 1], got ${rate}`);
    checkRandomOptions('attention: dropout', o.dropout);
    // stream indices are u32 in the kernels
    if (B * H * Lq * Lk >= 2 ** 32 - 4) throw new RangeError(`attention: dropout over ${B * H * Lq * Lk} probabilities is too many for one draw`);
  }
  return { B, H, Lq, Lk, D };
}

/** Dropout that changes anything (rate 0 runs the kernels without a mask). */
function activeDropout(o: AttentionOptions): AttentionDropout | null {
  return o.dropout && o.dropout.rate > 0 ? o.dropout : null;
}

/** Element strides (b, h, i, j) of a [B | 1, H | 1, Lq | 1, Lk] operand: 0 on broadcast dimensions, all 0
 * when absent (the kernels then read the single 0.0 of `zeroOperand`). */
function strides(shape: readonly number[] | undefined, d: Dims): number[] {
  if (!shape) return [0, 0, 0, 0];
  const [s0, s1, s2] = shape as [number, number, number, number];
  return [s0 === d.B && d.B > 1 ? s1 * s2 * d.Lk : 0, s1 === d.H && d.H > 1 ? s2 * d.Lk : 0, s2 === d.Lq && d.Lq > 1 ? d.Lk : 0, 1];
}

/** The kernels' uniforms (PARAM_FIELDS): everything that is not the head dim is data, so one pipeline
 * per head dim and kernel serves every combination of bias, mask, causal and dBias. */
function params(d: Dims, o: AttentionOptions, writeDs = false, writePz = false): Array<['u32' | 'f32', number]> {
  const u = (x: number): ['u32', number] => ['u32', x];
  // row strides of head and position: rows of D floats, see attention.wgsl.ts
  const blhd = o.layout === 'BLHD';
  const rowStrides = [blhd ? 1 : d.Lq, blhd ? d.H : 1, blhd ? 1 : d.Lk, blhd ? d.H : 1];
  const drop = activeDropout(o);
  const stream = drop ? philoxStreamParams(drop.seed, drop.offset) : null;
  const dropParams = stream
    ? [stream.first, stream.cLo, stream.cHi, stream.kLo, stream.kHi, dropoutThreshold(drop!.rate)].map(u)
    : [0, 0, 0, 0, 0, 0].map(u);
  // rate 1 keeps nothing: the scale is moot (random.ts's dropout uses 0 too)
  const dropScale: ['f32', number] = ['f32', drop ? (drop.rate >= 1 ? 0 : 1 / (1 - drop.rate)) : 1];
  return [
    u(d.Lq),
    u(d.Lk),
    u(d.H),
    ['f32', o.scale ?? 1],
    ...strides(o.bias?.shape, d).map(u),
    ...strides(o.mask?.shape, d).map(u),
    // not causal: an offset that lets every row see all Lk keys
    u(o.causal ? d.Lk - d.Lq : d.Lk),
    u(writeDs ? 1 : 0),
    u(writePz ? 1 : 0),
    ...rowStrides.map(u),
    ...dropParams,
    dropScale,
    u(d.B * d.H * d.Lq),
  ];
}

/** Stands in for an absent bias or mask (read at index 0 only). */
function zeroOperand(): Tensor {
  return tensor(new Float32Array(1), [1]);
}

function variantOf(d: Dims, o: AttentionOptions): AttnVariant {
  return { d: d.D, dropout: activeDropout(o) !== null };
}

function rowGrid(rows: number, bh: number): [number, number] {
  return [Math.ceil(rows / PLAIN_WORKGROUP), bh];
}

function checkGrid(name: string, bh: number): void {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (bh > max) throw new RangeError(`${name}: batch·heads ${bh} exceeds ${max} workgroups per dimension`);
}

export type AttentionPath = 'auto' | 'plain' | 'subgroup';
let forcedPath: AttentionPath = 'auto';
/** Tests and benchmarks pin a kernel family; 'auto' picks per adapter (see `subgroupShape`). */
export function setAttentionPath(path: AttentionPath): void {
  forcedPath = path;
}

// Rows (keys) each lane owns in the subgroup kernels. More rows amortise the gathered loads of the streamed
// rows over more arithmetic, but every owned row is D named registers (2D to 4D in the backward) and
// lavapipe's LLVM compile time grows steeply with them. Measured at 64x256x64 (CPU-time-normalised GFLOP/s,
// CPU seconds of one-off compile, cached by Mesa afterwards):
//   forward   R=1 13.7 (3 s), R=2 24-27 (7 s), R=4 28 (38 s)
//   backward  dq R=1 + dkv R=1: 13.3 (17 s);  dq R=2 + dkv R=1: 15.5-18.9 (33 s);
//             dq R=1 + dkv R=2: 16.4 (35 s);  dq R=2 + dkv R=2: 16.9-19.4, within the noise of the previous
//             (that dkv kernel recomputed the scores; the one that reads stored pz and ds holds only dK and dV
//             rows, 2D registers per key, and R = 1, 2 and 4 measured within the noise of each other).
const SUBGROUP_ROWS_FWD = 2;
const SUBGROUP_ROWS_DQ = 2;
const SUBGROUP_KEYS_DKV = 2;
const SUBGROUP_MAX_HEAD_DIM = 64;
// Query rows per head up to which the forward splits the head dim over the lanes (subgroupForwardFewRows)
// instead of giving each lane a row. t5-small cross-attention over 128 keys, lavapipe, ms, few rows / one row
// per lane (interleaved medians): 16 inputs x 1 query 1.73 / 2.45, x 2 1.55 / 2.01, x 4 1.63 / 1.71, x 8 2.67 /
// 1.76; 64 x 1 4.92 / 7.88; 1 x 1 0.26 / 0.30. Memory-bound from 16 inputs on (8 MB of keys and values a call).
const FEW_ROWS_MAX = 4;

/** The subgroup kernels need a known, fixed subgroup size dividing D. They are chosen on software
 * adapters (lavapipe), where they win by cutting gathered loads; on a real GPU the plain kernels (the
 * hardware broadcasts a row read by a whole warp) are the default until measured otherwise. */
function subgroupShape(D: number, rowsPerLane: number): SubgroupShape | null {
  if (forcedPath === 'plain') return null;
  const g = gpu();
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = g.limits;
  const usable = subgroupKernelsUsable(D);
  if (forcedPath === 'subgroup') {
    if (!usable) throw new Error(`attention: the subgroup kernels need a fixed subgroup size dividing D = ${D} (adapter: ${lo}..${hi})`);
    return { sg: lo!, r: rowsPerLane };
  }
  return usable && g.info.isSoftware ? { sg: lo!, r: rowsPerLane } : null;
}

/** Whether the subgroup kernels can run on this adapter for head dim D. */
export function subgroupKernelsUsable(D: number): boolean {
  const g = gpu();
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = g.limits;
  // D > 64 would unroll into more named registers than lavapipe's compiler handles in reasonable time
  return g.hasSubgroups && lo !== undefined && lo === hi && D % lo === 0 && D <= SUBGROUP_MAX_HEAD_DIM;
}

/** Forward kernels only: out (q's shape and layout) and the per-row (max, log-sum) statistics [B, H, Lq, 2]
 * of the undropped probabilities. */
export function attentionForward(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): { out: Tensor; stats: Tensor } {
  const d = checkArgs(q, k, v, opts);
  checkGrid('attention', d.B * d.H);
  const variant = variantOf(d, opts);
  const out = empty(q.shape);
  const stats = empty([d.B, d.H, d.Lq, 2]);
  const zero = opts.bias && opts.mask ? null : zeroOperand();
  const bindings = [q.read('q'), k.read('k'), v.read('v')];
  bindings.push((opts.bias ?? zero!).read('bias'), (opts.mask ?? zero!).read('mask'));
  bindings.push(out.write('out'), stats.write('stats'));
  const wide = subgroupShape(d.D, SUBGROUP_ROWS_FWD);
  // up to FEW_ROWS_MAX queries per head without dropout (decoding's cross-attention: one query per beam) the
  // lanes split the head dim; queries that one row per lane covers get one row per lane: two would compute
  // twice the rows kept (lavapipe, t5-small cross-attention over 128 keys, ms: 1 query 1.39 -> 0.58, 16
  // inputs x 4 beams 10.0 -> 7.7, 64 inputs x 1 query 34.6 -> 20.1)
  const few = wide && !variant.dropout && d.Lq <= FEW_ROWS_MAX ? { ...wide, r: d.Lq } : null;
  const sg = wide && d.Lq <= wide.sg ? { ...wide, r: 1 } : wide;
  rt().dispatch({
    name: 'attention',
    code: few ? subgroupForwardFewRowsMemo(d.D, few) : sg ? subgroupForwardMemo(variant, sg) : plainForwardMemo(variant),
    bindings,
    params: params(d, opts),
    workgroups: few ? [1, d.B * d.H] : sg ? [Math.ceil(d.Lq / (sg.sg * sg.r)), d.B * d.H] : grid1D(Math.ceil((d.B * d.H * d.Lq) / PLAIN_WORKGROUP)),
  });
  zero?.dispose();
  return { out, stats };
}

export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor | null;
  dv: Tensor | null;
  dbias: Tensor | null;
}

/** Backward kernels: gradients of q, k, v (dk/dv skipped when not wanted) and of the bias when asked. */
export function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  stats: Tensor,
  dout: Tensor,
  opts: AttentionOptions,
  want: { kv: boolean; bias: boolean },
): AttentionGrads {
  const d = checkArgs(q, k, v, opts);
  const bh = d.B * d.H;
  const variant = variantOf(d, opts);
  const wantDs = want.bias && !!opts.bias;
  const zero = opts.bias && opts.mask ? null : zeroOperand();
  const extra = [(opts.bias ?? zero!).read('bias'), (opts.mask ?? zero!).read('mask')];
  const limits = gpu().limits;

  // Chrome allows 10 storage buffers per stage: there Δ is computed first and the dq kernel does not bind O
  const deltaGiven = limits.maxStorageBuffersPerShaderStage < DQ_STORAGE_BUFFERS;
  const sgq = deltaGiven || limits.maxStorageBuffersPerShaderStage < SUBGROUP_DQ_STORAGE_BUFFERS
    ? null : subgroupShape(d.D, SUBGROUP_ROWS_DQ);
  // With the subgroup kernels the dq kernel stores ds and the dropped probabilities pz of every (row, key), and
  // the dkv kernel reads them instead of recomputing scores, dO·vᵀ, exp and dropout: [B, H, Lq, Lk] twice, freed
  // after the dkv kernel (t5-small encoder, batch 8 x 256: 16 MiB each).
  const scoreBytes = bh * d.Lq * d.Lk * 4;
  const fits = scoreBytes <= limits.maxStorageBufferBindingSize;
  // over the limit, batch slices whose scores fit each run this backward on their own (a bias with a batch axis
  // is as large as the scores, so it is shared here if bound at all)
  const perSlice = Math.floor(limits.maxStorageBufferBindingSize / (d.H * d.Lq * d.Lk * 4));
  const sharedBias = !opts.bias || opts.bias.shape[0] === 1;
  if (!fits && perSlice >= 1 && sharedBias && (wantDs || (want.kv && sgq !== null))) {
    zero?.dispose();
    return noGrad(() => backwardInBatchSlices(q, k, v, out, stats, dout, opts, want, d, perSlice));
  }
  if (wantDs && !fits) {
    const mib = (b: number) => (b / 2 ** 20).toFixed(1);
    throw new RangeError(
      `attention: the bias gradient needs the score gradients of each batch element [${d.H}, ${d.Lq}, ${d.Lk}] ` +
      `(${mib(d.H * d.Lq * d.Lk * 4)} MiB) in one binding, over this adapter's maxStorageBufferBindingSize ` +
      `(${mib(limits.maxStorageBufferBindingSize)} MiB): use shorter sequences`,
    );
  }
  const stored = want.kv && sgq !== null && fits;

  const dq = empty(q.shape);
  const delta = empty([d.B, d.H, d.Lq]);
  const ds = wantDs || stored ? empty([d.B, d.H, d.Lq, d.Lk]) : null;
  const pz = stored ? empty([d.B, d.H, d.Lq, d.Lk]) : null;
  // a separate dummy: one buffer may not be bound both read-only and writable in a dispatch
  const noDs = ds ? null : empty([1]);
  const noPz = sgq && !pz ? empty([1]) : null;
  if (deltaGiven) {
    rt().dispatch({
      name: 'attention-backward-delta',
      code: deltaKernelMemo(variant),
      bindings: [out.read('out'), dout.read('dout'), delta.write('delta')],
      params: params(d, opts, wantDs),
      workgroups: rowGrid(d.Lq, bh),
    });
  }
  const dqBindings = deltaGiven
    ? [q.read('q'), k.read('k'), v.read('v'), dout.read('dout'), stats.read('stats'), ...extra, dq.write('dq'), delta.read('delta')]
    : [q.read('q'), k.read('k'), v.read('v'), out.read('out'), dout.read('dout'), stats.read('stats'), ...extra, dq.write('dq'), delta.write('delta')];
  dqBindings.push((ds ?? noDs!).write('dscores'));
  if (sgq) dqBindings.push((pz ?? noPz!).write('pz'));
  rt().dispatch({
    name: 'attention-backward-dq',
    code: sgq ? subgroupBackwardDqMemo(variant, sgq) : plainBackwardDqMemo(variant, deltaGiven),
    bindings: dqBindings,
    params: params(d, opts, ds !== null, stored),
    workgroups: sgq ? [Math.ceil(d.Lq / (sgq.sg * sgq.r)), bh] : rowGrid(d.Lq, bh),
  });

  let dk: Tensor | null = null;
  let dv: Tensor | null = null;
  if (want.kv && stored) {
    dk = empty(k.shape);
    dv = empty(v.shape);
    const sgk = { ...sgq!, r: SUBGROUP_KEYS_DKV };
    rt().dispatch({
      name: 'attention-backward-dkv-stored',
      code: subgroupBackwardDkvStoredMemo(d.D, sgk),
      bindings: [q.read('q'), dout.read('dout'), pz!.read('pz'), ds!.read('ds'), dk.write('dk'), dv.write('dv')],
      params: params(d, opts),
      workgroups: [Math.ceil(d.Lk / (sgk.sg * sgk.r)), bh],
    });
  } else if (want.kv) {
    // the plain kernel recomputes scores and probabilities: used where pz and ds are not stored
    dk = empty(k.shape);
    dv = empty(v.shape);
    rt().dispatch({
      name: 'attention-backward-dkv',
      code: plainBackwardDkvMemo(variant),
      bindings: [q.read('q'), k.read('k'), v.read('v'), dout.read('dout'), stats.read('stats'), delta.read('delta'), ...extra, dk.write('dk'), dv.write('dv')],
      params: params(d, opts),
      workgroups: rowGrid(d.Lk, bh),
    });
  }
  delta.dispose();
  zero?.dispose();
  noDs?.dispose();
  noPz?.dispose();
  pz?.dispose();

  let dbias: Tensor | null = null;
  if (ds && !wantDs) ds.dispose();
  else if (ds && opts.bias) {
    if (opts.bias.shape[0] === d.B) dbias = ds;
    else {
      const n = d.H * d.Lq * d.Lk;
      dbias = empty(opts.bias.shape);
      rt().dispatch({
        name: 'attention-backward-dbias',
        code: reduceBatchKernelMemo(),
        bindings: [ds.read('dscores'), dbias.write('dbias')],
        params: [['u32', n], ['u32', d.B]],
        workgroups: grid1D(Math.ceil(n / REDUCE_WORKGROUP)),
      });
      ds.dispose();
    }
  }
  return { dq, dk, dv, dbias };
}

/**
 * attentionBackward over batch slices of `per` inputs: ds and pz are [B, H, Lq, Lk] in one binding each, and
 * t5-base at batch 16 x 512 needs 192 MiB of each where lavapipe binds 128. The slices are copies (freed after
 * each); dq, dk and dv are joined again, and the (shared) bias's gradient is summed over the slices.
 */
function backwardInBatchSlices(
  q: Tensor, k: Tensor, v: Tensor, out: Tensor, stats: Tensor, dout: Tensor, opts: AttentionOptions,
  want: { kv: boolean; bias: boolean }, d: Dims, per: number,
): AttentionGrads {
  const parts: AttentionGrads[] = [];
  for (let b0 = 0; b0 < d.B; b0 += per) {
    const b1 = Math.min(d.B, b0 + per);
    const cuts: Tensor[] = [];
    const cut = <T extends Tensor | undefined>(t: T): T => {
      if (!t || t.shape[0] !== d.B) return t;
      const c = slice(t, 0, b0, b1);
      cuts.push(c);
      return c as T;
    };
    // the dropout stream numbers the probabilities (b, h, i, j) row-major: a slice's starts b0·H·Lq·Lk in
    const drop = opts.dropout && { ...opts.dropout, offset: opts.dropout.offset + b0 * d.H * d.Lq * d.Lk };
    const sliceOpts: AttentionOptions = { ...opts, mask: cut(opts.mask), dropout: drop };
    parts.push(attentionBackward(cut(q), cut(k), cut(v), cut(out), cut(stats), cut(dout), sliceOpts, want));
    for (const c of cuts) c.dispose();
  }
  const join = (ts: Array<Tensor | null>): Tensor | null => {
    if (ts[0] === null) return null;
    const all = ts as Tensor[];
    const joined = concat(all, 0);
    for (const t of all) t.dispose();
    return joined;
  };
  let dbias = parts[0]!.dbias;
  if (dbias) {
    for (const p of parts.slice(1)) {
      const sum = add(dbias, p.dbias!);
      dbias.dispose();
      p.dbias!.dispose();
      dbias = sum;
    }
  }
  return { dq: join(parts.map((p) => p.dq))!, dk: join(parts.map((p) => p.dk)), dv: join(parts.map((p) => p.dv)), dbias };
}

/**
 * dropout(softmax(scale·q·kᵀ + bias + mask)) · v with q [B, H, Lq, D], k and v [B, H, Lk, D]; out
 * [B, H, Lq, D] (or all [B, L, H, D] with layout 'BLHD').
 * Gradients flow to q, k, v and bias (summed over its broadcast batch); the mask gets none.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { out, stats } = attentionForward(q, k, v, opts);
  const inputs = opts.bias ? [q, k, v, opts.bias] : [q, k, v];
  const saved = [q, k, v, out, stats];
  if (opts.bias) saved.push(opts.bias);
  if (opts.mask) saved.push(opts.mask);
  const biasGrad = !!opts.bias?.requiresGrad;
  const kvGrad = k.requiresGrad || v.requiresGrad;
  const { causal, scale, layout } = opts;
  // a copy: the backward must draw the forward's mask even if the caller reuses its options object
  const dropout = opts.dropout && { ...opts.dropout };
  const result = recordOp('attention', inputs, out, saved, (g, s) => {
    const [sq, sk, sv, so, sst] = s as [Tensor, Tensor, Tensor, Tensor, Tensor];
    let at = 5;
    const bias = opts.bias ? s[at++] : undefined;
    const mask = opts.mask ? s[at++] : undefined;
    const grads = attentionBackward(sq, sk, sv, so, sst, g, { bias, mask, causal, scale, dropout, layout }, { kv: kvGrad, bias: biasGrad });
    return bias ? [grads.dq, grads.dk, grads.dv, grads.dbias] : [grads.dq, grads.dk, grads.dv];
  });
  stats.dispose(); // the graph node, if any, holds its own handle on the statistics
  return result;
}

// ---------------------------------------------------------------------------------------------------
// CPU reference (float64), for tests and benchmarks.

export interface AttentionRefInput {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  /** shapes as for the op; bias/mask data with their own shapes */
  dims: Dims;
  bias?: { data: ArrayLike<number>; shape: readonly number[] };
  mask?: { data: ArrayLike<number>; shape: readonly number[] };
  causal?: boolean;
  scale?: number;
  dropout?: AttentionDropout;
}

function broadcastIndex(shape: readonly number[], b: number, h: number, i: number, j: number): number {
  const [s0, s1, s2, s3] = shape as [number, number, number, number];
  return (((s0 === 1 ? 0 : b) * s1 + (s1 === 1 ? 0 : h)) * s2 + (s2 === 1 ? 0 : i)) * s3 + j;
}

/** Probabilities [B, H, Lq, Lk] in float64 (hidden causal keys get 0; a row hidden entirely is 0). */
export function attentionProbsRef(x: AttentionRefInput): Float64Array {
  const { B, H, Lq, Lk, D } = x.dims;
  const scale = x.scale ?? 1;
  const P = new Float64Array(B * H * Lq * Lk);
  const s = new Float64Array(Lk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) {
        const end = x.causal ? Math.min(Lk, i + Lk - Lq + 1) : Lk;
        let m = -Infinity;
        for (let j = 0; j < end; j++) {
          let acc = 0;
          const qo = ((b * H + h) * Lq + i) * D;
          const ko = ((b * H + h) * Lk + j) * D;
          for (let d = 0; d < D; d++) acc += x.q[qo + d]! * x.k[ko + d]!;
          acc *= scale;
          if (x.bias) acc += x.bias.data[broadcastIndex(x.bias.shape, b, h, i, j)]!;
          if (x.mask) acc += x.mask.data[broadcastIndex(x.mask.shape, b, h, i, j)]!;
          s[j] = acc;
          if (acc > m) m = acc;
        }
        let l = 0;
        for (let j = 0; j < end; j++) l += Math.exp(s[j]! - m);
        const po = ((b * H + h) * Lq + i) * Lk;
        for (let j = 0; j < end; j++) P[po + j] = Math.exp(s[j]! - m) / l;
      }
  return P;
}

/** Dropout factors [B, H, Lq, Lk]: 1/(1 - rate) where kept, 0 where dropped (all 1 without dropout);
 * the mask of kernels/random.ts's dropoutRef over the probabilities. */
export function attentionDropoutRef(x: AttentionRefInput): Float64Array {
  const { B, H, Lq, Lk } = x.dims;
  const n = B * H * Lq * Lk;
  const z = new Float64Array(n).fill(1);
  const drop = x.dropout;
  if (!drop || drop.rate === 0) return z;
  const u = uniformRef(drop.seed, drop.offset, n);
  const keep = drop.rate >= 1 ? 0 : 1 / (1 - drop.rate);
  const rate = Math.fround(drop.rate); // compared as an f32, as the kernels do
  for (let e = 0; e < n; e++) z[e] = u[e]! >= rate ? keep : 0;
  return z;
}

export function attentionRef(x: AttentionRefInput): Float64Array {
  const { B, H, Lq, Lk, D } = x.dims;
  const P = attentionProbsRef(x);
  const Z = attentionDropoutRef(x);
  for (let e = 0; e < P.length; e++) P[e] = P[e]! * Z[e]!;
  const out = new Float64Array(B * H * Lq * D);
  for (let bh = 0; bh < B * H; bh++)
    for (let i = 0; i < Lq; i++)
      for (let j = 0; j < Lk; j++) {
        const p = P[(bh * Lq + i) * Lk + j]!;
        if (p === 0) continue;
        const vo = (bh * Lk + j) * D;
        const oo = (bh * Lq + i) * D;
        for (let d = 0; d < D; d++) out[oo + d] += p * x.v[vo + d]!;
      }
  return out;
}

/** Reference gradients of sum(out · dout): dq, dk, dv [as q, k, v] and dbias [as the bias shape]. With
 * dropout factors z: dV = Σ p z dO, dp = z (dO·v), ds = p (dp - Σ_j p dp). */
export function attentionBackwardRef(x: AttentionRefInput, dout: ArrayLike<number>) {
  const { B, H, Lq, Lk, D } = x.dims;
  const scale = x.scale ?? 1;
  const P = attentionProbsRef(x);
  const Z = attentionDropoutRef(x);
  const dq = new Float64Array(B * H * Lq * D);
  const dk = new Float64Array(B * H * Lk * D);
  const dv = new Float64Array(B * H * Lk * D);
  const dbias = x.bias ? new Float64Array(x.bias.data.length) : null;
  const dp = new Float64Array(Lk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      for (let i = 0; i < Lq; i++) {
        const go = (bh * Lq + i) * D;
        let dot = 0;
        for (let j = 0; j < Lk; j++) {
          let acc = 0;
          const vo = (bh * Lk + j) * D;
          for (let d = 0; d < D; d++) acc += dout[go + d]! * x.v[vo + d]!;
          acc *= Z[(bh * Lq + i) * Lk + j]!;
          dp[j] = acc;
          dot += P[(bh * Lq + i) * Lk + j]! * acc;
        }
        for (let j = 0; j < Lk; j++) {
          const p = P[(bh * Lq + i) * Lk + j]!;
          const ds = p * (dp[j]! - dot);
          const ko = (bh * Lk + j) * D;
          const pz = p * Z[(bh * Lq + i) * Lk + j]!;
          for (let d = 0; d < D; d++) {
            dv[ko + d] += pz * dout[go + d]!;
            dq[go + d] += scale * ds * x.k[ko + d]!;
            dk[ko + d] += scale * ds * x.q[go + d]!;
          }
          if (dbias && x.bias) dbias[broadcastIndex(x.bias.shape, b, h, i, j)] += ds;
        }
      }
    }
  return { dq, dk, dv, dbias };
}

// each source built once per argument set (wgsl-memo.ts)
const subgroupForwardMemo = memoWgsl(subgroupForward);
const subgroupForwardFewRowsMemo = memoWgsl(subgroupForwardFewRows);
const plainForwardMemo = memoWgsl(plainForward);
const deltaKernelMemo = memoWgsl(deltaKernel);
const subgroupBackwardDqMemo = memoWgsl(subgroupBackwardDq);
const plainBackwardDqMemo = memoWgsl(plainBackwardDq);
const subgroupBackwardDkvStoredMemo = memoWgsl(subgroupBackwardDkvStored);
const plainBackwardDkvMemo = memoWgsl(plainBackwardDkv);
const reduceBatchKernelMemo = memoWgsl(reduceBatchKernel);
