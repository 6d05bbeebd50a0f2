// An independent float64 T5ForConditionalGeneration forward (eval mode: no dropout), in plain TypeScript loops,
// written from Hugging Face's modeling_t5.py (transformers 4.36), not from this repository's GPU code. It is
// slow and only meant for tiny configs in tests.
//
// What it follows from modeling_t5.py:
//   T5LayerNorm          w * x / sqrt(mean(x^2) + eps)  (no mean subtraction, no bias)
//   T5DenseActDense      wo(act(wi x));  T5DenseGatedActDense  wo(act(wi_0 x) * wi_1 x); act relu or gelu_new
//   T5Attention          scores = q k^T (no 1/sqrt(d_kv)) + position_bias, softmax over keys, then o(.)
//                        position_bias = compute_bias(Lq, Lk) from block 0's relative_attention_bias (other
//                        blocks reuse it), plus the extended mask (1 - mask) * finfo(float32).min;
//                        cross-attention has no bias of its own: zeros + the encoder mask
//   _relative_position_bucket   in float32 arithmetic as torch computes it (log of a float tensor)
//   T5Stack              embed -> blocks -> final_layer_norm; the decoder's self-attention mask is causal
//   lm_head              tied: sequence_output * d_model^-0.5 @ shared^T; untied: lm_head.weight, no scaling
//   loss                 CrossEntropyLoss(ignore_index=-100), mean over the batch's non-ignored labels;
//                        decoder_input_ids = _shift_right(labels): decoder_start_token_id first, -100 -> pad

export interface RefConfig {
  vocab_size: number;
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_layers: number;
  num_decoder_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  layer_norm_epsilon: number;
  is_gated_act: boolean;
  dense_act_fn: 'relu' | 'gelu_new' | 'silu';
  tie_word_embeddings: boolean;
  decoder_start_token_id: number;
  pad_token_id: number;
}

/** Parameters by HF state-dict name (row-major, PyTorch shapes: nn.Linear weight is [out, in]). */
export type RefParams = Map<string, Float64Array>;

export interface RefBatch {
  batch: number;
  sourceLength: number;
  targetLength: number;
  inputIds: ArrayLike<number>; // [B, Ls]
  attentionMask: ArrayLike<number>; // [B, Ls]
  labels: ArrayLike<number>; // [B, Lt], -100 ignored
}

export interface RefOutput {
  encoderHidden: Float64Array; // [B, Ls, D]
  logits: Float64Array; // [B, Lt, V]
  loss: number;
}

/** torch.finfo(torch.float32).min */
const FLOAT32_MIN = -3.4028234663852886e38;

/** The names save_pretrained stores for `cfg` with their shapes (HF's module tree, built here on its own). */
export function refParameterShapes(cfg: RefConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const inner = cfg.num_heads * cfg.d_kv;
  const d = cfg.d_model;
  m.set('shared.weight', [cfg.vocab_size, d]);
  const attn = (p: string, bias: boolean): void => {
    m.set(`${p}.q.weight`, [inner, d]);
    m.set(`${p}.k.weight`, [inner, d]);
    m.set(`${p}.v.weight`, [inner, d]);
    m.set(`${p}.o.weight`, [d, inner]);
    if (bias) m.set(`${p}.relative_attention_bias.weight`, [cfg.relative_attention_num_buckets, cfg.num_heads]);
  };
  const ff = (p: string): void => {
    if (cfg.is_gated_act) {
      m.set(`${p}.DenseReluDense.wi_0.weight`, [cfg.d_ff, d]);
      m.set(`${p}.DenseReluDense.wi_1.weight`, [cfg.d_ff, d]);
    } else {
      m.set(`${p}.DenseReluDense.wi.weight`, [cfg.d_ff, d]);
    }
    m.set(`${p}.DenseReluDense.wo.weight`, [d, cfg.d_ff]);
    m.set(`${p}.layer_norm.weight`, [d]);
  };
  for (let i = 0; i < cfg.num_layers; i++) {
    attn(`encoder.block.${i}.layer.0.SelfAttention`, i === 0);
    m.set(`encoder.block.${i}.layer.0.layer_norm.weight`, [d]);
    ff(`encoder.block.${i}.layer.1`);
  }
  m.set('encoder.final_layer_norm.weight', [d]);
  for (let i = 0; i < cfg.num_decoder_layers; i++) {
    attn(`decoder.block.${i}.layer.0.SelfAttention`, i === 0);
    m.set(`decoder.block.${i}.layer.0.layer_norm.weight`, [d]);
    attn(`decoder.block.${i}.layer.1.EncDecAttention`, false);
    m.set(`decoder.block.${i}.layer.1.layer_norm.weight`, [d]);
    ff(`decoder.block.${i}.layer.2`);
  }
  m.set('decoder.final_layer_norm.weight', [d]);
  if (!cfg.tie_word_embeddings) m.set('lm_head.weight', [cfg.vocab_size, d]);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------

function get(params: RefParams, name: string): Float64Array {
  const p = params.get(name);
  if (!p) throw new Error(`reference T5: no parameter ${name}`);
  return p;
}

/** x [n, k] @ W^T with W [m, k] -> [n, m] */
function linear(x: Float64Array, n: number, k: number, w: Float64Array, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < m; c++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += x[r * k + t]! * w[c * k + t]!;
      out[r * m + c] = s;
    }
  }
  return out;
}

function layerNorm(x: Float64Array, n: number, d: number, w: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x[r * d + c]! ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let c = 0; c < d; c++) out[r * d + c] = w[c]! * (x[r * d + c]! * inv);
  }
  return out;
}

function addInPlace(a: Float64Array, b: Float64Array): Float64Array {
  for (let i = 0; i < a.length; i++) a[i]! += b[i]!;
  return a;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** HF's NewGELUActivation (gelu_new): the tanh approximation. */
export function geluNew(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)));
}

function act(cfg: RefConfig, x: number): number {
  if (cfg.dense_act_fn === 'relu') return Math.max(0, x);
  return cfg.dense_act_fn === 'silu' ? x / (1 + Math.exp(-x)) : geluNew(x);
}

/** _relative_position_bucket, with torch's float32 steps for the logarithmic buckets. */
export function refBucket(relativePosition: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  const f32 = Math.fround;
  let buckets = 0;
  let nb = numBuckets;
  let rp = relativePosition;
  if (bidirectional) {
    nb = Math.floor(nb / 2);
    buckets += rp > 0 ? nb : 0;
    rp = Math.abs(rp);
  } else {
    rp = -Math.min(rp, 0);
  }
  const maxExact = Math.floor(nb / 2);
  if (rp < maxExact) return buckets + rp;
  // (torch.log(rp.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)).to(long)
  const ratio = f32(rp / maxExact);
  const lg = f32(Math.log(ratio));
  const q = f32(lg / f32(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(f32(q * (nb - maxExact)));
  return buckets + Math.min(large, nb - 1);
}

/** compute_bias: [H, Lq, Lk] */
function positionBias(cfg: RefConfig, table: Float64Array, lq: number, lk: number, bidirectional: boolean): Float64Array {
  const h = cfg.num_heads;
  const out = new Float64Array(h * lq * lk);
  for (let i = 0; i < lq; i++) {
    for (let j = 0; j < lk; j++) {
      const b = refBucket(j - i, bidirectional, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance);
      for (let hh = 0; hh < h; hh++) out[(hh * lq + i) * lk + j] = table[b * h + hh]!;
    }
  }
  return out;
}

/**
 * One T5Attention for one batch row. xq [Lq, D] (normed), xkv [Lk, D]; bias [H, Lq, Lk] or null; keyMask(i, j)
 * gives the additive mask (0 or finfo.min). Returns o(...) [Lq, D].
 */
function attention(
  cfg: RefConfig, params: RefParams, prefix: string,
  xq: Float64Array, lq: number, xkv: Float64Array, lk: number,
  bias: Float64Array | null, maskAt: (i: number, j: number) => number,
): Float64Array {
  const d = cfg.d_model;
  const h = cfg.num_heads;
  const dk = cfg.d_kv;
  const inner = h * dk;
  const q = linear(xq, lq, d, get(params, `${prefix}.q.weight`), inner);
  const k = linear(xkv, lk, d, get(params, `${prefix}.k.weight`), inner);
  const v = linear(xkv, lk, d, get(params, `${prefix}.v.weight`), inner);
  const merged = new Float64Array(lq * inner);
  const scores = new Float64Array(lk);
  for (let hh = 0; hh < h; hh++) {
    for (let i = 0; i < lq; i++) {
      let max = -Infinity;
      for (let j = 0; j < lk; j++) {
        let s = 0;
        for (let t = 0; t < dk; t++) s += q[i * inner + hh * dk + t]! * k[j * inner + hh * dk + t]!;
        s += (bias ? bias[(hh * lq + i) * lk + j]! : 0) + maskAt(i, j);
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < lk; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let t = 0; t < dk; t++) {
        let acc = 0;
        for (let j = 0; j < lk; j++) acc += (scores[j]! / sum) * v[j * inner + hh * dk + t]!;
        merged[i * inner + hh * dk + t] = acc;
      }
    }
  }
  return linear(merged, lq, inner, get(params, `${prefix}.o.weight`), d);
}

function feedForward(cfg: RefConfig, params: RefParams, prefix: string, hidden: Float64Array, n: number): Float64Array {
  const d = cfg.d_model;
  const normed = layerNorm(hidden, n, d, get(params, `${prefix}.layer_norm.weight`), cfg.layer_norm_epsilon);
  const p = `${prefix}.DenseReluDense`;
  let mid: Float64Array;
  if (cfg.is_gated_act) {
    const a = linear(normed, n, d, get(params, `${p}.wi_0.weight`), cfg.d_ff);
    const b = linear(normed, n, d, get(params, `${p}.wi_1.weight`), cfg.d_ff);
    mid = a.map((x, i) => act(cfg, x) * b[i]!);
  } else {
    mid = linear(normed, n, d, get(params, `${p}.wi.weight`), cfg.d_ff).map((x) => act(cfg, x));
  }
  return addInPlace(hidden, linear(mid, n, cfg.d_ff, get(params, `${p}.wo.weight`), d));
}

function embed(table: Float64Array, d: number, ids: ArrayLike<number>, start: number, n: number): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) out.set(table.subarray(ids[start + i]! * d, ids[start + i]! * d + d), i * d);
  return out;
}

export function shiftRightRef(cfg: RefConfig, labels: ArrayLike<number>, batch: number, lt: number): Int32Array {
  const out = new Int32Array(batch * lt);
  for (let b = 0; b < batch; b++) {
    out[b * lt] = cfg.decoder_start_token_id;
    for (let t = 1; t < lt; t++) {
      const l = labels[b * lt + t - 1]!;
      out[b * lt + t] = l === -100 ? cfg.pad_token_id : l;
    }
  }
  return out;
}

export function t5ReferenceForward(cfg: RefConfig, params: RefParams, batch: RefBatch): RefOutput {
  const { batch: nb, sourceLength: ls, targetLength: lt } = batch;
  const d = cfg.d_model;
  const eps = cfg.layer_norm_epsilon;
  const shared = get(params, 'shared.weight');
  const encBias = positionBias(cfg, get(params, 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'), ls, ls, true);
  const decBias = positionBias(cfg, get(params, 'decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'), lt, lt, false);
  const decIds = shiftRightRef(cfg, batch.labels, nb, lt);
  const encoderHidden = new Float64Array(nb * ls * d);
  const logits = new Float64Array(nb * lt * cfg.vocab_size);
  let lossSum = 0;
  let lossCount = 0;
  for (let b = 0; b < nb; b++) {
    const keyMask = (_i: number, j: number): number => (batch.attentionMask[b * ls + j] ? 0 : FLOAT32_MIN);
    // encoder
    let h = embed(shared, d, batch.inputIds, b * ls, ls);
    for (let i = 0; i < cfg.num_layers; i++) {
      const p = `encoder.block.${i}.layer`;
      const normed = layerNorm(h, ls, d, get(params, `${p}.0.layer_norm.weight`), eps);
      addInPlace(h, attention(cfg, params, `${p}.0.SelfAttention`, normed, ls, normed, ls, encBias, keyMask));
      h = feedForward(cfg, params, `${p}.1`, h, ls);
    }
    const enc = layerNorm(h, ls, d, get(params, 'encoder.final_layer_norm.weight'), eps);
    encoderHidden.set(enc, b * ls * d);
    // decoder
    const causal = (i: number, j: number): number => (j > i ? FLOAT32_MIN : 0);
    let g = embed(shared, d, decIds, b * lt, lt);
    for (let i = 0; i < cfg.num_decoder_layers; i++) {
      const p = `decoder.block.${i}.layer`;
      const n0 = layerNorm(g, lt, d, get(params, `${p}.0.layer_norm.weight`), eps);
      addInPlace(g, attention(cfg, params, `${p}.0.SelfAttention`, n0, lt, n0, lt, decBias, causal));
      const n1 = layerNorm(g, lt, d, get(params, `${p}.1.layer_norm.weight`), eps);
      addInPlace(g, attention(cfg, params, `${p}.1.EncDecAttention`, n1, lt, enc, ls, null, keyMask));
      g = feedForward(cfg, params, `${p}.2`, g, lt);
    }
    let out = layerNorm(g, lt, d, get(params, 'decoder.final_layer_norm.weight'), eps);
    let head = shared;
    if (cfg.tie_word_embeddings) {
      const s = d ** -0.5;
      out = out.map((x) => x * s);
    } else {
      head = get(params, 'lm_head.weight');
    }
    const rowLogits = linear(out, lt, d, head, cfg.vocab_size);
    logits.set(rowLogits, b * lt * cfg.vocab_size);
    for (let t = 0; t < lt; t++) {
      const label = batch.labels[b * lt + t]!;
      if (label === -100) continue;
      const row = rowLogits.subarray(t * cfg.vocab_size, (t + 1) * cfg.vocab_size);
      let max = -Infinity;
      for (const x of row) max = Math.max(max, x);
      let sum = 0;
      for (const x of row) sum += Math.exp(x - max);
      lossSum += max + Math.log(sum) - row[label]!;
      lossCount++;
    }
  }
  return { encoderHidden, logits, loss: lossSum / lossCount };
}
