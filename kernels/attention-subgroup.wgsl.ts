// WGSL for fused attention's subgroup kernels (lavapipe); the formulas, layouts, uniforms and the plain
// kernels are in attention.wgsl.ts, and kernels/attention.ts holds the op.
//
// Subgroup kernels (lavapipe). A workgroup is one subgroup of SG lanes. Streamed rows (k and v in the
// forward) are loaded once per subgroup: lane l loads elements [l·E, l·E + E) with E = D / SG, and
// subgroupBroadcast with a constant lane hands each element to every lane. Each lane owns R rows, kept in
// registers as named scalars (the code is unrolled here rather than by the driver, whose loops over
// private arrays compile slowly). All lanes run every key iteration (the loop bound is uniform), since a
// broadcast needs the whole subgroup; rows past the end are clamped for loads and never stored.

import {
  bindingDecls, dkvStoredBindings, dqBindings, dropBase, dropFns, dropStep, forwardBindings, keyEnd, kRow, NEG_MAX, qRow,
  rowOffsets, v4, type AttnVariant, type Binding,
} from './attention.wgsl.ts';

export interface SubgroupShape {
  /** subgroup size (lanes per workgroup) */
  sg: number;
  /** rows owned per lane */
  r: number;
}

const seq = (n: number, f: (i: number) => string, sep = '\n  '): string =>
  Array.from({ length: n }, (_, i) => f(i)).join(sep);

/** Adds bias and mask to the R scores s{r} under uniform branches (biasJ, maskJ are 1 when the operand
 * is present): an absent operand then costs no load, where lavapipe gathers every storage load lane by
 * lane. `at` gives the element offset of row/key r past its precomputed base. */
function addExtras(R: number, at: string, atMask: string): string {
  return `if (p.biasJ != 0u) { ${seq(R, (r) => `s${r} += bias[bo${r} + ${at}];`, ' ')} }
    if (p.maskJ != 0u) { ${seq(R, (r) => `s${r} += mask[mo${r} + ${atMask}];`, ' ')} }`;
}

/** Element type of streamed loads: lane l loads E = D / SG consecutive floats, as vec4s when it can.
 * Every storage load is a lane-by-lane gather on lavapipe, and each one also costs compile time
 * (a branch per lane): wide loads cut both. */
function streamWidth(E: number): number {
  return E % 4 === 0 ? 4 : E % 2 === 0 ? 2 : 1;
}
const vecType = (n: number): string => (n === 1 ? 'f32' : `vec${n}<f32>`);
const COMP = ['x', 'y', 'z', 'w'];

/** Bindings with row-owned tensors as vec4 arrays and streamed ones as vecN arrays. */
function typedBindings(bs: Binding[], streamed: string[], n: number): Binding[] {
  return bs.map((b) =>
    b.type !== v4 ? b : streamed.includes(b.name) ? { ...b, type: `array<${vecType(n)}>` } : b,
  );
}

/** `let {name}_{d}` for d < D from vec4 loads of arr[base ..] (times `mul`). */
function rowLoad(name: string, arr: string, base: string, D: number, mul = ''): string {
  const out: string[] = [];
  for (let t = 0; t < D / 4; t++) {
    out.push(`let ${name}v${t} = ${arr}[${base} + ${t}u]${mul};`);
    for (let c = 0; c < 4; c++) out.push(`let ${name}_${4 * t + c} = ${name}v${t}.${COMP[c]};`);
  }
  return out.join(' ');
}

/** arr[base ..] = vec4 stores of `{name}_{d}` (times `mul`). */
function rowStore(name: string, arr: string, base: string, D: number, mul = ''): string {
  const out: string[] = [];
  for (let t = 0; t < D / 4; t++) {
    const parts = [0, 1, 2, 3].map((c) => `${name}_${4 * t + c}`).join(', ');
    out.push(`${arr}[${base} + ${t}u] = vec4<f32>(${parts})${mul};`);
  }
  return out.join('\n    ');
}

/** Lane l's streamed slice of row `at`: `let {name}{t}` for t < E / N. */
function streamLoad(name: string, arr: string, at: string, E: number, n: number): string {
  return seq(E / n, (t) => `let ${name}${t} = ${arr}[${at} + ${t}u];`, ' ');
}

/** For each streamed element d = c·E + e: broadcast lane c's loaded value and emit `body(d, expr)`. */
function broadcastEach(D: number, sg: number, n: number, loaded: string, body: (d: number, x: string) => string): string {
  const E = D / sg;
  const out: string[] = [];
  for (let c = 0; c < sg; c++)
    for (let t = 0; t < E / n; t++) {
      const parts: string[] = [];
      for (let k = 0; k < n; k++) parts.push(body(c * E + t * n + k, n === 1 ? 'x' : `x.${COMP[k]}`));
      out.push(`{ let x = subgroupBroadcast(${loaded}${t}, ${c}u); ${parts.join(' ')} }`);
    }
  return out.join('\n    ');
}

/** What every subgroup kernel derives from its variant and shape: head dim D, lanes SG, rows (or keys) per lane R,
 * E = D / SG elements each lane streams as N-wide loads, RW rows per workgroup, and generators that repeat a
 * line per owned row and per head-dim element. */
function geometry(v: AttnVariant, s: SubgroupShape) {
  const { d: D } = v;
  const { sg: SG, r: R } = s;
  const E = D / SG;
  return {
    D, SG, R, E, N: streamWidth(E), RW: SG * R, drop: v.dropout,
    rows: (f: (r: number) => string, sep = '\n  ') => seq(R, f, sep),
    dims: (f: (d: number) => string, sep = ' ') => seq(D, f, sep),
  };
}

export function subgroupForward(v: AttnVariant, s: SubgroupShape): string {
  const { D, SG, R, E, N, RW, drop, rows, dims } = geometry(v, s);
  return /* wgsl */ `enable subgroups;
${bindingDecls(typedBindings(forwardBindings(), ['k', 'v'], N))}
const NEG_MAX = ${NEG_MAX};
${dropFns(v)}

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let bh = wid.y;
  let b = bh / p.heads;
  let h = bh % p.heads;
  let row0 = wid.x * ${RW}u;
  ${rows((r) => `let i${r} = min(row0 + lane + ${SG * r}u, p.lq - 1u);
  let qo${r} = ${qRow(`i${r}`)} * ${D / 4}u;
  ${drop ? `let dt${r} = ${dropBase(`(bh * p.lq + i${r})`)}; var dw${r} = dropWords(dt${r});` : ''}
  ${rowLoad(`q${r}`, 'q', `qo${r}`, D, ' * p.scale')}
  ${dims((d) => `var o${r}_${d} = 0.0;`)}
  var m${r} = NEG_MAX;
  var l${r} = 0.0;
  ${rowOffsets(`i${r}`, `${r}`)}
  let ke${r} = ${keyEnd(`i${r}`)};`)}
  let kEnd = min(p.lk, min(row0 + ${RW}u, p.lq) + p.causalOff);
  let ko = ${kRow('0u')} * ${D / N}u + lane * ${E / N}u;
  let kStep = p.kL * ${D / N}u;
  for (var j = 0u; j < kEnd; j++) {
    let kj = ko + j * kStep;
    ${streamLoad('ks', 'k', 'kj', E, N)}
    ${rows((r) => `var s${r} = 0.0;`, ' ')}
    ${broadcastEach(D, SG, N, 'ks', (d, x) => rows((r) => `s${r} += q${r}_${d} * ${x};`, ' '))}
    ${addExtras(R, 'j', 'j')}
    ${rows((r) => `let n${r} = select(m${r}, max(m${r}, s${r}), j < ke${r});
    // rescaling inside the accumulation (o = o·c + p·v) costs one multiply per element but no branch
    let c${r} = exp(m${r} - n${r});
    let p${r} = select(0.0, exp(s${r} - n${r}), j < ke${r});
    l${r} = l${r} * c${r} + p${r};
    m${r} = n${r};
    ${drop ? dropStep(`${r}`) : ''}
    let pz${r} = p${r}${drop ? ` * z${r}` : ''};`, '\n    ')}
    ${streamLoad('vs', 'v', 'kj', E, N)}
    ${broadcastEach(D, SG, N, 'vs', (d, x) => rows((r) => `o${r}_${d} = o${r}_${d} * c${r} + pz${r} * ${x};`, ' '))}
  }
  ${rows((r) => `if (row0 + lane + ${SG * r}u < p.lq) {
    let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
    ${rowStore(`o${r}`, 'out', `qo${r}`, D, ' * inv')}
    stats[bh * p.lq + i${r}] = vec2<f32>(m${r}, log(l${r}));
  }`)}
}`;
}

/**
 * Forward for a few query rows per head (decoding's cross-attention: one query per beam): the lanes split the
 * head dim instead of owning rows. Lane l holds elements [l·E, l·E + E) of each of the Q rows' q and output;
 * per key it loads its slice of the k and v rows, and subgroupAdd sums the Q partial dot products. With one
 * row per lane (subgroupForward) a single query would leave SG - 1 lanes computing clamped copies of it.
 * Without dropout (generation never draws it).
 */
export function subgroupForwardFewRows(D: number, s: SubgroupShape): string {
  const { sg: SG, r: Q } = s;
  const E = D / SG;
  const N = streamWidth(E);
  const T = vecType(N);
  const W = E / N;
  const rows = (f: (r: number) => string, sep = '\n  ') => seq(Q, f, sep);
  const slice = (f: (t: number) => string, sep = ' ') => seq(W, f, sep);
  const dot = (a: string, b: string) => (N === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`);
  return /* wgsl */ `enable subgroups;
${bindingDecls(typedBindings(forwardBindings(), ['q', 'k', 'v', 'out'], N))}
const NEG_MAX = ${NEG_MAX};

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let bh = wid.y;
  let b = bh / p.heads;
  let h = bh % p.heads;
  let row0 = wid.x * ${Q}u;
  ${rows((r) => `let i${r} = min(row0 + ${r}u, p.lq - 1u);
  let qo${r} = ${qRow(`i${r}`)} * ${D / N}u + lane * ${W}u;
  ${slice((t) => `let q${r}_${t} = q[qo${r} + ${t}u] * p.scale; var o${r}_${t} = ${T}(0.0);`)}
  var m${r} = NEG_MAX;
  var l${r} = 0.0;
  ${rowOffsets(`i${r}`, `${r}`)}
  let ke${r} = ${keyEnd(`i${r}`)};`)}
  let kEnd = min(p.lk, min(row0 + ${Q}u, p.lq) + p.causalOff);
  let ko = ${kRow('0u')} * ${D / N}u + lane * ${W}u;
  let kStep = p.kL * ${D / N}u;
  for (var j = 0u; j < kEnd; j++) {
    let kj = ko + j * kStep;
    ${streamLoad('ks', 'k', 'kj', E, N)}
    ${rows((r) => `var s${r} = subgroupAdd(${slice((t) => dot(`q${r}_${t}`, `ks${t}`), ' + ')});`, ' ')}
    ${addExtras(Q, 'j', 'j')}
    ${rows((r) => `let n${r} = select(m${r}, max(m${r}, s${r}), j < ke${r});
    let c${r} = exp(m${r} - n${r});
    let p${r} = select(0.0, exp(s${r} - n${r}), j < ke${r});
    l${r} = l${r} * c${r} + p${r};
    m${r} = n${r};`, '\n    ')}
    ${streamLoad('vs', 'v', 'kj', E, N)}
    ${rows((r) => slice((t) => `o${r}_${t} = o${r}_${t} * c${r} + p${r} * vs${t};`), '\n    ')}
  }
  ${rows((r) => `if (row0 + ${r}u < p.lq) {
    let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
    ${slice((t) => `out[qo${r} + ${t}u] = o${r}_${t} * inv;`)}
    if (lane == 0u) { stats[bh * p.lq + i${r}] = vec2<f32>(m${r}, log(l${r})); }
  }`)}
}`;
}

/** Row owner with subgroups: as plainBackwardDq, R rows per lane, k and v rows broadcast. */
export function subgroupBackwardDq(v: AttnVariant, s: SubgroupShape): string {
  const { D, SG, R, E, N, RW, drop, rows, dims } = geometry(v, s);
  return /* wgsl */ `enable subgroups;
${bindingDecls(typedBindings(dqBindings(false, true), ['k', 'v'], N))}
${dropFns(v)}

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let bh = wid.y;
  let b = bh / p.heads;
  let h = bh % p.heads;
  let rbase = wid.x * ${RW}u;
  ${rows((r) => `let i${r} = min(rbase + lane + ${SG * r}u, p.lq - 1u);
  let row${r} = bh * p.lq + i${r};
  let qo${r} = ${qRow(`i${r}`)} * ${D / 4}u;
  ${drop ? `let dt${r} = ${dropBase(`row${r}`)}; var dw${r} = dropWords(dt${r});` : ''}
  ${rowLoad(`q${r}`, 'q', `qo${r}`, D, ' * p.scale')}
  ${rowLoad(`g${r}`, 'dout', `qo${r}`, D)}
  ${dims((d) => `var dq${r}_${d} = 0.0;`)}
  let dl${r} = ${seq(D / 4, (t) => `dot(g${r}v${t}, o[qo${r} + ${t}u])`, ' + ')};
  let st${r} = stats[row${r}];
  ${rowOffsets(`i${r}`, `${r}`)}
  let ke${r} = ${keyEnd(`i${r}`)};`)}
  let kEnd = min(p.lk, min(rbase + ${RW}u, p.lq) + p.causalOff);
  let ko = ${kRow('0u')} * ${D / N}u + lane * ${E / N}u;
  let kStep = p.kL * ${D / N}u;
  for (var j = 0u; j < kEnd; j++) {
    let kj = ko + j * kStep;
    ${streamLoad('ks', 'k', 'kj', E, N)}
    ${streamLoad('vs', 'v', 'kj', E, N)}
    ${rows((r) => `var s${r} = 0.0; var dp${r} = 0.0;`, ' ')}
    ${broadcastEach(D, SG, N, 'ks', (d, x) => rows((r) => `s${r} += q${r}_${d} * ${x};`, ' '))}
    ${broadcastEach(D, SG, N, 'vs', (d, x) => rows((r) => `dp${r} += g${r}_${d} * ${x};`, ' '))}
    ${addExtras(R, 'j', 'j')}
    ${rows((r) => {
      const pe = `let pr${r} = select(0.0, exp(s${r} - st${r}.x - st${r}.y), j < ke${r});`;
      if (!drop) return `${pe}
    let pz${r} = pr${r};
    let ds${r} = pr${r} * (dp${r} - dl${r});`;
      return `${pe}
    ${dropStep(`${r}`)}
    let pz${r} = pr${r} * z${r};
    let ds${r} = pr${r} * (dp${r} * z${r} - dl${r});`;
    }, '\n    ')}
    ${broadcastEach(D, SG, N, 'ks', (d, x) => rows((r) => `dq${r}_${d} += ds${r} * ${x};`, ' '))}
    if (p.writeDs != 0u) { ${rows((r) => `ds[row${r} * p.lk + j] = ds${r};`, ' ')} }
    if (p.writePz != 0u) { ${rows((r) => `pz[row${r} * p.lk + j] = pz${r};`, ' ')} }
  }
  ${rows((r) => `if (rbase + lane + ${SG * r}u < p.lq) {
    ${rowStore(`dq${r}`, 'dq', `qo${r}`, D, ' * p.scale')}
    delta[row${r}] = dl${r};
    if (p.writeDs != 0u) { for (var j = kEnd; j < p.lk; j++) { ds[row${r} * p.lk + j] = 0.0; } }
    if (p.writePz != 0u) { for (var j = kEnd; j < p.lk; j++) { pz[row${r} * p.lk + j] = 0.0; } }
  }`)}
}`;
}

/**
 * Key owner reading what the dq kernel stored (writeDs, writePz): dV_j = Σ_i pz_ij dO_i and dK_j = Σ_i ds_ij q_i,
 * where pz is the dropped probabilities and ds the score gradients of every (row, key). Two products per key
 * instead of four, and no exp or dropout draws: the recomputing kernel meets its dropout elements a row apart
 * and so pays one Philox call per element, four times the dq kernel's.
 */
export function subgroupBackwardDkvStored(D: number, s: SubgroupShape): string {
  const { SG, E, N, RW, rows: keys, dims } = geometry({ d: D, dropout: false }, s);
  return /* wgsl */ `enable subgroups;
${bindingDecls(typedBindings(dkvStoredBindings(), ['q', 'dout'], N))}

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let bh = wid.y;
  let b = bh / p.heads;
  let h = bh % p.heads;
  let key0 = wid.x * ${RW}u;
  ${keys((r) => `let j${r} = min(key0 + lane + ${SG * r}u, p.lk - 1u);
  let ko${r} = ${kRow(`j${r}`)} * ${D / 4}u;
  ${dims((d) => `var dk${r}_${d} = 0.0;`)}
  ${dims((d) => `var dv${r}_${d} = 0.0;`)}`)}
  // causal: row i sees key j when j <= i + off; earlier rows stored zeros for this workgroup's keys
  let iStart = select(0u, key0 - p.causalOff, key0 > p.causalOff);
  let qb = ${qRow('0u')} * ${D / N}u + lane * ${E / N}u;
  let qStep = p.qL * ${D / N}u;
  for (var i = iStart; i < p.lq; i++) {
    let row = bh * p.lq + i;
    let qi = qb + i * qStep;
    ${streamLoad('qs', 'q', 'qi', E, N)}
    ${streamLoad('gs', 'dout', 'qi', E, N)}
    ${keys((r) => `let pz${r} = pz[row * p.lk + j${r}]; let ds${r} = ds[row * p.lk + j${r}];`, ' ')}
    ${broadcastEach(D, SG, N, 'gs', (d, x) => keys((r) => `dv${r}_${d} += pz${r} * ${x};`, ' '))}
    ${broadcastEach(D, SG, N, 'qs', (d, x) => keys((r) => `dk${r}_${d} += ds${r} * ${x};`, ' '))}
  }
  ${keys((r) => `if (key0 + lane + ${SG * r}u < p.lk) {
    ${rowStore(`dk${r}`, 'dk', `ko${r}`, D, ' * p.scale')}
    ${rowStore(`dv${r}`, 'dv', `ko${r}`, D)}
  }`)}
}`;
}
