// Counter-based random numbers on the GPU: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011; the generator behind cuRAND's and PyTorch's CUDA dropout). One Philox call maps a
// 128-bit counter and a 64-bit key (the seed) to four 32-bit words. Element e of a stream (e = offset + i for
// element i of a tensor drawn at `offset`) is word e % 4 of Philox(counter = floor(e / 4), key = seed), so a
// value depends only on (seed, offset + i): not on the tensor's shape, on how it is split into draws, or on
// the dispatch. Callers advance `offset` by the number of elements drawn (dropout: by the tensor size).
//
// Uniform: the top 24 bits of a word, times 2^-24: exact in f32, in [0, 1).
// Normal: Box-Muller on the word pairs (0, 1) and (2, 3) of a counter: words 2k and 2k+1 give
// r = sqrt(-2 ln u1) with u1 in (0, 1], theta = 2 pi u2, and elements 2k, 2k+1 get r cos(theta), r sin(theta).
import { recordOp } from './record-op.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, type Shape, type Tensor } from '../engine/tensor.ts';
import { memoWgsl } from './wgsl-memo.ts';

const WORKGROUP = 64;
/** Counters (4 outputs each) per invocation, a workgroup apart: dropout of 4M elements on lavapipe, medians of
 * alternating processes, 1 / 2 / 3 per invocation: 15.3 / 13.5 / 13.3 ms, 15.4 / 13.7 / 13.1 ms. */
const COUNTERS_PER_INVOCATION = 2;
const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const ROUNDS = 10;
const TWO_POW_32 = 2 ** 32;

export interface RandomOptions {
  /** a non-negative integer below 2^53 (the Philox key) */
  seed: number;
  /** the stream position of element 0 (non-negative integer below 2^53); default 0 */
  offset?: number;
}

/** Validates seed and offset (non-negative integers below 2^53). */
export function checkRandomOptions(op: string, o: RandomOptions): { seed: number; offset: number } {
  const offset = o.offset ?? 0;
  for (const [k, v] of [['seed', o.seed], ['offset', offset]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${op}: ${k} must be an integer in [0, 2^53), got ${v}`);
  }
  return { seed: o.seed, offset };
}

const split = (v: number): [number, number] => [v % TWO_POW_32 >>> 0, Math.floor(v / TWO_POW_32) >>> 0];

// ---------------------------------------------------------------------------------------------------------
// WGSL

/** WGSL has no 32x32 -> 64-bit multiply: build the high word from 16-bit halves (each partial < 2^32).
 * Exported for kernels that draw dropout masks themselves (fused attention). */
export const PHILOX_WGSL = /* wgsl */ `
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}
fn philox(c_in: vec4<u32>, k_in: vec2<u32>) -> vec4<u32> {
  var c = c_in; var k = k_in;
  for (var r = 0u; r < ${ROUNDS}u; r++) {
    let hi0 = mulhi(${PHILOX_M0}u, c.x); let lo0 = ${PHILOX_M0}u * c.x;
    let hi1 = mulhi(${PHILOX_M1}u, c.z); let lo1 = ${PHILOX_M1}u * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    k = k + vec2<u32>(${PHILOX_W0}u, ${PHILOX_W1}u);
  }
  return c;
}
fn to_unit(w: u32) -> f32 { return f32(w >> 8u) * ${2 ** -24}; }
`;

type Mode = 'bits' | 'uniform' | 'normal' | 'dropout';

/** `one(t)` writes 4 consecutive outputs (a vec4 store when the size allows), t = 0 .. quads - 1, and an
 * invocation calls it COUNTERS_PER_INVOCATION times. Output element j of quad t is stream position
 * offset + 4t + j: word (first + j) of counter c0 + t when the offset is aligned (first = 0), else it straddles
 * counters c0 + t and c0 + t + 1, and a second Philox call supplies the rest. Values are computed per counter
 * (Box-Muller pairs words (0,1) and (2,3) of one counter) and then shifted into place, so a value depends only
 * on its stream position. */
function randomCode(mode: Mode, vecOut: boolean): string {
  // per-counter values from the four words w
  const perCounter: Record<Mode, string> = {
    bits: 'return w;',
    uniform: 'return vec4<f32>(w >> vec4<u32>(8u)) * ' + `${2 ** -24};`,
    normal: 'let a = box_muller(w.x, w.y); let b = box_muller(w.z, w.w); return vec4<f32>(a.x, a.y, b.x, b.y);',
    dropout: 'return vec4<f32>(w >> vec4<u32>(8u)) * ' + `${2 ** -24};`,
  };
  const finish: Record<Mode, string> = {
    bits: 'v',
    uniform: 'p.a + p.b * v',
    normal: 'p.a + p.b * v',
    dropout: 'select(vec4<f32>(0.0), xv * p.b, v >= vec4<f32>(p.a))',
  };
  const outT = mode === 'bits' ? 'i32' : 'f32';
  // raw words stay integers all the way (a trip through f32 registers might quieten NaN bit patterns)
  const V = mode === 'bits' ? 'vec4<u32>' : 'vec4<f32>';
  const store = (expr: string) => (mode === 'bits' ? `bitcast<vec4<i32>>(${expr})` : expr);
  const xDecl = mode === 'dropout' ? `@group(0) @binding(0) var<storage, read> x: array<${vecOut ? 'vec4<f32>' : 'f32'}>;` : '';
  const xLoad =
    mode !== 'dropout' ? '' : vecOut ? 'let xv = x[t];' : 'var xv = vec4<f32>(0.0); for (var j = 0u; j < 4u; j++) { if (4u * t + j < p.n) { xv[j] = x[4u * t + j]; } }';
  const write = vecOut
    ? `out[t] = ${store(finish[mode])};`
    : `let r = ${store(finish[mode])};
  for (var j = 0u; j < 4u; j++) { if (4u * t + j < p.n) { out[4u * t + j] = r[j]; } }`;
  return /* wgsl */ `
${xDecl}
@group(0) @binding(${mode === 'dropout' ? 1 : 0}) var<storage, read_write> out: array<${vecOut ? `vec4<${outT}>` : outT}>;
struct Params { n: u32, c_lo: u32, c_hi: u32, first: u32, k_lo: u32, k_hi: u32, quads: u32, a: f32, b: f32 }
@group(0) @binding(${mode === 'dropout' ? 2 : 1}) var<uniform> p: Params;
${PHILOX_WGSL}
fn box_muller(w0: u32, w1: u32) -> vec2<f32> {
  let u1 = (f32(w0 >> 8u) + 1.0) * ${2 ** -24};
  let u2 = f32(w1 >> 8u) * ${2 ** -24};
  let r = sqrt(-2.0 * log(u1));
  let t = ${2 * Math.PI} * u2;
  return vec2<f32>(r * cos(t), r * sin(t));
}
fn values(q: u32) -> ${V} {
  let lo = p.c_lo + q;
  let hi = p.c_hi + select(0u, 1u, lo < q);
  let w = philox(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(p.k_lo, p.k_hi));
  ${perCounter[mode]}
}
fn one(t: u32) {
  let a = values(t);
  var v = a;
  if (p.first != 0u) {
    let b = values(t + 1u);
    if (p.first == 1u) { v = ${V}(a.y, a.z, a.w, b.x); }
    else if (p.first == 2u) { v = ${V}(a.z, a.w, b.x, b.y); }
    else { v = ${V}(a.w, b.x, b.y, b.z); }
  }
  ${xLoad}
  ${write}
}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t0 = (wid.x + wid.y * nwg.x) * ${WORKGROUP * COUNTERS_PER_INVOCATION}u + lid;
${Array.from({ length: COUNTERS_PER_INVOCATION }, (_, j) => `  if (t0 + ${j * WORKGROUP}u < p.quads) { one(t0 + ${j * WORKGROUP}u); }`).join('\n')}
}`;
}

/** A stream position as kernels take it: counter c0 = floor(offset / 4) and key in 32-bit halves, and the
 * word `first` = offset % 4 of counter c0 that element 0 starts at (element i: counter c0 + (first + i) / 4
 * with carry into the high half, word (first + i) % 4). */
export function philoxStreamParams(seed: number, offset: number) {
  const [cLo, cHi] = split(Math.floor(offset / 4));
  const [kLo, kHi] = split(seed);
  return { cLo, cHi, first: offset % 4, kLo, kHi };
}

/** The dropout test `uniform >= p` as an integer threshold on the top 24 bits of a word: the uniform is
 * (w >> 8) · 2^-24 and p is compared as an f32, both exact, so `(w >> 8) >= ceil(f32(p) · 2^24)` is the
 * same test (p = 1 gives 2^24: nothing kept). */
export function dropoutThreshold(p: number): number {
  return Math.ceil(Math.fround(p) * 2 ** 24);
}

function launch(mode: Mode, out: Tensor, opts: { seed: number; offset: number }, a: number, b: number, x?: Tensor): void {
  const n = out.size;
  if (n === 0) return;
  if (n >= 2 ** 32 - 4) throw new RangeError(`random: ${n} elements is too many for one draw`);
  const { cLo, cHi, first, kLo, kHi } = philoxStreamParams(opts.seed, opts.offset);
  const quads = Math.ceil(n / 4);
  const vecOut = n % 4 === 0;
  rt().dispatch({
    name: `random ${mode}`,
    code: randomCodeMemo(mode, vecOut),
    bindings: [...(x ? [x.read(`dropout input ${x.describe()}`)] : []), out.write()],
    params: [['u32', n], ['u32', cLo], ['u32', cHi], ['u32', first], ['u32', kLo], ['u32', kHi], ['u32', quads], ['f32', a], ['f32', b]],
    workgroups: grid1D(Math.ceil(quads / (WORKGROUP * COUNTERS_PER_INVOCATION))),
  });
}

/** The raw Philox words (as i32 bits) of elements [offset, offset + size). */
export function randomBits(shape: Shape, opts: RandomOptions): Tensor {
  const o = checkRandomOptions('randomBits', opts);
  const out = empty(shape, 'i32');
  launch('bits', out, o, 0, 0);
  return out;
}

/** Uniform in [low, high) (default [0, 1)). */
export function randomUniform(shape: Shape, opts: RandomOptions & { low?: number; high?: number }): Tensor {
  const o = checkRandomOptions('randomUniform', opts);
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  if (!(high >= low) || !Number.isFinite(low) || !Number.isFinite(high)) {
    throw new RangeError(`randomUniform: need finite low <= high, got [${low}, ${high})`);
  }
  const out = empty(shape);
  launch('uniform', out, o, low, high - low);
  return out;
}

/** Normal(mean, std) by Box-Muller (default standard normal). */
export function randomNormal(shape: Shape, opts: RandomOptions & { mean?: number; std?: number }): Tensor {
  const o = checkRandomOptions('randomNormal', opts);
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0) {
    throw new RangeError(`randomNormal: need finite mean and std >= 0, got mean ${mean}, std ${std}`);
  }
  const out = empty(shape);
  launch('normal', out, o, mean, std);
  return out;
}

/** PyTorch's dropout in training: each element is zeroed with probability p, survivors scaled by 1/(1-p).
 * Element i is kept when the uniform of stream position offset + i is >= p. The backward regenerates the
 * same mask from (seed, offset) instead of storing it. */
export function dropout(x: Tensor, p: number, opts: RandomOptions): Tensor {
  if (x.disposed) throw new Error(`dropout: input is a disposed tensor [${x.shape.join(', ')}]`);
  if (x.dtype !== 'f32') throw new TypeError(`dropout: input is ${x.describe()}; expected f32`);
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p}`);
  const o = checkRandomOptions('dropout', opts);
  const apply = (t: Tensor): Tensor => {
    const out = empty(t.shape);
    // p = 1 drops everything (PyTorch returns zeros); the kept test u >= 1 never passes, so scale is moot
    launch('dropout', out, o, p, p >= 1 ? 0 : 1 / (1 - p), t);
    return out;
  };
  const y = apply(x);
  return recordOp('dropout', [x], y, [], (g) => [apply(g)]);
}

// ---------------------------------------------------------------------------------------------------------
// CPU reference (bit-exact for the Philox words and for uniforms on [0, 1))

function mulhiRef(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox-4x32-10 of a 128-bit counter and a 64-bit key, as four u32. */
export function philox4x32(counter: [number, number, number, number], key: [number, number]): Uint32Array {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0) as [number, number, number, number];
  let [k0, k1] = key.map((v) => v >>> 0) as [number, number];
  for (let r = 0; r < ROUNDS; r++) {
    const hi0 = mulhiRef(PHILOX_M0, c0), lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhiRef(PHILOX_M1, c2), lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + PHILOX_W0) >>> 0;
    k1 = (k1 + PHILOX_W1) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** The words of stream positions [offset, offset + n) for `seed`. */
export function philoxStreamRef(seed: number, offset: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  const key = split(seed);
  let cached = -1;
  let w: Uint32Array = new Uint32Array(4);
  for (let i = 0; i < n; i++) {
    const e = offset + i;
    const c = Math.floor(e / 4);
    if (c !== cached) {
      w = philox4x32([...split(c), 0, 0], key);
      cached = c;
    }
    out[i] = w[e % 4]!;
  }
  return out;
}

export function uniformRef(seed: number, offset: number, n: number, low = 0, high = 1): Float64Array {
  const w = philoxStreamRef(seed, offset, n);
  return Float64Array.from(w, (v) => low + (high - low) * (v >>> 8) * 2 ** -24);
}

export function normalRef(seed: number, offset: number, n: number, mean = 0, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const e = offset + i;
    const base = Math.floor(e / 4);
    const w = philoxStreamRef(seed, base * 4, 4);
    const pair = (e % 4) >> 1;
    const u1 = ((w[2 * pair]! >>> 8) + 1) * 2 ** -24;
    const u2 = (w[2 * pair + 1]! >>> 8) * 2 ** -24;
    const r = Math.sqrt(-2 * Math.log(u1));
    const t = 2 * Math.PI * u2;
    out[i] = mean + std * (e % 2 === 0 ? r * Math.cos(t) : r * Math.sin(t));
  }
  return out;
}

export function dropoutRef(x: ArrayLike<number>, p: number, seed: number, offset = 0): Float64Array {
  const u = uniformRef(seed, offset, x.length);
  const s = p >= 1 ? 0 : 1 / (1 - p);
  const pf = Math.fround(p); // the kernel compares against p as an f32
  return Float64Array.from(u, (v, i) => (v >= pf ? x[i]! * s : 0));
}

// each source built once per argument set (wgsl-memo.ts)
const randomCodeMemo = memoWgsl(randomCode);
