// From-scratch weights with Hugging Face's T5PreTrainedModel._init_weights scales (transformers 4.36), which
// follow Mesh TensorFlow: with f = config.initializer_factor,
//   layer norms                      f * 1.0 (constant)
//   shared (and lm_head when untied) normal(0, f * 1.0)
//   attention q                      normal(0, f * (d_model * d_kv)^-0.5)   the 1/sqrt(d_kv) T5 never applies to scores
//   attention k, v                   normal(0, f * d_model^-0.5)
//   attention o                      normal(0, f * (num_heads * d_kv)^-0.5)
//   relative_attention_bias          normal(0, f * d_model^-0.5)
//   feed-forward wi (wi_0, wi_1)     normal(0, f * d_model^-0.5)
//   feed-forward wo                  normal(0, f * d_ff^-0.5)
// Same distributions, not the same numbers: torch's generator is not reproduced.
//
// The generator (ours, documented so that a run can be reproduced): every parameter has its own stream, keyed by
// the seed and the parameter's name, so a tensor's values do not depend on which other tensors exist.
//   key   = fmix32(seedLo ^ fmix32(seedHi ^ 0x9e3779b9) ^ fnv1a32(utf8(name)))    seed = seedHi * 2^32 + seedLo
//   state = four outputs of SplitMix32 started at key (Weyl step 0x9e3779b9, MurmurHash3's fmix32 as output)
//   bits  = xoshiro128** (Blackman & Vigna) from that state
//   u     = 53-bit uniform in [0, 1) from two draws: (a >>> 5) * 2^26 + (b >>> 6), over 2^53
//   pairs = Box-Muller: r = sqrt(-2 ln(1 - u1)), values r cos(2 pi u2), r sin(2 pi u2), filled in order
//   value = Math.fround(z * std)
// Same seed gives the same bytes under Node/V8 (its Math.log/cos/sin are the fdlibm ports on every platform);
// another JS engine's libm could differ in the last bit of a rare value.
import type { T5Config } from './config.ts';
import { storedParameters, type ParamSpec } from './parameters.ts';

/** A parameter's host values in PyTorch layout (hf/safetensors.ts writes this shape). */
export interface HostTensor {
  shape: readonly number[];
  data: Float32Array;
}

/** HF's standard deviation for a parameter (for layer norms: the constant it is filled with). */
export function initScale(spec: Pick<ParamSpec, 'kind' | 'name'>, cfg: T5Config): number {
  const f = cfg.initializer_factor;
  switch (spec.kind) {
    case 'layer_norm':
    case 'embedding':
    case 'lm_head':
      return f * 1.0;
    case 'q':
      return f * (cfg.d_model * cfg.d_kv) ** -0.5;
    case 'k':
    case 'v':
    case 'relative_attention_bias':
    case 'wi':
    case 'wi_0':
    case 'wi_1':
      return f * cfg.d_model ** -0.5;
    case 'o':
      return f * (cfg.num_heads * cfg.d_kv) ** -0.5;
    case 'wo':
      return f * cfg.d_ff ** -0.5;
  }
}

export interface InitOptions {
  /** Non-negative safe integer; default 0. */
  seed?: number;
}

/** Every stored parameter (HF names, tied aliases excluded), freshly initialised, as float32. */
export function initT5Weights(cfg: T5Config, opts: InitOptions = {}): Map<string, Float32Array> {
  const seed = checkSeed(opts.seed ?? 0);
  const out = new Map<string, Float32Array>();
  for (const spec of storedParameters(cfg)) {
    const n = spec.shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    const scale = initScale(spec, cfg);
    if (spec.kind === 'layer_norm') data.fill(scale);
    else new NormalStream(seed, spec.name).fill(data, scale);
    out.set(spec.name, data);
  }
  return out;
}

/** initT5Weights with shapes, ready for writeSafetensors. */
export function initT5Tensors(cfg: T5Config, opts: InitOptions = {}): Map<string, HostTensor> {
  const weights = initT5Weights(cfg, opts);
  const out = new Map<string, HostTensor>();
  for (const spec of storedParameters(cfg)) out.set(spec.name, { shape: spec.shape, data: weights.get(spec.name)! });
  return out;
}

function checkSeed(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`init: seed must be a non-negative integer below 2^53, got ${seed}`);
  return seed;
}

// ---------------------------------------------------------------------------------------------------------------
// The generator

const TWO_32 = 2 ** 32;
const TWO_26 = 2 ** 26;
const TWO_53 = 2 ** 53;
const GOLDEN = 0x9e3779b9;

/** MurmurHash3's 32-bit finaliser: a bijection that mixes every input bit into every output bit. */
export function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) h = Math.imul(h ^ byte, 0x01000193);
  return h >>> 0;
}

/** xoshiro128** over a state seeded by SplitMix32 from (seed, name); see the file header. */
export class NormalStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, name: string) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_32) >>> 0;
    let weyl = fmix32(lo ^ fmix32(hi ^ GOLDEN) ^ fnv1a32(name));
    const next = (): number => {
      weyl = (weyl + GOLDEN) >>> 0;
      return fmix32(weyl);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    // xoshiro's one forbidden state; fmix32 of four distinct Weyl values cannot all be 0, but be explicit.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A stream from a raw xoshiro128** state (for checking against the reference implementation's outputs). */
  static fromState(state: readonly [number, number, number, number]): NormalStream {
    const s = new NormalStream(0, '');
    [s.s0, s.s1, s.s2, s.s3] = state.map((x) => x >>> 0) as [number, number, number, number];
    return s;
  }

  /** Next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextUniform(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * TWO_26 + b) / TWO_53;
  }

  /** Fill `out` with normal(0, std) samples, Box-Muller pairs in order. */
  fill(out: Float32Array, std: number): void {
    const n = out.length;
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - this.nextUniform()));
      const theta = 2 * Math.PI * this.nextUniform();
      out[i] = r * Math.cos(theta) * std;
      if (i + 1 < n) out[i + 1] = r * Math.sin(theta) * std;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
