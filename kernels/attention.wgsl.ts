// WGSL for fused attention (kernels/attention.ts holds the op). Self-contained but for the Philox generator
// of kernels/random.ts, which dropout on the probabilities must share to draw the same mask.
//
// Forward (flash-attention style): one query row per owner, keys streamed once with an online softmax;
// only `out` and two floats per row (running max m and log of the exp-sum) are written. We keep m and
// log(l) apart instead of their sum (the logsumexp) because Hugging Face masks with finfo(float32).min:
// in a fully masked row every score is -3.4e38, m + log(l) rounds back to m, and p = exp(s - lse) would
// come out as 1 instead of 1/Lk in the backward pass.
//
// Backward recomputes the probabilities from q, k and (m, log l):
//   p = exp((s - m) - log l)  (in that order: s - m is exactly 0 for a row masked with finfo.min),  dp = dO·v,  Δ = dO·O,  ds = p (dp - Δ)
//   dQ = scale · Σ_j ds k_j  (row-owner kernel, which also writes ds when the bias needs a gradient)
//   dK = scale · Σ_i ds q_i,  dV = Σ_i p dO_i  (key-owner kernel)
//   dBias = Σ over the broadcast batch of ds.
//
// Dropout on the probabilities (the `dropout` variant): element (b, h, i, j) is kept with the mask that
// kernels/random.ts's dropout draws for element ((b·H + h)·Lq + i)·Lk + j of softmax's [B, H, Lq, Lk]
// output, and scaled by z = 1/(1 - rate), else z = 0. With p̃ = p·z the output is O = Σ_j p̃_j v_j; the
// row statistics (m, log l) stay those of the undropped p. Backward (FlashAttention's, with dropout): the
// mask is drawn again, dV = Σ_i p̃ dO_i, dp = z·(dO·v), ds = p (dp - Δ) with Δ = dO·O as before
// (Σ_j p_j dp_j = dO·Σ_j p̃_j v_j = dO·O).
//
// Layouts: q, out, dout and dq are rows of D floats at row b·H·Lq + h·qH + i·qL ([B, H, Lq, D]: qH = Lq,
// qL = 1; [B, Lq, H, D]: qH = 1, qL = H, the linear projection's output as it is); k, v, dk, dv likewise
// with kH, kL. The statistics, Δ and ds are always [B, H, Lq(, Lk)].
//
// Two families: `plain` here (one row per invocation, any adapter; on a real GPU the lanes of a warp read the
// same k/v row, which the cache broadcasts) and `subgroup` in attention-subgroup.wgsl.ts (lavapipe: lane l
// loads slice l of each streamed row once and subgroupBroadcast hands it to the others, cutting the
// lane-by-lane gathered loads that dominate there (shared/LAVAPIPE.md), and each lane owns several query rows).

import { PHILOX_WGSL } from './random.ts';
import { flatGridEntry } from './grid-entry.wgsl.ts';

/** Rows (or keys) per workgroup in the plain kernels. */
export const PLAIN_WORKGROUP = 64;
/** Elements of the dBias batch reduction per invocation group. */
export const REDUCE_WORKGROUP = 256;
/** The most negative f32, written so WGSL reads it exactly (Hugging Face's mask value). */
export const NEG_MAX = '-0x1.fffffep+127f';

// One pipeline per head dim and kernel: bias, mask, causal and the ds output are uniform data, not
// compile-time variants. Lavapipe compiles each of these unrolled kernels in seconds to tens of seconds
// of CPU (LLVM), and T5 alone would otherwise need five forward and backward variants per head dim.
//   - bias and mask are always bound and read through strides: an absent one is a single 0.0 with every
//     stride 0 (one extra load and add per score, a few percent at most);
//   - causal is the key limit j <= i + causalOff, with causalOff >= Lk when not causal (every key visible);
//   - ds is written under a uniform branch (writeDs), into a 1-float dummy when dBias is not wanted; so are the
//     subgroup dq kernel's dropped probabilities (writePz), which its dkv kernel then reads instead of recomputing.
// Dropout is a compile-time variant instead: the Philox code would lengthen every kernel's compile, and
// only training uses it.
export interface AttnVariant {
  /** head dim, a multiple of 4 */
  d: number;
  /** draw a dropout mask on the probabilities */
  dropout: boolean;
}

/** Uniform layout shared by every attention kernel (all 4-byte fields); index of bias or mask element
 * (b, h, i, j) = b·xB + h·xH + i·xQ + j·xJ. */
export const PARAM_FIELDS = `struct Params {
  lq: u32, lk: u32, heads: u32, scale: f32,
  biasB: u32, biasH: u32, biasQ: u32, biasJ: u32,
  maskB: u32, maskH: u32, maskQ: u32, maskJ: u32,
  causalOff: u32, writeDs: u32, writePz: u32,
  qH: u32, qL: u32, kH: u32, kL: u32,
  dropFirst: u32, dropCLo: u32, dropCHi: u32, dropKLo: u32, dropKHi: u32, dropThr: u32, dropScale: f32,
  rows: u32,
}`;

export interface Binding {
  name: string;
  type: string;
  write: boolean;
}

export function bindingDecls(bs: Binding[]): string {
  const lines = bs.map(
    (b, i) => `@group(0) @binding(${i}) var<storage, ${b.write ? 'read_write' : 'read'}> ${b.name}: ${b.type};`,
  );
  lines.push(PARAM_FIELDS);
  lines.push(`@group(0) @binding(${bs.length}) var<uniform> p: Params;`);
  return lines.join('\n');
}

export const v4 = 'array<vec4<f32>>';

/** Row (in units of D floats) of q, out, dout, dq at (b, h, i); of k, v, dk, dv at (b, h, j). */
export const qRow = (i: string): string => `(b * p.heads * p.lq + h * p.qH + ${i} * p.qL)`;
export const kRow = (j: string): string => `(b * p.heads * p.lk + h * p.kH + ${j} * p.kL)`;

/** Dropout helpers: element t of the op's stream counts from the offset's counter (t = first + index). */
export function dropFns(v: AttnVariant): string {
  if (!v.dropout) return '';
  return `${PHILOX_WGSL}
fn dropWords(t: u32) -> vec4<u32> {
  let c = t >> 2u;
  let lo = p.dropCLo + c;
  return philox(vec4<u32>(lo, p.dropCHi + select(0u, 1u, lo < c), 0u, 0u), vec2<u32>(p.dropKLo, p.dropKHi));
}
fn dropKeep(w: vec4<u32>, t: u32) -> f32 { return select(0.0, p.dropScale, (w[t & 3u] >> 8u) >= p.dropThr); }`;
}

/** Stream index of element (row, 0) of the probabilities, row = bh·Lq + i. */
export const dropBase = (row: string): string => `p.dropFirst + ${row} * p.lk`;

/** In a row owner's key loop: z{sfx} for key j, the words of a counter drawn once per 4 keys (dw{sfx}
 * holds those of the previous key; every 4th stream position starts a counter). */
export function dropStep(sfx: string): string {
  return `let t${sfx} = dt${sfx} + j;
    if (j != 0u && (t${sfx} & 3u) == 0u) { dw${sfx} = dropWords(t${sfx}); }
    let z${sfx} = dropKeep(dw${sfx}, t${sfx});`;
}

/** Storage order of the forward kernels' bindings (attention.ts binds tensors in this order). */
export function forwardBindings(): Binding[] {
  const bs: Binding[] = [
    { name: 'q', type: v4, write: false },
    { name: 'k', type: v4, write: false },
    { name: 'v', type: v4, write: false },
  ];
  bs.push({ name: 'bias', type: 'array<f32>', write: false }, { name: 'mask', type: 'array<f32>', write: false });
  bs.push({ name: 'out', type: v4, write: true }, { name: 'stats', type: 'array<vec2<f32>>', write: true });
  return bs;
}

/** Bias and mask added to a scaled score of row i (offsets bo, mo precomputed per row) at key j. */
function extraTerms(j: string, sfx = ''): string {
  return ` + bias[bo${sfx} + ${j} * p.biasJ] + mask[mo${sfx} + ${j} * p.maskJ]`;
}

/** The plain kernels' owner of one row (`i` < lq) or key (`j` < lk) of head (b, h): one invocation each. */
function plainOwner(idx: 'i' | 'j'): string {
  return `let bh = wid.y;
  let ${idx} = wid.x * ${PLAIN_WORKGROUP}u + lid;
  if (${idx} >= p.${idx === 'i' ? 'lq' : 'lk'}) { return; }
  let b = bh / p.heads;
  let h = bh % p.heads;`;
}

/** One key's score `s` into a running softmax (max m, sum l) over the accumulator `o` of dv vectors: the
 * online-softmax step of the flash forward and of the decode kernel (attention-decode.ts). */
export function onlineSoftmaxStep(dv: number): string {
  return `if (s > m) {
      // a new running max: rescale what was summed so far (exp(-huge) = 0 on the first real key)
      let c = exp(m - s);
      l *= c;
      for (var d = 0u; d < ${dv}u; d++) { o[d] *= c; }
      m = s;
    }
    let e = exp(s - m);
    l += e;`;
}

/** Per-row offsets into bias and mask (stride 0 on broadcast or absent dimensions). */
export function rowOffsets(i: string, sfx = ''): string {
  return `let bo${sfx} = b * p.biasB + h * p.biasH + ${i} * p.biasQ;
  let mo${sfx} = b * p.maskB + h * p.maskH + ${i} * p.maskQ;`;
}

/** Keys row i may see: j <= i + causalOff (causalOff >= Lk when not causal). */
export function keyEnd(i: string): string {
  return `min(p.lk, ${i} + p.causalOff + 1u)`;
}

function dotBody(dv: number, a: string, bExpr: (d: string) => string): string {
  return `var acc4 = vec4<f32>(0.0);
    for (var d = 0u; d < ${dv}u; d++) { acc4 += ${a}[d] * ${bExpr('d')}; }`;
}

export function plainForward(v: AttnVariant): string {
  const dv = v.d / 4;
  const drop = v.dropout;
  return /* wgsl */ `
${bindingDecls(forwardBindings())}
const NEG_MAX = ${NEG_MAX};
${dropFns(v)}

// one invocation per (b, h, i) of all B·H·Lq rows: a few queries per head (decoding's cross-attention, one
// per beam) still fill whole workgroups
${flatGridEntry(PLAIN_WORKGROUP, 't', 'p.rows')}
  let bh = t / p.lq;
  let i = t % p.lq;
  let b = bh / p.heads;
  let h = bh % p.heads;
  let qo = ${qRow('i')} * ${dv}u;
  let kb = ${kRow('0u')};
  ${rowOffsets('i')}
  ${drop ? `let dt = ${dropBase('(bh * p.lq + i)')}; var dw = dropWords(dt);` : ''}
  var qr: array<vec4<f32>, ${dv}>;
  var o: array<vec4<f32>, ${dv}>;
  for (var d = 0u; d < ${dv}u; d++) { qr[d] = q[qo + d] * p.scale; o[d] = vec4<f32>(0.0); }
  var m = NEG_MAX;
  var l = 0.0;
  let kEnd = ${keyEnd('i')};
  for (var j = 0u; j < kEnd; j++) {
    let kj = (kb + j * p.kL) * ${dv}u;
    ${dotBody(dv, 'qr', (d) => `k[kj + ${d}]`)}
    let s = acc4.x + acc4.y + acc4.z + acc4.w${extraTerms('j')};
    ${onlineSoftmaxStep(dv)}
    ${drop ? dropStep('') : ''}
    let pe = e${drop ? ' * z' : ''};
    for (var d = 0u; d < ${dv}u; d++) { o[d] += pe * v[kj + d]; }
  }
  // l = 0 only if every visible score was -inf (a -inf mask): such a row gives 0, not NaN
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var d = 0u; d < ${dv}u; d++) { out[qo + d] = o[d] * inv; }
  stats[bh * p.lq + i] = vec2<f32>(m, log(l));
}`;
}

/** Storage buffers of the dq kernels, which compute Δ themselves from O: more than an adapter that allows
 * only 10 per stage (Chrome's WebGPU) can bind; there Δ comes from deltaKernel and O is not bound. */
export const DQ_STORAGE_BUFFERS = 11;

/** The subgroup dq kernel binds one more: the dropped probabilities it writes for the stored dkv kernel. */
export const SUBGROUP_DQ_STORAGE_BUFFERS = DQ_STORAGE_BUFFERS + 1;

export function dqBindings(deltaGiven = false, withPz = false): Binding[] {
  const bs: Binding[] = [
    { name: 'q', type: v4, write: false },
    { name: 'k', type: v4, write: false },
    { name: 'v', type: v4, write: false },
  ];
  if (!deltaGiven) bs.push({ name: 'o', type: v4, write: false });
  bs.push({ name: 'dout', type: v4, write: false }, { name: 'stats', type: 'array<vec2<f32>>', write: false });
  bs.push({ name: 'bias', type: 'array<f32>', write: false }, { name: 'mask', type: 'array<f32>', write: false });
  bs.push({ name: 'dq', type: v4, write: true }, { name: 'delta', type: 'array<f32>', write: !deltaGiven });
  bs.push({ name: 'ds', type: 'array<f32>', write: true });
  if (withPz) bs.push({ name: 'pz', type: 'array<f32>', write: true });
  return bs;
}

/** Δ = dO·O per row (b, h, i), in q's layout, for the dq kernel on adapters that cannot also bind O there. */
export function deltaKernel(v: AttnVariant): string {
  const dv = v.d / 4;
  return /* wgsl */ `
${bindingDecls([
  { name: 'o', type: v4, write: false },
  { name: 'dout', type: v4, write: false },
  { name: 'delta', type: 'array<f32>', write: true },
])}
@compute @workgroup_size(${PLAIN_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${plainOwner('i')}
  let qo = ${qRow('i')} * ${dv}u;
  var del4 = vec4<f32>(0.0);
  for (var d = 0u; d < ${dv}u; d++) { del4 += dout[qo + d] * o[qo + d]; }
  delta[bh * p.lq + i] = del4.x + del4.y + del4.z + del4.w;
}`;
}

/** Row owner: dQ, Δ = dO·O per row (read from \`delta\` when \`deltaGiven\`), and ds (for dBias) when asked. */
export function plainBackwardDq(v: AttnVariant, deltaGiven = false): string {
  const dv = v.d / 4;
  const drop = v.dropout;
  return /* wgsl */ `
${bindingDecls(dqBindings(deltaGiven))}
${dropFns(v)}

@compute @workgroup_size(${PLAIN_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${plainOwner('i')}
  let row = bh * p.lq + i;
  let qo = ${qRow('i')} * ${dv}u;
  let kb = ${kRow('0u')};
  ${rowOffsets('i')}
  ${drop ? `let dt = ${dropBase('row')}; var dw = dropWords(dt);` : ''}
  var qr: array<vec4<f32>, ${dv}>;
  var gr: array<vec4<f32>, ${dv}>;
  var dqr: array<vec4<f32>, ${dv}>;
  var del4 = vec4<f32>(0.0);
  for (var d = 0u; d < ${dv}u; d++) {
    qr[d] = q[qo + d] * p.scale;
    gr[d] = dout[qo + d];
    ${deltaGiven ? '' : 'del4 += gr[d] * o[qo + d];'}
    dqr[d] = vec4<f32>(0.0);
  }
  let dl = ${deltaGiven ? 'delta[row]' : 'del4.x + del4.y + del4.z + del4.w'};
  let st = stats[row];
  let kEnd = ${keyEnd('i')};
  for (var j = 0u; j < kEnd; j++) {
    let kj = (kb + j * p.kL) * ${dv}u;
    var s4 = vec4<f32>(0.0);
    var g4 = vec4<f32>(0.0);
    for (var d = 0u; d < ${dv}u; d++) { s4 += qr[d] * k[kj + d]; g4 += gr[d] * v[kj + d]; }
    let s = s4.x + s4.y + s4.z + s4.w${extraTerms('j')};
    let pr = exp(s - st.x - st.y);
    ${drop ? dropStep('') : ''}
    let dsj = pr * ((g4.x + g4.y + g4.z + g4.w)${drop ? ' * z' : ''} - dl);
    for (var d = 0u; d < ${dv}u; d++) { dqr[d] += dsj * k[kj + d]; }
    if (p.writeDs != 0u) { ds[row * p.lk + j] = dsj; }
  }
  if (p.writeDs != 0u) { for (var j = kEnd; j < p.lk; j++) { ds[row * p.lk + j] = 0.0; } }
  for (var d = 0u; d < ${dv}u; d++) { dq[qo + d] = dqr[d] * p.scale; }
  ${deltaGiven ? '' : 'delta[row] = dl;'}
}`;
}

export function dkvBindings(): Binding[] {
  const bs: Binding[] = [
    { name: 'q', type: v4, write: false },
    { name: 'k', type: v4, write: false },
    { name: 'v', type: v4, write: false },
    { name: 'dout', type: v4, write: false },
    { name: 'stats', type: 'array<vec2<f32>>', write: false },
    { name: 'delta', type: 'array<f32>', write: false },
  ];
  bs.push({ name: 'bias', type: 'array<f32>', write: false }, { name: 'mask', type: 'array<f32>', write: false });
  bs.push({ name: 'dk', type: v4, write: true }, { name: 'dv', type: v4, write: true });
  return bs;
}

/** Bindings of the subgroup dkv kernel that reads the dq kernel's pz and ds (attention-subgroup.wgsl.ts). */
export function dkvStoredBindings(): Binding[] {
  return [
    { name: 'q', type: v4, write: false },
    { name: 'dout', type: v4, write: false },
    { name: 'pz', type: 'array<f32>', write: false },
    { name: 'ds', type: 'array<f32>', write: false },
    { name: 'dk', type: v4, write: true },
    { name: 'dv', type: v4, write: true },
  ];
}

/** Key owner: dK and dV, streaming the query rows that see key j. */
export function plainBackwardDkv(v: AttnVariant): string {
  const dv = v.d / 4;
  const drop = v.dropout;
  return /* wgsl */ `
${bindingDecls(dkvBindings())}
${dropFns(v)}

@compute @workgroup_size(${PLAIN_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${plainOwner('j')}
  let ko = ${kRow('j')} * ${dv}u;
  let qb = ${qRow('0u')};
  var kr: array<vec4<f32>, ${dv}>;
  var vr: array<vec4<f32>, ${dv}>;
  var dkr: array<vec4<f32>, ${dv}>;
  var dvr: array<vec4<f32>, ${dv}>;
  for (var d = 0u; d < ${dv}u; d++) {
    kr[d] = k[ko + d] * p.scale;
    vr[d] = v[ko + d];
    dkr[d] = vec4<f32>(0.0);
    dvr[d] = vec4<f32>(0.0);
  }
  let bo = b * p.biasB + h * p.biasH + j * p.biasJ;
  let mo = b * p.maskB + h * p.maskH + j * p.maskJ;
  // causal: row i sees key j when j <= i + off
  let iStart = select(0u, j - p.causalOff, j > p.causalOff);
  for (var i = iStart; i < p.lq; i++) {
    let row = bh * p.lq + i;
    let qi = (qb + i * p.qL) * ${dv}u;
    var s4 = vec4<f32>(0.0);
    var g4 = vec4<f32>(0.0);
    for (var d = 0u; d < ${dv}u; d++) { s4 += q[qi + d] * kr[d]; g4 += dout[qi + d] * vr[d]; }
    let s = s4.x + s4.y + s4.z + s4.w + bias[bo + i * p.biasQ] + mask[mo + i * p.maskQ];
    let st = stats[row];
    let pr = exp(s - st.x - st.y);
    ${drop ? `let t = ${dropBase('row')} + j; let z = dropKeep(dropWords(t), t);` : ''}
    let dsi = pr * ((g4.x + g4.y + g4.z + g4.w)${drop ? ' * z' : ''} - delta[row]);
    let pz = pr${drop ? ' * z' : ''};
    for (var d = 0u; d < ${dv}u; d++) { dvr[d] += pz * dout[qi + d]; dkr[d] += dsi * q[qi + d]; }
  }
  for (var d = 0u; d < ${dv}u; d++) { dk[ko + d] = dkr[d] * p.scale; dv[ko + d] = dvr[d]; }
}`;
}

/** dBias [1, H, Lq, Lk] = Σ_b ds[b, H, Lq, Lk]: the batch broadcast of T5's position bias. */
export function reduceBatchKernel(): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> ds: array<f32>;
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
struct Params { n: u32, batch: u32 }
@group(0) @binding(2) var<uniform> p: Params;

${flatGridEntry(REDUCE_WORKGROUP, 'i', 'p.n')}
  var s = 0.0;
  for (var b = 0u; b < p.batch; b++) { s += ds[b * p.n + i]; }
  dbias[i] = s;
}`;
}
