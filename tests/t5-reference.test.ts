// T5 beyond the golden fixture: the GPU model against an independent float64 T5 written from HF's
// modeling_t5.py (tests/reference/t5-float64.ts) on random small configs that the fixture does not cover:
// gated-gelu (gelu_new), untied embeddings (lm_head without the d_model^-0.5 scale), encoder and decoder of
// different depths, num_heads * d_kv != d_model, odd bucket counts with sequences past max_distance, and
// padded batches (source padding masked, -100 labels ignored). Weights are random with a modest scale so
// logits stay O(1-10), as in a trained model (the fixture's are deliberately peaky instead).
//
// Error bounds (float32 GPU vs float64 reference, same float32 weights):
//   encoder states and logits: max|got - ref| <= 1e-5 * max|ref| per tensor. float32 rounding is 6e-8
//     relative per operation; through ~5 blocks of matmuls (K <= 72), softmax and RMS norms the measured error
//     is a few 1e-7 of max|ref| (logged below), so 1e-5 leaves ~20x headroom while any real mistake (a wrong
//     bucket, a missing scale, an unmasked pad) moves logits by O(0.1-1), i.e. >= 1e-2 of max|ref|.
//   loss: relative 1e-5 (the golden README's bound; the loss is a mean of O(1-10) terms).
//   gradients: for every parameter tensor P and a random direction W, the GPU's sum(dL/dP * W) against the
//     reference's central difference (L(P + eW) - L(P - eW)) / 2e in float64 (e = 1e-6: truncation ~e^2,
//     rounding ~1e-16/e, both < 1e-9). Bound: 1e-4 * ||dL/dP|| * ||W|| / sqrt(n), where ||g|| ||W|| / sqrt(n)
//     is the typical size of the directional derivative itself: the measured error is ~2e-6 of it (float32
//     accumulation), so the bound has ~50x headroom, and a gradient wrong by 0.1% of its norm anywhere in a
//     tensor is caught with high probability. Run on the gated-gelu/untied/unequal-depth config; relu and tied
//     gradients are checked against HF itself by tests/t5-golden.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { tensor } from '../engine/tensor.ts';
import { parseT5Config, type T5Config } from '../model/config.ts';
import { storedParameters } from '../model/parameters.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { ParamMap, Seq2SeqBatch } from '../model/t5.ts';
import { refParameterShapes, t5ReferenceForward, type RefBatch, type RefConfig, type RefParams } from '../model/t5-float64.ts';
import { relMaxErr } from './helpers/rel-max-err.ts';
import { crossEntropyReference } from '../kernels/cross-entropy.ts';

beforeAll(async () => {
  await initGpu();
});

/** mulberry32 + Box-Muller: reproducible normal samples. */
function rng(seed: number): { uniform(): number; normal(): number; int(n: number): number } {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()),
    int: (n) => Math.floor(uniform() * n),
  };
}

interface Spec {
  name: string;
  json: Record<string, unknown>;
  /** source lengths and target lengths of the batch rows (padded to the longest) */
  sources: number[];
  targets: number[];
  seed: number;
  /** run the gradient check (it costs two reference forwards per parameter tensor) */
  grads: boolean;
}

const SPECS: Spec[] = [
  {
    name: 'gated-gelu, untied, 2 encoder / 3 decoder layers, 4x8 heads on d_model 48, 10 buckets, padded batch',
    json: {
      d_model: 48, d_kv: 8, num_heads: 4, d_ff: 72, num_layers: 2, num_decoder_layers: 3, vocab_size: 97,
      feed_forward_proj: 'gated-gelu', tie_word_embeddings: false, relative_attention_num_buckets: 10,
      relative_attention_max_distance: 12,
    },
    sources: [29, 24, 13],
    targets: [9, 6, 2],
    seed: 11,
    grads: true,
  },
  {
    name: 'relu, tied, 3 encoder / 1 decoder layer, 5x12 heads on d_model 40, 32 buckets, padded batch with a row of padding only',
    json: {
      d_model: 40, d_kv: 12, num_heads: 5, d_ff: 56, num_layers: 3, num_decoder_layers: 1, vocab_size: 131,
      feed_forward_proj: 'relu', tie_word_embeddings: true, relative_attention_num_buckets: 32,
      relative_attention_max_distance: 128,
    },
    // a source of no tokens: HF's cross-attention averages its encoder states at the padded positions
    sources: [37, 20, 0],
    targets: [7, 11, 4],
    seed: 12,
    // relu + tied gradients are the golden fixture's (tests/t5-golden.test.ts); keep the file fast
    grads: false,
  },
  {
    name: 'gated-gelu, tied, 1 encoder / 2 decoder layers, 3x16 heads on d_model 32 (flan-style), single row',
    json: {
      d_model: 32, d_kv: 16, num_heads: 3, d_ff: 40, num_layers: 1, num_decoder_layers: 2, vocab_size: 64,
      feed_forward_proj: 'gated-gelu', tie_word_embeddings: true, relative_attention_num_buckets: 6,
      relative_attention_max_distance: 9, layer_norm_epsilon: 1e-5,
    },
    sources: [17],
    targets: [13],
    seed: 13,
    grads: false,
  },
];

function makeConfig(spec: Spec): T5Config {
  return parseT5Config({ model_type: 't5', dropout_rate: 0.1, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1, ...spec.json }, spec.name);
}

function refConfigOf(c: T5Config): RefConfig {
  return {
    vocab_size: c.vocab_size, d_model: c.d_model, d_kv: c.d_kv, d_ff: c.d_ff, num_layers: c.num_layers,
    num_decoder_layers: c.num_decoder_layers, num_heads: c.num_heads,
    relative_attention_num_buckets: c.relative_attention_num_buckets,
    relative_attention_max_distance: c.relative_attention_max_distance, layer_norm_epsilon: c.layer_norm_epsilon,
    is_gated_act: c.is_gated_act, dense_act_fn: c.dense_act_fn, tie_word_embeddings: c.tie_word_embeddings,
    decoder_start_token_id: c.decoder_start_token_id, pad_token_id: c.pad_token_id,
  };
}

/** Random weights, float32-representable (the GPU gets the same values), scaled so activations stay O(1). */
function randomParams(cfg: RefConfig, seed: number): RefParams {
  const r = rng(seed);
  const out: RefParams = new Map();
  for (const [name, shape] of refParameterShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape[shape.length - 1]!;
    let sample: () => number;
    if (name.endsWith('layer_norm.weight')) sample = () => 1 + 0.2 * r.normal();
    else if (name.includes('relative_attention_bias')) sample = () => 0.5 * r.normal();
    else if (name === 'shared.weight') sample = () => r.normal();
    else if (name === 'lm_head.weight') sample = () => (2 / Math.sqrt(fanIn)) * r.normal();
    // q and k: scores q.k over d_kv terms of O(1) stay O(1) without HF's (absent) 1/sqrt(d_kv)
    else if (/\.(q|k)\.weight$/.test(name)) sample = () => (0.6 / Math.sqrt(fanIn * Math.sqrt(cfg.d_kv))) * r.normal();
    else sample = () => (1 / Math.sqrt(fanIn)) * r.normal();
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.fround(sample());
    out.set(name, a);
  }
  return out;
}

function makeBatch(cfg: RefConfig, spec: Spec): RefBatch & Seq2SeqBatch {
  const r = rng(spec.seed * 7919);
  const b = spec.sources.length;
  const ls = Math.max(...spec.sources);
  const lt = Math.max(...spec.targets);
  const inputIds = new Int32Array(b * ls);
  const attentionMask = new Int32Array(b * ls);
  const labels = new Int32Array(b * lt).fill(-100);
  for (let row = 0; row < b; row++) {
    for (let i = 0; i < spec.sources[row]!; i++) {
      inputIds[row * ls + i] = i === spec.sources[row]! - 1 ? 1 : 2 + r.int(cfg.vocab_size - 2);
      attentionMask[row * ls + i] = 1;
    }
    for (let t = 0; t < spec.targets[row]!; t++) labels[row * lt + t] = t === spec.targets[row]! - 1 ? 1 : 2 + r.int(cfg.vocab_size - 2);
  }
  return { batch: b, batchSize: b, sourceLength: ls, targetLength: lt, inputIds, attentionMask, labels };
}

function gpuModel(cfg: T5Config, params: RefParams): T5ForConditionalGeneration {
  const map: ParamMap = new Map();
  for (const [name, shape] of refParameterShapes(refConfigOf(cfg))) {
    map.set(name, tensor(Float32Array.from(params.get(name)!), shape, { name, requiresGrad: true }).keep());
  }
  return new T5ForConditionalGeneration(cfg, map);
}

describe('T5 against an independent float64 reference (random configs)', () => {
  const models: T5ForConditionalGeneration[] = [];
  afterAll(() => models.forEach((m) => m.dispose()));

  for (const spec of SPECS) {
    it(spec.name, async () => {
      const cfg = makeConfig(spec);
      const rcfg = refConfigOf(cfg);
      // the reference's own module tree names exactly the tensors our loader expects
      expect([...refParameterShapes(rcfg)].sort()).toEqual(storedParameters(cfg).map((p) => [p.name, p.shape]).sort());
      const params = randomParams(rcfg, spec.seed);
      const batch = makeBatch(rcfg, spec);
      const ref = t5ReferenceForward(rcfg, params, batch);
      let maxLogit = 0;
      for (const x of ref.logits) maxLogit = Math.max(maxLogit, Math.abs(x));
      expect(maxLogit).toBeGreaterThan(1);
      expect(maxLogit).toBeLessThan(30);

      const model = gpuModel(cfg, params);
      models.push(model);
      const out = tidy(() => model.forward(batch, { training: true, dropoutRate: 0 }));
      const enc = await out.encoderHidden.toFloat32();
      const logits = await out.logits.toFloat32();
      const loss = await out.loss!.item();
      const encErr = relMaxErr(enc, ref.encoderHidden);
      const logitErr = relMaxErr(logits, ref.logits);
      const lossErr = Math.abs(loss - ref.loss) / Math.abs(ref.loss);
      expect(encErr).toBeLessThanOrEqual(1e-5);
      expect(logitErr).toBeLessThanOrEqual(1e-5);
      expect(lossErr).toBeLessThanOrEqual(1e-5);

      // label smoothing (HF Trainer's label_smoothing_factor): the smoothed loss of these logits, padding skipped too
      const smoothed = tidy(() => model.forward(batch, { training: true, dropoutRate: 0, skipPadding: true, labelSmoothing: 0.1 }).loss!);
      const wantSmoothed = crossEntropyReference(ref.logits, batch.labels, rcfg.vocab_size, -100, 0.1).mean;
      expect(Math.abs((await smoothed.item()) - wantSmoothed) / wantSmoothed).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(wantSmoothed - ref.loss) / ref.loss).toBeGreaterThan(1e-4); // 10x the bound above
      smoothed.dispose();

      // skipPadding (training's and generation's default) changes only which positions are computed: the
      // logits at every label are the reference's (the skipped positions' are zeros)
      const skipped = tidy(() => model.forward(batch, { training: true, dropoutRate: 0, skipPadding: true }));
      const V = rcfg.vocab_size;
      const labelled = (x: ArrayLike<number>) => Float64Array.from({ length: x.length }, (_, i) => (batch.labels[Math.floor(i / V)] === -100 ? 0 : x[i]!));
      expect(relMaxErr(labelled(await skipped.logits.toFloat32()), labelled(ref.logits))).toBeLessThanOrEqual(1e-5);
      for (const t of [skipped.encoderHidden, skipped.logits, skipped.loss!]) t.dispose();

      if (!spec.grads) {
        for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
        console.log(`${spec.name}: encoder ${encErr.toExponential(1)}, logits ${logitErr.toExponential(1)} (max|logit| ${maxLogit.toFixed(1)}), loss ${lossErr.toExponential(1)}`);
        return;
      }
      backward(out.loss!);
      for (const t of [out.encoderHidden, out.logits, out.loss!]) t.dispose();
      const r = rng(spec.seed * 104729);
      const eps = 1e-6;
      let worst = 0;
      for (const [name, p] of model.params) {
        const g = await p.grad!.toFloat32();
        const base = params.get(name)!;
        const w = new Float64Array(base.length);
        for (let i = 0; i < w.length; i++) w[i] = r.normal();
        let dot = 0;
        let gNorm = 0;
        let wNorm = 0;
        for (let i = 0; i < w.length; i++) {
          dot += g[i]! * w[i]!;
          gNorm += g[i]! ** 2;
          wNorm += w[i]! ** 2;
        }
        const shifted = (sign: number): number => {
          const moved = new Map(params);
          moved.set(name, base.map((x, i) => x + sign * eps * w[i]!));
          return t5ReferenceForward(rcfg, moved, batch).loss;
        };
        const fd = (shifted(1) - shifted(-1)) / (2 * eps);
        const scale = (Math.sqrt(gNorm) * Math.sqrt(wNorm)) / Math.sqrt(w.length);
        expect(scale, `${name}: gradient is zero`).toBeGreaterThan(0);
        const err = Math.abs(dot - fd) / scale;
        worst = Math.max(worst, err);
        expect(err, `${name}: GPU ${dot} vs finite difference ${fd}`).toBeLessThanOrEqual(1e-4);
      }
      console.log(
        `${spec.name}: encoder ${encErr.toExponential(1)}, logits ${logitErr.toExponential(1)} (max|logit| ${maxLogit.toFixed(1)}), ` +
          `loss ${lossErr.toExponential(1)}, worst directional gradient ${worst.toExponential(1)}`,
      );
    });
  }
});
