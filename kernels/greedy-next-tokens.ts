// Greedy decoding's choice of the next tokens, on the GPU: Hugging Face's greedy search (4.36 `greedy_search`)
// without logits processors. next = argmax(logits) (the lowest index among exact ties; a NaN counts as larger
// than everything, so the row's first NaN wins, as torch.argmax); a finished row gets the pad token instead
// (`next * unfinished + pad * (1 - unfinished)`), and a row finishes once its token is an eos id.
//
// The tokens stay on the GPU as the next step's input ids, so generation can record step t+1 before step t's
// tokens are read back (generate/greedy-on-device.ts). What the host reads, one i32 [rows, 3]: the token, the
// logit it was chosen at (HF's transition score, f32 bits; the pad's logit for a finished row) and the first NaN
// in the row's logits, -1 for none (the search throws on any NaN, as on its host path).
import { rt } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';
import {
  defaultRowImpl, rowChunks, rowKernelCode, rowLeader, rowRange, rowWorkgroups, vecType, vecWidth, type RowImpl, type StorageDecl,
} from './row-kernel.ts';
import { memoWgsl } from './wgsl-memo.ts';

/** Values per row of the readback: token, its logit's bits, first NaN (-1: none). */
export const GREEDY_OUT_FIELDS = 3;

/** lanes per row of the workgroup layout's tree merge (row-kernel.ts's workgroup layout) */
const MERGE_LANES = 128;

/** WGSL: fold a (value, index) candidate into a lane's running best; NONE marks an empty lane. Exact ties keep
 * the lower index; -inf is a value like any other (a row of -inf gives index 0, as torch.argmax). */
const MERGE_FNS = /* wgsl */ `
const NONE = 0xffffffffu;
fn isNan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn better(x: f32, i: u32, best: f32, bestIdx: u32) -> bool {
  return bestIdx == NONE || (i != NONE && (x > best || (x == best && i < bestIdx)));
}`;

/** WGSL replacing each lane's (best, bestIdx, nanIdx) by the row's, in the lanes that write. */
function mergeLanes(impl: RowImpl): string {
  if (impl === 'invocation') return '';
  if (impl === 'subgroup') {
    return /* wgsl */ `
  nanIdx = subgroupMin(nanIdx);
  let top = subgroupMax(select(best, p.ninf, bestIdx == NONE));
  // a lane holding only -inf (or nothing) still competes through its index: min over lanes at the top value
  bestIdx = subgroupMin(select(NONE, bestIdx, bestIdx != NONE && best >= top));
  best = top;`;
  }
  return /* wgsl */ `
  mv[lid] = best;
  mi[lid] = bestIdx;
  mn[lid] = nanIdx;
  workgroupBarrier();
  for (var k = ${MERGE_LANES / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) {
      if (better(mv[lid + k], mi[lid + k], mv[lid], mi[lid])) {
        mv[lid] = mv[lid + k];
        mi[lid] = mi[lid + k];
      }
      mn[lid] = min(mn[lid], mn[lid + k]);
    }
    workgroupBarrier();
  }
  best = mv[0];
  bestIdx = mi[0];
  nanIdx = mn[0];`;
}

function greedyCode(impl: RowImpl, w: number): string {
  const comps = w === 4 ? ['x', 'y', 'z', 'w'] : [''];
  const scan = comps
    .map((c, k) => {
      const x = w === 4 ? `v.${c}` : 'v';
      return `{ let x = ${x}; let i = j * ${w}u + ${k}u;
      if (isNan(x)) { nanIdx = min(nanIdx, i); } else if (better(x, i, best, bestIdx)) { best = x; bestIdx = i; } }`;
    })
    .join('\n    ');
  const scratch = impl === 'workgroup'
    ? `var<workgroup> mv: array<f32, ${MERGE_LANES}>;\nvar<workgroup> mi: array<u32, ${MERGE_LANES}>;\nvar<workgroup> mn: array<u32, ${MERGE_LANES}>;`
    : '';
  const storage: StorageDecl[] = [
    ['read', 'logits', `array<${vecType(w)}>`], ['read', 'flat', 'array<f32>'], ['read_write', 'unfinished', 'array<i32>'],
    ['read', 'eos', 'array<i32>'], ['read_write', 'next', 'array<i32>'], ['read_write', 'out', 'array<i32>'],
  ];
  const params = 'rows: u32, n: u32, v: u32, pad: i32, eosCount: u32, row0: u32, ninf: f32';
  return rowKernelCode(impl, storage, params, (h) => /* wgsl */ `var best = 0.0;
  var bestIdx = NONE;
  var nanIdx = NONE;
  for (var j = ${h.first}; j < p.n; j += ${h.step}) {
    let v = logits[base + j];
    ${scan}
  }
  ${mergeLanes(impl)}
  if (${rowLeader(impl)}) {
    let g = p.row0 + r;
    let live = unfinished[g] != 0;
    // torch.argmax: the first NaN, if any, is the maximum
    let arg = select(bestIdx, nanIdx, nanIdx != NONE);
    let token = select(p.pad, i32(arg), live);
    var done = false;
    for (var e = 0u; e < p.eosCount; e++) { done = done || token == eos[e]; }
    unfinished[g] = select(0, 1, live && !done);
    next[g] = token;
    out[g * ${GREEDY_OUT_FIELDS}u] = token;
    out[g * ${GREEDY_OUT_FIELDS}u + 1u] = bitcast<i32>(flat[r * p.v + u32(token)]);
    out[g * ${GREEDY_OUT_FIELDS}u + 2u] = select(-1, i32(nanIdx), nanIdx != NONE);
  }`, `${scratch}\n${MERGE_FNS}`);
}

export interface GreedyNextTokens {
  /** i32 [rows]: the chosen tokens, the next step's input ids */
  next: Tensor;
  /** i32 [rows, 3]: token, bits of its logit, first NaN index or -1 (GREEDY_OUT_FIELDS) */
  out: Tensor;
}

/**
 * The next tokens of a greedy step from its logits [rows, vocab]. `unfinished` (i32 [rows], 1 or 0) is updated in
 * place; `eos` holds the eos ids (i32, at least one element; `eosCount` of them are used); `pad` must be a valid
 * token when rows can finish (any value when eosCount is 0).
 */
export function greedyNextTokens(
  logits: Tensor, unfinished: Tensor, eos: Tensor, eosCount: number, pad: number, opts: { impl?: RowImpl } = {},
): GreedyNextTokens {
  const [rows, vocab] = logits.shape as [number, number];
  const shapes = `logits [${logits.shape.join(', ')}], unfinished [${unfinished.shape.join(', ')}], eos [${eos.shape.join(', ')}]`;
  if (logits.rank !== 2 || logits.dtype !== 'f32' || vocab < 1) throw new RangeError(`greedyNextTokens: logits must be f32 [rows, vocab >= 1] (${shapes})`);
  if (unfinished.dtype !== 'i32' || unfinished.size !== rows) throw new RangeError(`greedyNextTokens: unfinished must be i32 [${rows}] (${shapes})`);
  if (eos.dtype !== 'i32' || eos.size < Math.max(1, eosCount)) throw new RangeError(`greedyNextTokens: eos must be i32 with at least ${Math.max(1, eosCount)} ids (${shapes})`);
  if (eosCount > 0 && !(Number.isInteger(pad) && pad >= 0 && pad < vocab)) throw new RangeError(`greedyNextTokens: pad ${pad} is outside the vocabulary (size ${vocab})`);
  const impl = opts.impl ?? defaultRowImpl(vocab);
  const w = vecWidth(vocab);
  const rowBytes = vocab * 4;
  const next = empty([rows], 'i32');
  const out = empty([rows, GREEDY_OUT_FIELDS], 'i32');
  for (const [r0, n] of rowChunks('greedyNextTokens', rows, rowBytes)) {
    rt().dispatch({
      name: 'greedy_next_tokens',
      code: greedyCodeMemo(impl, w),
      bindings: [
        rowRange(logits, r0, n, rowBytes, false, 'greedyNextTokens logits'),
        rowRange(logits, r0, n, rowBytes, false, 'greedyNextTokens logits (token gather)'),
        unfinished.write('greedyNextTokens unfinished'), eos.read('greedyNextTokens eos ids'),
        next.write('greedyNextTokens next'), out.write('greedyNextTokens out'),
      ],
      params: [['u32', n], ['u32', vocab / w], ['u32', vocab], ['i32', pad], ['u32', eosCount], ['u32', r0], ['f32', -Infinity]],
      workgroups: rowWorkgroups(impl, n),
    });
  }
  return { next, out };
}

/** Plain reference of greedyNextTokens (updates `unfinished`): rows x [token, logit, first NaN or -1]. */
export function greedyNextTokensRef(
  logits: Float32Array, rows: number, vocab: number, unfinished: Int32Array, eos: readonly number[], pad: number,
): Array<[number, number, number]> {
  const res: Array<[number, number, number]> = [];
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    const nan = row.findIndex((x) => Number.isNaN(x));
    let arg = 0;
    for (let i = 1; i < vocab; i++) if (row[i]! > row[arg]!) arg = i;
    if (nan >= 0) arg = nan;
    const token = unfinished[r] ? arg : pad;
    if (eos.includes(token)) unfinished[r] = 0;
    res.push([token, row[token]!, nan]);
  }
  return res;
}

// each source built once per argument set (wgsl-memo.ts)
const greedyCodeMemo = memoWgsl(greedyCode);
