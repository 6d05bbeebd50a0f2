import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu, initGpu } from '../engine/gpu.ts';
import { memory, setPoison, tensor, type Tensor } from '../engine/tensor.ts';
import { backward, noGrad, zeroGrad } from '../engine/autograd.ts';
import { rt } from '../engine/runtime.ts';
import { add } from '../kernels/elementwise.ts';
import { matmul } from '../kernels/matmul.ts';
import { softmax } from '../kernels/softmax.ts';
import { dropout as dropoutOp } from '../kernels/random.ts';
import {
  attention,
  attentionBackwardRef,
  attentionRef,
  setAttentionPath,
  subgroupKernelsUsable,
  type AttentionOptions,
  type AttentionPath,
  type AttentionRefInput,
} from '../kernels/attention.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { mulberry32 } from './helpers/random-data.ts';

const F32_MIN = -3.4028234663852886e38; // torch.finfo(torch.float32).min, HF's mask value

beforeAll(async () => {
  await initGpu();
  setPoison(true);
});
afterAll(() => setPoison(false));

// deterministic uniform(-1, 1) data (mulberry32)
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() * 2 - 1;
}
function rand(n: number, r: () => number, amp = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * amp;
  return a;
}

interface Case {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
  bias?: 'shared' | 'batched';
  /** 'pad': HF padding mask [B,1,1,Lk]; 'full': [B,1,Lq,Lk]; 'allpad': batch 0 entirely padding */
  mask?: 'pad' | 'full' | 'allpad';
  causal?: boolean;
  scale?: number;
  /** dropout rate on the probabilities (seed and an unaligned offset from the case's seed) */
  dropout?: number;
  /** q, k, v, out and the gradients as [B, L, H, D] */
  blhd?: boolean;
}

interface Built {
  ref: AttentionRefInput;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  bias?: Tensor;
  mask?: Tensor;
  opts: AttentionOptions;
}

/** [B, H, L, D] data as [B, L, H, D] (swap = the other way round when `back`). */
function swapHeads(x: ArrayLike<number>, B: number, H: number, L: number, D: number, back = false): Float32Array {
  const out = new Float32Array(B * H * L * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < L; i++)
        for (let d = 0; d < D; d++) {
          const bhld = ((b * H + h) * L + i) * D + d;
          const blhd = ((b * L + i) * H + h) * D + d;
          if (back) out[bhld] = x[blhd]!;
          else out[blhd] = x[bhld]!;
        }
  return out;
}

/** A GPU result of q's (L = Lq) or k's (L = Lk) layout as [B, H, L, D], to compare with the reference. */
function asBhld(c: Case, x: ArrayLike<number>, L: number): ArrayLike<number> {
  return c.blhd ? swapHeads(x, c.B, c.H, L, c.D, true) : x;
}

function build(c: Case, seed: number, grad = false): Built {
  const r = rng(seed);
  const { B, H, Lq, Lk, D } = c;
  // amplitude 1 for q, k gives scores of size ~sqrt(D)/3: peaked but not one-hot softmax rows
  const qd = rand(B * H * Lq * D, r, 0.5);
  const kd = rand(B * H * Lk * D, r, 0.5);
  const vd = rand(B * H * Lk * D, r);
  const ref: AttentionRefInput = { q: qd, k: kd, v: vd, dims: { B, H, Lq, Lk, D }, causal: c.causal, scale: c.scale };
  const onGpu = (data: Float32Array, L: number) =>
    c.blhd
      ? tensor(swapHeads(data, B, H, L, D), [B, L, H, D], { requiresGrad: grad })
      : tensor(data, [B, H, L, D], { requiresGrad: grad });
  const out: Built = {
    ref,
    q: onGpu(qd, Lq),
    k: onGpu(kd, Lk),
    v: onGpu(vd, Lk),
    opts: { causal: c.causal, scale: c.scale, layout: c.blhd ? 'BLHD' : undefined },
  };
  if (c.dropout !== undefined) {
    // an offset that is not a multiple of 4 starts inside a Philox counter
    ref.dropout = { rate: c.dropout, seed: 1000 + seed, offset: 4 * seed + 3 };
    out.opts.dropout = ref.dropout;
  }
  if (c.bias) {
    const shape = [c.bias === 'shared' ? 1 : B, H, Lq, Lk];
    const data = rand(shape.reduce((a, b) => a * b), r, 2);
    ref.bias = { data, shape };
    out.bias = tensor(data, shape, { requiresGrad: grad });
    out.opts.bias = out.bias;
  }
  if (c.mask) {
    // HF: (1 - attention_mask) * finfo.min; valid lengths vary per batch element
    const shape = c.mask === 'full' ? [B, 1, Lq, Lk] : [B, 1, 1, Lk];
    const rows = c.mask === 'full' ? Lq : 1;
    const data = new Float32Array(B * rows * Lk);
    for (let b = 0; b < B; b++)
      for (let i = 0; i < rows; i++) {
        const valid = c.mask === 'allpad' && b === 0 ? 0 : Math.max(1, Lk - ((b * 3 + i) % Math.max(1, Math.ceil(Lk / 2))));
        for (let j = valid; j < Lk; j++) data[(b * rows + i) * Lk + j] = F32_MIN;
      }
    ref.mask = { data, shape };
    out.mask = tensor(data, shape);
    out.opts.mask = out.mask;
  }
  return out;
}

function disposeAll(x: Built): void {
  for (const t of [x.q, x.k, x.v, x.bias, x.mask]) t?.dispose();
}

/** max |a - b| / max(max |b|, 0.01): error relative to the largest reference value. The floor is for references
 * that are zero by cancellation (one key: a softmax of one score has no gradient, so dq = dk = 0 exactly),
 * where the kernels' f32 rounding of the two cancelling terms leaves ~1e-8; a real error is O(0.1) there. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  return relMaxErr(a, b, 0.01);
}

// Forward and gradients are f32 dot products of length D and Lk with an online softmax: errors of a few
// f32 ulps times sqrt(length) against float64, far below 1e-4 of the largest value for these sizes; a
// wrong index or a missed key moves a value by O(0.1), so 1e-4 cannot pass by accident.
const FWD_TOL = 1e-4;
const GRAD_TOL = 2e-4;

// Compile cost: bias, mask, causal, scale and dBias are uniform data, so each kernel family compiles one
// forward, one dq and one dkv pipeline per head dim, whatever the options (lavapipe's LLVM takes seconds
// to tens of seconds per subgroup pipeline at D = 64, with Mesa's shader cache off as on a fresh machine).
// Only two head dims run, each for a reason:
//   D = 16: the subgroup kernels' narrow streamed loads (2 floats per lane, vec2) and cheap compiles; it
//           carries most option combinations, the finite-difference cases and the buffer-leak test;
//   D = 64: T5's head dim, the vec4 streamed loads, the register-heavy unrolled code the model runs.
// Every case runs both families (the pipelines are shared, so that costs run time only).
const CASES: Case[] = [
  { B: 2, H: 3, Lq: 7, Lk: 13, D: 16 },
  { B: 1, H: 1, Lq: 1, Lk: 1, D: 16 },
  { B: 2, H: 1, Lq: 33, Lk: 33, D: 16, bias: 'shared', causal: true },
  { B: 3, H: 3, Lq: 13, Lk: 13, D: 16, bias: 'shared', mask: 'allpad' }, // a fully padded sequence
  { B: 2, H: 3, Lq: 7, Lk: 33, D: 16, bias: 'batched', mask: 'full', scale: 0.125 },
  { B: 1, H: 3, Lq: 70, Lk: 129, D: 16, bias: 'shared', mask: 'pad', causal: true }, // several workgroups
  { B: 2, H: 3, Lq: 13, Lk: 7, D: 64, mask: 'pad' }, // cross-attention (no bias, as T5's)
  { B: 2, H: 3, Lq: 1, Lk: 33, D: 64, bias: 'shared', mask: 'pad', causal: true }, // decoder step, KV cache
  { B: 2, H: 3, Lq: 33, Lk: 33, D: 64, bias: 'shared', mask: 'pad', causal: true }, // decoder self-attention
  { B: 1, H: 1, Lq: 70, Lk: 129, D: 64, bias: 'shared', mask: 'pad' }, // encoder, several workgroups
  { B: 2, H: 2, Lq: 9, Lk: 9, D: 64, bias: 'batched', causal: true, scale: 0.125 }, // no mask at D = 64
  // heads interleaved ([B, L, H, D]: a projection's output reshaped)
  { B: 2, H: 3, Lq: 7, Lk: 13, D: 16, blhd: true },
  { B: 1, H: 3, Lq: 70, Lk: 129, D: 16, bias: 'shared', mask: 'pad', causal: true, blhd: true },
  { B: 2, H: 3, Lq: 1, Lk: 33, D: 64, bias: 'shared', mask: 'pad', causal: true, blhd: true },
  { B: 2, H: 3, Lq: 13, Lk: 7, D: 64, mask: 'pad', blhd: true },
  // a few queries per head (decoding's cross-attention over beams: the forward's few-rows kernel); more rows
  // than a plain workgroup's 64 in all, so its flattened rows cross heads and batches inside one workgroup
  { B: 3, H: 2, Lq: 4, Lk: 37, D: 64, mask: 'pad', blhd: true },
  { B: 5, H: 7, Lq: 3, Lk: 10, D: 16, bias: 'batched', mask: 'full', causal: true },
  { B: 2, H: 3, Lq: 2, Lk: 5, D: 16, bias: 'shared', mask: 'allpad', scale: 0.125 },
  // dropout on the probabilities (a compile-time variant: one more forward, dq and dkv pipeline per D)
  { B: 2, H: 3, Lq: 7, Lk: 13, D: 16, dropout: 0.1 },
  { B: 1, H: 1, Lq: 1, Lk: 1, D: 16, dropout: 0.5 },
  { B: 2, H: 1, Lq: 33, Lk: 33, D: 16, bias: 'shared', causal: true, dropout: 0.3 },
  { B: 3, H: 3, Lq: 13, Lk: 13, D: 16, bias: 'shared', mask: 'allpad', dropout: 0.2 },
  { B: 2, H: 3, Lq: 7, Lk: 33, D: 16, bias: 'batched', mask: 'full', scale: 0.125, dropout: 0.5, blhd: true },
  { B: 1, H: 3, Lq: 70, Lk: 129, D: 16, bias: 'shared', mask: 'pad', causal: true, dropout: 0.1 },
  { B: 2, H: 2, Lq: 5, Lk: 11, D: 16, mask: 'pad', dropout: 1 }, // everything dropped: zeros
  { B: 2, H: 3, Lq: 33, Lk: 33, D: 64, bias: 'shared', mask: 'pad', causal: true, dropout: 0.1, blhd: true }, // T5 training
  { B: 2, H: 3, Lq: 13, Lk: 7, D: 64, mask: 'pad', dropout: 0.1, blhd: true },
];

/** Runs `fn` with the kernel family pinned, or skips when the adapter lacks it. */
function casesByPath(cases: Case[], define: (c: Case, n: number, path: AttentionPath) => void): void {
  for (const path of ['subgroup', 'plain'] as const) {
    describe(`${path} kernels`, () => {
      for (const [n, c] of cases.entries()) define(c, n, path);
    });
  }
}

async function withPath<T>(path: AttentionPath, D: number, skip: () => void, fn: () => Promise<T>): Promise<T | undefined> {
  if (path === 'subgroup' && !subgroupKernelsUsable(D)) {
    skip();
    return undefined;
  }
  setAttentionPath(path);
  try {
    return await fn();
  } finally {
    setAttentionPath('auto');
  }
}

function label(c: Case): string {
  const f = [
    c.bias && `bias:${c.bias}`, c.mask && `mask:${c.mask}`, c.causal && 'causal', c.scale && `scale:${c.scale}`,
    c.dropout !== undefined && `dropout:${c.dropout}`, c.blhd && 'BLHD',
  ];
  return `B${c.B} H${c.H} Lq${c.Lq} Lk${c.Lk} D${c.D} ${f.filter(Boolean).join(' ')}`;
}

describe('attention forward', () => {
  casesByPath(CASES, (c, n, path) => {
    it(`matches the float64 reference: ${label(c)}`, (ctx) =>
      withPath(path, c.D, () => ctx.skip(), async () => {
        const x = build(c, 100 + n);
        const out = attention(x.q, x.k, x.v, x.opts);
        expect(out.shape).toEqual(c.blhd ? [c.B, c.Lq, c.H, c.D] : [c.B, c.H, c.Lq, c.D]);
        const got = asBhld(c, await out.toArray(), c.Lq);
        const want = attentionRef(x.ref);
        expect(relErr(got, want)).toBeLessThan(FWD_TOL);
        out.dispose();
        disposeAll(x);
      }));
  });

  it('averages v uniformly over a fully padded row, as HF does with finfo.min', async () => {
    const x = build({ B: 2, H: 1, Lq: 3, Lk: 5, D: 16, bias: 'shared', mask: 'allpad' }, 7);
    const got = await attention(x.q, x.k, x.v, x.opts).toArray();
    const vd = x.ref.v;
    for (let d = 0; d < 16; d++) {
      let mean = 0;
      for (let j = 0; j < 5; j++) mean += vd[j * 16 + d]! / 5;
      expect(Math.abs(got[d]! - mean)).toBeLessThan(1e-6);
    }
    disposeAll(x);
  });

  it('rejects bad shapes, dtypes and options naming the op and shapes', () => {
    const q = tensor(new Float32Array(2 * 3 * 4 * 8), [2, 3, 4, 8]);
    const k = tensor(new Float32Array(2 * 3 * 5 * 8), [2, 3, 5, 8]);
    const k2 = tensor(new Float32Array(2 * 3 * 5 * 4), [2, 3, 5, 4]);
    expect(() => attention(q, k2, k2)).toThrow(/attention: .*q \[2, 3, 4, 8\], k \[2, 3, 5, 4\]/);
    expect(() => attention(q, k, k2)).toThrow(/attention: q \[B, H, Lq, D\]/);
    const bad = tensor(new Float32Array(3 * 4 * 4), [1, 3, 4, 4]);
    expect(() => attention(q, k, k, { bias: bad })).toThrow(/attention: bias must be \[1 \| 2, 3, 4, 5\], got \[1, 3, 4, 4\]/);
    expect(() => attention(q, k, k, { mask: bad })).toThrow(/attention: mask must broadcast/);
    expect(() => attention(k, q, q, { causal: true })).toThrow(/causal needs Lq <= Lk/);
    const odd = tensor(new Float32Array(6), [1, 1, 1, 6]);
    expect(() => attention(odd, odd, odd)).toThrow(/head dim 6/);
    const ids = tensor(new Int32Array(2 * 3 * 4 * 8), [2, 3, 4, 8]);
    expect(() => attention(ids, k, k)).toThrow(/q must be f32, got i32/);
    const gone = tensor(new Float32Array(2 * 3 * 5 * 8), [2, 3, 5, 8]);
    gone.dispose();
    expect(() => attention(q, gone, k)).toThrow(/k is a disposed tensor/);
    const drop = (rate: number, seed = 1) => ({ dropout: { rate, seed, offset: 0 } });
    expect(() => attention(q, k, k, drop(1.5))).toThrow(/attention: dropout rate must be in \[0, 1\], got 1.5/);
    expect(() => attention(q, k, k, drop(0.1, -1))).toThrow(/attention: dropout: seed must be an integer/);
    expect(() => attention(q, k, k, { layout: 'BHDL' as AttentionOptions['layout'] })).toThrow(/layout must be 'BHLD' or 'BLHD', got BHDL/);
    expect(() => attention(q, k2, k2, { layout: 'BLHD' })).toThrow(/attention: q \[B, Lq, H, D\] and k, v \[B, Lk, H, D\] disagree/);
    for (const t of [q, k, k2, bad, odd, ids]) t.dispose();
  });
});

// The unfused composition T5 trained with before: scores by batched matmul, softmax with the additive mask
// (causal keys as finfo.min), kernels/random.ts's dropout on the probabilities, matmul with v. The fused op
// draws the same mask from the same stream positions, so only float rounding separates the two.
describe('attention dropout equals softmax, dropout, matmul', () => {
  // D = 16 only: the dropout pipelines at T5's D = 64 are compiled (and checked against the reference) above
  const EQ_CASES: Case[] = [
    { B: 2, H: 3, Lq: 7, Lk: 13, D: 16, bias: 'shared', mask: 'pad', dropout: 0.1 },
    { B: 2, H: 3, Lq: 33, Lk: 33, D: 16, bias: 'shared', mask: 'pad', causal: true, dropout: 0.1 },
    { B: 1, H: 2, Lq: 5, Lk: 31, D: 16, mask: 'full', dropout: 0.5 },
  ];
  casesByPath(EQ_CASES, (c, n, path) => {
    it(`forward and gradients: ${label(c)}`, (ctx) =>
      withPath(path, c.D, () => ctx.skip(), async () => {
        const x = build(c, 700 + n, true);
        const w = tensor(rand(c.B * c.H * c.Lq * c.D, rng(800 + n)), [c.B, c.H, c.Lq, c.D]);
        const fused = attention(x.q, x.k, x.v, x.opts);
        backward(fused, { gradient: w });
        const params = [x.q, x.k, x.v, ...(x.bias ? [x.bias] : [])];
        const fusedGrads = await Promise.all(params.map((t) => t.grad!.toArray()));
        zeroGrad(params);

        let scores = matmul(x.q, x.k, { transB: true });
        if (x.bias) scores = add(scores, x.bias);
        let mask = x.mask;
        if (c.causal) {
          const cm = new Float32Array(c.Lq * c.Lk);
          for (let i = 0; i < c.Lq; i++) for (let j = i + c.Lk - c.Lq + 1; j < c.Lk; j++) cm[i * c.Lk + j] = F32_MIN;
          const causal = tensor(cm, [1, 1, c.Lq, c.Lk]);
          mask = mask ? add(mask, causal) : causal;
        }
        const d = x.opts.dropout!;
        const probs = dropoutOp(softmax(scores, { mask }), d.rate, { seed: d.seed, offset: d.offset });
        const unfused = matmul(probs, x.v);
        backward(unfused, { gradient: w });
        expect(relErr(await fused.toArray(), await unfused.toArray())).toBeLessThan(FWD_TOL);
        for (const [i, t] of params.entries()) expect(relErr(fusedGrads[i]!, await t.grad!.toArray())).toBeLessThan(GRAD_TOL);
        for (const t of [fused, unfused, w]) t.dispose();
        disposeAll(x);
      }));
  });
});

/** Gradients of sum(out · w) with w [B, H, Lq, D], all returned as [B, H, L, D] whatever the layout. */
async function gpuGrads(c: Case, x: Built, w: Float32Array) {
  const out = attention(x.q, x.k, x.v, x.opts);
  const g = c.blhd ? swapHeads(w, c.B, c.H, c.Lq, c.D) : w;
  backward(out, { gradient: tensor(g, out.shape) });
  const res = {
    dq: asBhld(c, await x.q.grad!.toArray(), c.Lq),
    dk: asBhld(c, await x.k.grad!.toArray(), c.Lk),
    dv: asBhld(c, await x.v.grad!.toArray(), c.Lk),
    dbias: x.bias ? await x.bias.grad!.toArray() : null,
  };
  out.dispose();
  return res;
}

describe('attention backward', () => {
  casesByPath(CASES, (c, n, path) => {
    it(`q, k, v, bias gradients match the float64 reference: ${label(c)}`, (ctx) =>
      withPath(path, c.D, () => ctx.skip(), async () => {
        const x = build(c, 200 + n, true);
        const w = rand(c.B * c.H * c.Lq * c.D, rng(300 + n));
        const got = await gpuGrads(c, x, w);
        const want = attentionBackwardRef(x.ref, w);
        expect(relErr(got.dq, want.dq)).toBeLessThan(GRAD_TOL);
        expect(relErr(got.dk, want.dk)).toBeLessThan(GRAD_TOL);
        expect(relErr(got.dv, want.dv)).toBeLessThan(GRAD_TOL);
        if (c.bias) expect(relErr(got.dbias!, want.dbias!)).toBeLessThan(GRAD_TOL);
        disposeAll(x);
      }));
  });

  // Central differences of the float64 reference forward, loss = sum(out · W). With h = 1e-5 the
  // truncation error is O(h²·f''') ~ 1e-10 and rounding ~ 1e-16/h ~ 1e-11: the finite differences are
  // exact to ~1e-9, so the bound (2e-4 of the largest gradient) is the f32 error of the GPU backward.
  // With dropout the mask is a fixed function of (seed, offset), so the loss is smooth in every input.
  const FD_CASES: Case[] = [
    { B: 2, H: 1, Lq: 3, Lk: 5, D: 16, bias: 'shared', mask: 'pad' },
    { B: 1, H: 3, Lq: 4, Lk: 4, D: 16, bias: 'batched', causal: true, scale: 0.5 },
    { B: 2, H: 1, Lq: 3, Lk: 7, D: 16, bias: 'shared', mask: 'pad', dropout: 0.3, blhd: true },
    { B: 1, H: 3, Lq: 5, Lk: 5, D: 16, bias: 'batched', causal: true, dropout: 0.5 },
  ];
  casesByPath(FD_CASES, (c, n, path) => {
    it(`gradients match central finite differences: ${label(c)}`, (ctx) =>
      withPath(path, c.D, () => ctx.skip(), async () => {
      const x = build(c, 400 + n, true);
      const w = rand(c.B * c.H * c.Lq * c.D, rng(500 + n));
      const got = await gpuGrads(c, x, w);
      const loss = (r: AttentionRefInput) => {
        const o = attentionRef(r);
        let s = 0;
        for (let i = 0; i < o.length; i++) s += o[i]! * w[i]!;
        return s;
      };
      const h = 1e-5;
      const fd = (arr: Float64Array | Float32Array, apply: (a: Float64Array) => AttentionRefInput) => {
        const g = new Float64Array(arr.length);
        const a = Float64Array.from(arr);
        for (let i = 0; i < a.length; i++) {
          const x0 = a[i]!;
          a[i] = x0 + h;
          const up = loss(apply(a));
          a[i] = x0 - h;
          const down = loss(apply(a));
          a[i] = x0;
          g[i] = (up - down) / (2 * h);
        }
        return g;
      };
      const r = x.ref;
      expect(relErr(got.dq, fd(r.q as Float32Array, (a) => ({ ...r, q: a })))).toBeLessThan(GRAD_TOL);
      expect(relErr(got.dk, fd(r.k as Float32Array, (a) => ({ ...r, k: a })))).toBeLessThan(GRAD_TOL);
      expect(relErr(got.dv, fd(r.v as Float32Array, (a) => ({ ...r, v: a })))).toBeLessThan(GRAD_TOL);
      const b = r.bias!;
      const fdb = fd(b.data as Float32Array, (a) => ({ ...r, bias: { data: a, shape: b.shape } }));
      expect(relErr(got.dbias!, fdb)).toBeLessThan(GRAD_TOL);
      disposeAll(x);
    }));
  });

  // Scores over one storage binding (the limit forced down here): the backward runs on batch slices whose scores
  // fit, the dropout stream continued across them; when not even one input's fit, the subgroup dq kernel stores
  // nothing and the plain dkv kernel recomputes (a bias gradient cannot arise there: the bias [1, H, Lq, Lk] is as
  // large as one input's scores, so it could not be bound either).
  it('over the storage binding limit: batch slices, or dK, dV recomputed without stored scores', (ctx) =>
    withPath('subgroup', 16, () => ctx.skip(), async () => {
      const limits = gpu().limits as { maxStorageBufferBindingSize: number };
      const saved = limits.maxStorageBufferBindingSize;
      // scores (B·H·33·33) larger than q, k, v, out and the bias, so that only they are over the limit
      const c: Case = { B: 3, H: 3, Lq: 33, Lk: 33, D: 16, mask: 'pad', causal: true, dropout: 0.1 };
      const one = c.H * c.Lq * c.Lk * 4;
      const check = async (cc: Case, seed: number) => {
        const x = build(cc, seed, true);
        const w = rand(cc.B * cc.H * cc.Lq * cc.D, rng(seed + 1));
        try {
          const got = await gpuGrads(cc, x, w);
          const want = attentionBackwardRef(x.ref, w);
          expect(relErr(got.dq, want.dq), `${label(cc)} dq`).toBeLessThan(GRAD_TOL);
          expect(relErr(got.dk, want.dk), `${label(cc)} dk`).toBeLessThan(GRAD_TOL);
          expect(relErr(got.dv, want.dv), `${label(cc)} dv`).toBeLessThan(GRAD_TOL);
          if (cc.bias) expect(relErr(got.dbias!, want.dbias!), `${label(cc)} dbias`).toBeLessThan(GRAD_TOL);
        } finally {
          disposeAll(x);
        }
      };
      try {
        // two inputs' scores fit: slices of 2 and 1
        limits.maxStorageBufferBindingSize = 2 * one;
        await check(c, 700);
        await check({ ...c, bias: 'shared' }, 702);
        await check({ ...c, bias: 'shared', blhd: true }, 704);
        // one input: nothing to slice, the scores are recomputed
        limits.maxStorageBufferBindingSize = one - 4;
        await check({ ...c, B: 1 }, 706);
      } finally {
        limits.maxStorageBufferBindingSize = saved;
      }
    }));

  it('keeps no buffers after backward or without a graph', async () => {
    const c: Case = { B: 2, H: 3, Lq: 7, Lk: 13, D: 16, bias: 'shared', mask: 'pad', causal: true };
    const x = build(c, 600, true);
    const w = tensor(rand(c.B * c.H * c.Lq * c.D, rng(601)), [c.B, c.H, c.Lq, c.D]);
    const step = () => {
      const out = attention(x.q, x.k, x.v, x.opts);
      backward(out, { gradient: w });
      out.dispose();
      zeroGrad([x.q, x.k, x.v, x.bias!]);
      noGrad(() => attention(x.q, x.k, x.v, x.opts)).dispose();
    };
    step();
    await rt().sync();
    const before = memory().bytesLive;
    for (let i = 0; i < 5; i++) step();
    await rt().sync();
    expect(memory().bytesLive).toBe(before);
    w.dispose();
    disposeAll(x);
  });
});
