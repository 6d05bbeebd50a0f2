// matmul: C = op(A) · op(B) (+ bias) (then relu or gelu), f32, batched with broadcasting, and its backward.
//
//   a: [..., M, K] ([..., K, M] with transA)    b: [..., K, N] ([..., N, K] with transB)    out: [..., M, N]
//
// Batch dims broadcast as in NumPy (matmul-problem.ts). Tensors larger than maxStorageBufferBindingSize are bound
// in ranges (matmul-dispatch.ts); an output over maxBufferSize fails with an error naming the limit.
//
// Backward: dA = dC · op(B)ᵀ and dB = op(A)ᵀ · dC computed by this same kernel with transpose flags (nothing is
// transposed in memory), summed over broadcast batch dims; dBias = column sums of dC. With an activation the
// gradient first goes through it: relu from the output itself, gelu from the pre-activation, which the
// epilogue writes as a second output only when a gradient will be needed. A weight shared by a batch gets its
// gradient as one matmul with the batch folded into K.
//
// Variants (matmul.wgsl.ts): chosen by `matmul-autotune.ts` (measured once per adapter and shape class, or a
// fixed heuristic with T5_WEBGPU_AUTOTUNE=0), forced with `forceMatmulVariant`; `matmulVariantFor` tells which
// one a shape gets. Tile sizes can be overridden through MATMUL_TUNING (matmul-spec.ts) for experiments. Every
// variant records its dispatches in the engine's runtime; the packed one's are in matmul-packed.ts.
import { isGradEnabled } from '../engine/autograd.ts';
import { gpu } from '../engine/gpu.ts';
import { platform } from '../engine/platform.ts';
import { rt } from '../engine/runtime.ts';
import { empty, tensor, type Shape, Tensor } from '../engine/tensor.ts';
import { recordOp } from './record-op.ts';
import { sumTo } from './reduce.ts';
import { add } from './elementwise.ts';
import { ewDispatch } from './elementwise-dispatch.ts';
import { type Activation, type MatmulKernelSpec, type MatmulVariant } from './matmul.wgsl.ts';
import { AUTOTUNE_LAUNCH_NAME, AutotuneBusyError, chooseMatmulVariant, type MeasureFn, type TuneProblem, type VariantChoice } from './matmul-autotune.ts';
import { dispatchTiles, matmulBindingLimits, type Launch } from './matmul-dispatch.ts';
import { dispatchPacked } from './matmul-packed.ts';
import { problemOf, type Problem } from './matmul-problem.ts';
import { eligibleMatmulVariants, specFor } from './matmul-spec.ts';
import { gemvMaxRows } from './matmul-gemv.wgsl.ts';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** [N], added to every row before the activation */
  bias?: Tensor;
  activation?: Activation;
  /** a tensor of the output's shape added after the activation: `residual + act(op(a) op(b) + bias)`, in the
   * kernel's store when no gradient is recorded (a transformer's residual connection: one kernel, not two),
   * else as a separate `add` that autograd records (and apart where that is faster: `residualApart`) */
  residual?: Tensor;
}

// ---------------------------------------------------------------------------------------------------------
// the op

function dispatchProblem(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch): void {
  if (p.M === 0 || p.N === 0 || p.nb === 0 || p.outer.length === 0) return;
  const split = kSplitFor(p, spec, t);
  if (split) dispatchKRanges(name, p, spec, t, split);
  else if (spec.variant === 'packed') dispatchPacked(name, p, spec, t);
  else dispatchTiles(name, p, spec, t);
}

/** The most rows of A an output tile of any variant reads. */
const A_COPY_TILE_ROWS = 64;

/** A product summed over ranges of K: `step` rows of K a range; `copyA`: A's range is copied out first. */
interface KSplit {
  step: number;
  copyA: boolean;
}

/**
 * How to sum a product over ranges of K when its operands do not fit one storage binding, for the two forms
 * where a range of K is a contiguous block of B's rows (null when they fit, or for any other form):
 * - op(A) = Aᵀ with A [K, M] (a weight gradient): every output tile reads whole columns of both, which span the
 *   buffers, but a range of K is a block of A's rows too (the LM head's dW = dlogitsᵀ · h at t5-base's batch
 *   16 x 128 targets: dlogits is 251 MiB, lavapipe binds 128);
 * - A [M, K] not transposed (an input gradient, dX = dlogits · W with W [vocab, d_model]: mT5's 250,112 x 512 is
 *   489 MiB): a tile reads whole columns of B, so splitting M or N does not help, and A's range is a block of
 *   columns, copied out (a range of B's rows and a tile's rows of the copy fit a binding).
 */
function kSplitFor(p: Problem, spec: MatmulKernelSpec, t: Launch): KSplit | null {
  if (p.transB || p.nb !== 1 || p.outer.length !== 1 || t.bias || t.pre || spec.activation !== 'none') return null;
  const { maxBind, align } = matmulBindingLimits();
  // the bytes one row of K takes in the largest operand a range binds (Aᵀ's or B's), and in a range's bindings
  const operandRowBytes = 4 * (p.transA ? Math.max(p.M, p.N) : p.N);
  if (p.K * operandRowBytes <= maxBind) return null;
  const rangeRowBytes = p.transA ? operandRowBytes : 4 * Math.max(p.N, A_COPY_TILE_ROWS);
  // a binding window starts on an aligned offset, up to one alignment before the range
  const step = Math.floor((maxBind - align) / rangeRowBytes);
  return step >= 1 ? { step, copyA: !p.transA } : null;
}

/**
 * out = Σ over K ranges of op(A)_range · B_range, each range's product added to the previous sum as a residual.
 * B's rows of a range are bound in place, and so are Aᵀ's; A's columns of a range are strided, so they are first
 * copied row by row into a contiguous [M, range] with buffer copies (which bind nothing).
 */
function dispatchKRanges(name: string, p: Problem, spec: MatmulKernelSpec, t: Launch, split: KSplit): void {
  const o = p.outer[0]!;
  let sum = t.residual;
  for (let k0 = 0; k0 < p.K; k0 += split.step) {
    const K = Math.min(split.step, p.K - k0);
    let a = t.a;
    let aBase = o.a.base + k0 * p.M;
    if (split.copyA) {
      a = empty([p.M, K]);
      for (let m = 0; m < p.M; m++) rt().copy(t.a.buffer, 4 * (o.a.base + m * p.K + k0), a.buffer, 4 * m * K, 4 * K);
      aBase = 0;
    }
    const sub: Problem = {
      ...p,
      K,
      outer: [{ a: { base: aBase }, b: { base: o.b.base + k0 * p.N }, c: o.c }],
      desc: `${p.desc} (K ${split.copyA ? 'columns' : 'rows'} ${k0}..${k0 + K - 1})`,
    };
    const target = k0 + K >= p.K ? t.out : empty(p.outShape);
    const s = specFor(spec.variant, sub, false, 'none', false, sum !== undefined);
    // a range fits (a copy of A splits by rows if it must), so this does not split K again
    dispatchProblem(name, sub, s, { a, b: t.b, residual: sum, out: target });
    if (a !== t.a) a.dispose();
    if (sum && sum !== t.residual) sum.dispose();
    sum = target;
  }
}

/**
 * Whether a residual is added by a kernel of its own rather than in the product's store. Up to 16 rows the
 * subgroup kernel's main loop slows down with a residual in its store, more so for longer K (LLVM's register
 * allocation, we suppose). Decoding's products at batch 16 on lavapipe, residual in the store (8-row tile) /
 * product (16-row tile) + add, one process, interleaved, medians of 9 x 30 calls, four runs: 16x2048x512ᵀ 1.67 /
 * 1.33, 1.99 / 1.61, 1.22 / 1.02, 1.81 / 1.45 ms; 16x512x512ᵀ 0.62 / 0.56, 0.74 / 0.62, 0.50 / 0.50, 0.58 /
 * 0.60. At 64 rows the two were within 5% either way, and 1-4 rows (the gemv kernel) are faster fused.
 */
function residualApart(variant: MatmulVariant, p: Problem): boolean {
  return variant === 'subgroup' && p.M <= 16;
}

/** residual + the product without it, as two kernels. */
function addResidualApart(a: Tensor, b: Tensor, opts: MatmulOptions, residual: Tensor): Tensor {
  const product = matmul(a, b, { ...opts, residual: undefined });
  const sum = add(residual, product);
  product.dispose();
  return sum;
}

function checkF32(desc: string, t: Tensor, what: string): void {
  if (t.dtype !== 'f32') throw new TypeError(`${desc}: ${what} must be f32, got ${t.describe()}`);
}

function tuneProblemOf(p: Problem): TuneProblem {
  return { M: p.M, N: p.N, K: p.K, batch: p.nb * p.outer.length, transA: p.transA, transB: p.transB };
}

/** Flops of one timing run during autotuning: enough to time, small enough to keep tuning brief. */
const TUNE_FLOPS = 1e9;

/**
 * The problem timed for a class: the same K and (up to the flops budget) M, since the variants differ in how
 * they use rows (the packed kernel's dispatches cover all rows); batches first, then columns, then rows cut down.
 */
function tuneShapes(p: Problem) {
  const K = Math.max(1, p.K);
  let nb = p.nb * p.outer.length;
  let M = p.M;
  let N = p.N;
  const flops = () => 2 * nb * M * N * K;
  if (flops() > TUNE_FLOPS) nb = Math.max(1, Math.floor(TUNE_FLOPS / (2 * M * N * K)));
  if (flops() > TUNE_FLOPS) N = Math.min(N, Math.max(512, Math.floor(TUNE_FLOPS / (2 * M * K) / 64) * 64));
  if (flops() > TUNE_FLOPS) M = Math.min(M, Math.max(64, Math.floor(TUNE_FLOPS / (2 * N * K))));
  const aShape = nb > 1 ? [nb, ...(p.transA ? [p.K, M] : [M, p.K])] : p.transA ? [p.K, M] : [M, p.K];
  const batchB = nb > 1 && (p.bS1 !== 0 || p.bS2 !== 0);
  const bMat = p.transB ? [N, p.K] : [p.K, N];
  const bShape = batchB ? [nb, ...bMat] : bMat;
  return { aShape, bShape, shape: `${nb > 1 ? `${nb}x` : ''}${M}x${p.K}x${N}` };
}

/** Attempts at a timing with nothing else recorded meanwhile; between them the job waits 20, 40, ... ms. */
const ALONE_ATTEMPTS = 6;

/** ms of one `run` to GPU completion, timed while no other code recorded work (see matmul-autotune.ts). */
async function timeAlone(run: () => void, shape: string): Promise<number> {
  const r = rt();
  for (let attempt = 0; attempt < ALONE_ATTEMPTS; attempt++) {
    await r.sync(); // drain what others queued
    const before = r.counters.dispatches;
    const t0 = performance.now();
    run();
    const own = r.counters.dispatches - before;
    await r.sync();
    const ms = performance.now() - t0;
    if (r.counters.dispatches - before === own) return ms;
    await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt));
  }
  throw new AutotuneBusyError(`matmul autotune: the device stayed busy with other work while timing ${shape}`);
}

function measureFor(p: Problem): MeasureFn {
  const { aShape, bShape, shape } = tuneShapes(p);
  const fn = async (variant: MatmulVariant) => {
    const q = problemOf(aShape, bShape, p.transA, p.transB);
    const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
    const a = tensor(rand(aShape.reduce((x, y) => x * y, 1)), aShape);
    const b = tensor(rand(bShape.reduce((x, y) => x * y, 1)), bShape);
    const out = empty(q.outShape);
    try {
      const spec = specFor(variant, q, false, 'none', false);
      const run = () => dispatchProblem(AUTOTUNE_LAUNCH_NAME, q, spec, { a, b, out });
      await rt().sync(); // drain other work first
      // a variant whose launch is invalid here (a binding over a limit) runs nothing and would time as the
      // fastest: its validation error drops it instead
      const device = gpu().device;
      device.pushErrorScope('validation');
      let first = Infinity;
      try {
        const t0 = performance.now();
        run(); // compiles the pipeline
        await rt().sync();
        first = performance.now() - t0;
      } finally {
        const invalid = await platform().gpuWait(() => device.popErrorScope()); // popped on every path: a scope left open would hide later errors
        if (invalid) throw new Error(`matmul autotune: variant '${variant}' is invalid for ${shape}: ${invalid.message}`);
      }
      let best = Infinity;
      const reps = first > 500 ? 1 : 3;
      for (let i = 0; i < reps; i++) best = Math.min(best, await timeAlone(run, shape));
      return best;
    } finally {
      a.dispose();
      b.dispose();
      out.dispose();
    }
  };
  return Object.assign(fn, { shape });
}

function gemvRowLimit(): number {
  return gemvMaxRows(gpu().limits.subgroupMinSize ?? 8);
}

/** Rows from which the packed kernel is the fixed choice for a plain `x W` on a CPU adapter (at 1,024 rows it went
 * either way by shape: 1024³ 49.8 / 46.7, 1024x2048x512 51.6 / 49.4, 1024x512x2048 51.5 / 51.8; 768x2048x512
 * 51.0 / 48.2). */
const PACKED_MIN_ROWS = 1536;
/** The same for `x Wᵀ` (a Linear layer's forward), where packed led from 640 rows on the Zen 4 (interleaved
 * medians, subgroup / packed): 640x512x512ᵀ 43.6 / 48.2, 768x512x512ᵀ 45.9 / 50.0, 768x512x2048ᵀ 47.4 / 52.1,
 * 1024x512x512ᵀ 44.8 / 51.8, 1024x512x2048ᵀ 47.9 / 53.5, 1280x512x2048ᵀ 48.2 / 54.9; at 512 rows they were
 * even (42.4 / 45.3, 47.2 / 48.3, 47.4 / 46.7). */
const PACKED_MIN_ROWS_WT = 768;
/** Output columns up to which it is (the LM head's 32,128 stay with subgroup: 256x512x32128ᵀ 35 / 47 GFLOP/s). */
const PACKED_MAX_COLS = 4096;

/**
 * The products where the packed kernel leads on a CPU adapter: many rows (an encoder's or a training batch's
 * tokens), a column count like a T5 projection's, no Aᵀ and no batch. On the 2-core Zen 4, GFLOP/s subgroup /
 * packed, interleaved medians: 2048x512x512ᵀ 45.7 / 51.7, 2048x512x2048ᵀ 47.7 / 53.9, 2048x2048x512ᵀ 47.8 /
 * 48.6, 2048x512x512 47.4 / 52.1, 1536x512x512ᵀ 42.9 / 52.1; 64x512x512ᵀ 27 / 15. Whole t5-small rows, 7 and 4
 * alternating runs: forward 2,740 -> 2,454 ms, train step 8,935 -> 8,531 ms (medians).
 */
function packedSuits(p: Problem): boolean {
  const minRows = p.transB ? PACKED_MIN_ROWS_WT : PACKED_MIN_ROWS;
  return p.M >= minRows && p.N <= PACKED_MAX_COLS && !p.transA && p.nb === 1 && p.outer.length === 1;
}

/**
 * The fixed choice, used with autotuning off and until a class is tuned: the subgroup kernel on a CPU adapter
 * (lavapipe, quiet machine, GFLOP/s subgroup / packed: 1024³ 26 / 26, 4096x512x2048 Bᵀ 31 / 28,
 * 2048³ 27 / 30, 64 x 256x64x256 20 / 12: equal on big products, far ahead on small ones, and recorded in the
 * runtime's batch; on a 2-core Zen 4 EPYC packed led on 2048x512x2048ᵀ, 56 / 48 GFLOP/s (interleaved
 * medians) and lost at 256 rows, 256x2048x512ᵀ 34 / 46: the packed kernel where packedSuits says so) and
 * the gemv kernel for products of up to gemvMaxRows rows (decoding one token of one sequence or 4 beams:
 * 1x512x512ᵀ 0.72 -> 0.45 ms, 1x2048x512ᵀ 2.6 -> 1.7 ms against subgroup); the
 * shared-memory tiled kernel on a GPU. Autotuning times the candidates of tuningCandidates.
 */
function heuristicFor(p: Problem, eligible: MatmulVariant[]): MatmulVariant {
  if (gpu().info.isSoftware) {
    if (packedSuits(p) && eligible.includes('packed')) return 'packed';
    if (p.M <= gemvRowLimit() && !p.transA && eligible.includes('gemv')) return 'gemv';
    if (eligible.includes('subgroup')) return 'subgroup';
    return 'regblock';
  }
  return 'tiled';
}

/**
 * The variants worth timing: all that run here, except on a CPU adapter the shared-memory tiled and the
 * register-blocked kernels (workgroup barriers are coroutine switches there: 3x and 2x slower than the subgroup
 * kernels in shared/LAVAPIPE.md and here), which would only lengthen each tuning.
 */
function tuningCandidates(p: Problem, eligible: MatmulVariant[]): MatmulVariant[] {
  const fit = eligible.filter((v) => v !== 'gemv' || p.M <= gemvRowLimit());
  if (!gpu().info.isSoftware) return fit;
  const fast = fit.filter((v) => v === 'subgroup' || v === 'packed' || v === 'gemv');
  return fast.length ? fast : fit;
}

function choose(p: Problem, tune: boolean): VariantChoice {
  const eligible = eligibleMatmulVariants();
  return chooseMatmulVariant(tuneProblemOf(p), eligible, tune ? measureFor(p) : undefined, heuristicFor(p, eligible), tuningCandidates(p, eligible));
}

/** The variant matmul would run for these shapes now, and why ('subgroup (autotuned)', 'tiled (forced)', ...). */
export function matmulVariantFor(aShape: Shape, bShape: Shape, opts: { transA?: boolean; transB?: boolean } = {}): string {
  const p = problemOf(aShape, bShape, opts.transA ?? false, opts.transB ?? false);
  const c = choose(p, false);
  return `${c.variant} (${c.source})`;
}

export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const activation = opts.activation ?? 'none';
  const p = problemOf(a.shape, b.shape, transA, transB);
  checkF32(p.desc, a, 'a');
  checkF32(p.desc, b, 'b');
  if (!['none', 'relu', 'gelu'].includes(activation)) {
    throw new RangeError(`${p.desc}: unknown activation '${activation}' (none, relu or gelu)`);
  }
  const bias = opts.bias;
  if (bias) {
    checkF32(p.desc, bias, 'bias');
    if (bias.rank !== 1 || bias.shape[0] !== p.N) {
      throw new RangeError(`${p.desc}: bias must be [${p.N}], got ${bias.describe()}`);
    }
  }
  const outBytes = p.outShape.reduce((x, y) => x * y, 1) * 4;
  const maxBuffer = gpu().limits.maxBufferSize;
  if (outBytes > maxBuffer) {
    throw new RangeError(
      `${p.desc}: the output [${p.outShape.join(', ')}] is ${outBytes} bytes, over this adapter's maxBufferSize ` +
        `(${maxBuffer} bytes); split the work (fewer rows per call)`,
    );
  }
  const residual = opts.residual;
  if (residual) {
    checkF32(p.desc, residual, 'residual');
    if (residual.shape.join() !== p.outShape.join()) {
      throw new RangeError(`${p.desc}: residual must have the output's shape [${p.outShape.join(', ')}], got ${residual.describe()}`);
    }
  }
  const inputs = bias ? [a, b, bias] : [a, b];
  const needsGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  // autograd records the residual's add (the variant is chosen by the product's own call)
  if (residual && (needsGrad || (isGradEnabled() && residual.requiresGrad))) return addResidualApart(a, b, opts, residual);
  const choice = choose(p, true);
  if (residual && residualApart(choice.variant, p)) return addResidualApart(a, b, opts, residual);
  const writePre = needsGrad && activation === 'gelu';
  const spec = specFor(choice.variant, p, !!bias, activation, writePre, !!residual);
  const out = empty(p.outShape);
  const pre = writePre ? empty(p.outShape) : undefined;
  dispatchProblem(`matmul ${choice.variant}`, p, spec, { a, b, bias, residual, out, pre });
  if (!needsGrad) return out;
  // relu's gradient needs only the output's sign; gelu's the pre-activation
  const saved = activation === 'none' ? [a, b] : [a, b, activation === 'gelu' ? pre! : out];
  const wants = inputs.map((t) => t.requiresGrad);
  recordOp('matmul', inputs, out, saved, (g, s) => matmulBackward(g, s[0]!, s[1]!, s[2] ?? null, transA, transB, activation, wants));
  pre?.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// backward

/** g * act'(x): x is the pre-activation (gelu) or the output (relu: out > 0 exactly where pre > 0). Through
 * the elementwise dispatcher (vec4, several per invocation): one f32 per invocation took 9 ms for t5-small's
 * [8, 256, 2048] relu on lavapipe. */
function activationGrad(act: 'relu' | 'gelu', g: Tensor, x: Tensor): Tensor {
  const expr = act === 'relu' ? 'select(T(0.0), g, x > T(0.0))' : 'g * gelu_tanh_d(x)';
  return ewDispatch(`matmul ${act} backward`, [{ t: g, name: 'g' }, { t: x, name: 'x' }], expr);
}

function isBroadcastFree(t: Tensor): boolean {
  return t.shape.slice(0, -2).every((d) => d === 1);
}

function reduceTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.join() === shape.join()) return g;
  const r = sumTo(g, shape);
  g.dispose();
  return r;
}

function matmulBackward(
  g: Tensor,
  a: Tensor,
  b: Tensor,
  x: Tensor | null,
  transA: boolean,
  transB: boolean,
  act: Activation,
  wants: boolean[],
): Array<Tensor | null> {
  const gz = act === 'none' ? g : activationGrad(act, g, x!);
  let dA: Tensor | null = null;
  let dB: Tensor | null = null;
  let dBias: Tensor | null = null;
  if (wants[0]) {
    // d op(A) = gz · op(B)ᵀ
    if (!transA) dA = matmul(gz, b, { transB: !transB });
    else dA = matmul(b, gz, { transA: transB, transB: true });
    dA = reduceTo(dA, a.shape);
  }
  if (wants[1]) {
    // d op(B) = op(A)ᵀ · gz; a weight shared across a batch: fold the batch into K (one matmul, no reduction)
    const fold = isBroadcastFree(b) && a.rank > 2 && !transA;
    const a2 = fold ? a.reshape([-1, a.shape[a.rank - 1]!]) : a;
    const g2 = fold ? gz.reshape([-1, gz.shape[gz.rank - 1]!]) : gz;
    if (!transB) dB = matmul(a2, g2, { transA: !transA });
    else dB = matmul(g2, a2, { transA: true, transB: transA });
    if (fold) {
      a2.dispose();
      g2.dispose();
      if (dB.shape.join() !== b.shape.join()) {
        const r = dB.reshape(b.shape); // b's leading size-1 dims
        dB.dispose();
        dB = r;
      }
    }
    dB = reduceTo(dB, b.shape);
  }
  if (wants[2]) dBias = sumTo(gz, [gz.shape[gz.rank - 1]!]);
  if (gz !== g) gz.dispose();
  return [dA, dB, dBias];
}
