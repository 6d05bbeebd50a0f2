// T5 as Hugging Face's `modeling_t5.py` (transformers 4.36) computes it, assembled from the engine's ops.
// Class and parameter names follow Hugging Face, so a checkpoint key maps to one `param(...)` call:
//   shared.weight                                        T5ForConditionalGeneration.shared
//   {encoder,decoder}.block.{i}.layer.0.SelfAttention.*  T5LayerSelfAttention -> T5Attention
//   decoder.block.{i}.layer.1.EncDecAttention.*           T5LayerCrossAttention -> T5Attention
//   {...}.layer.{1|2}.DenseReluDense.{wi,wi_0,wi_1,wo}   T5LayerFF -> T5DenseActDense / T5DenseGatedActDense
//   {...}.layer_norm.weight, {stack}.final_layer_norm.weight   T5LayerNorm (RMS: no mean, no bias)
//   lm_head.weight                                        only when embeddings are untied
// What Hugging Face does and we match: no 1/sqrt(d_kv) scaling of scores; the relative position bias is
// computed by the first block of each stack and shared by the others (bidirectional buckets in the encoder,
// causal in the decoder; cross-attention has none); masks add finfo(float32).min; dropout after the
// embedding, on attention probabilities, inside the feed-forward, on each sublayer output and after the
// final norm; the tied LM head scales the decoder output by d_model ** -0.5.
import { tensor, type Tensor } from '../engine/tensor.ts';
import { add, mul, scale } from '../kernels/elementwise.ts';
import { matmul } from '../kernels/matmul.ts';
import { rmsNorm } from '../kernels/rmsnorm.ts';
import { attention } from '../kernels/attention.ts';
import { embedding, idsTensor } from '../kernels/embedding.ts';
import { crossEntropy } from '../kernels/cross-entropy.ts';
import { permute } from '../kernels/layout.ts';
import { dropout } from '../kernels/random.ts';
import type { T5Config } from './config.ts';
import { relativePositionBuckets } from './relative-position.ts';

/** torch.finfo(torch.float32).min: what Hugging Face adds at masked key positions */
export const MASK_MIN = -3.4028234663852886e38;

export type ParamMap = Map<string, Tensor>;

/** Dropout with a counter-based mask: `offset` advances by each call's element count, so a step's masks
 * depend only on (seed, step), not on batch order. */
export class DropoutState {
  offset = 0;
  constructor(public rate: number, public seed: number, public training: boolean) {}
  apply(x: Tensor): Tensor {
    if (!this.training || this.rate === 0) return x;
    const y = dropout(x, this.rate, { seed: this.seed, offset: this.offset });
    this.offset += x.size;
    return y;
  }
  /** For an op that drops inside itself (fused attention): its stream position for `count` elements, which
   * it numbers as apply() would; undefined when dropout is off. */
  draw(count: number): { rate: number; seed: number; offset: number } | undefined {
    if (!this.training || this.rate === 0) return undefined;
    const at = { rate: this.rate, seed: this.seed, offset: this.offset };
    this.offset += count;
    return at;
  }
}

export interface ForwardContext {
  config: T5Config;
  params: ParamMap;
  dropout: DropoutState;
}

function param(ctx: ForwardContext, name: string): Tensor {
  const p = ctx.params.get(name);
  if (!p) throw new Error(`T5: parameter '${name}' is missing from the model`);
  return p;
}

/** nn.Linear without bias: x @ W^T, W stored [out, in] as in PyTorch. */
function linear(x: Tensor, w: Tensor, activation: 'none' | 'relu' | 'gelu' = 'none'): Tensor {
  return matmul(x, w, { transB: true, activation });
}

export function T5LayerNorm(ctx: ForwardContext, prefix: string, x: Tensor): Tensor {
  return rmsNorm(x, param(ctx, `${prefix}.weight`), ctx.config.layer_norm_epsilon);
}

/** [B, L, H*dk] -> [B, L, H, dk]: a view; the attention kernels read heads interleaved ('BLHD') */
function splitHeads(x: Tensor, heads: number, dk: number): Tensor {
  const [b, l] = x.shape as [number, number];
  return x.reshape([b, l, heads, dk]);
}

/** [B, L, H, dk] -> [B, L, H*dk] */
function mergeHeads(x: Tensor): Tensor {
  const [b, l, h, dk] = x.shape as [number, number, number, number];
  return x.reshape([b, l, h * dk]);
}

/** `T5Attention.compute_bias`: [1, H, Lq, Lk] from the relative_attention_bias embedding [buckets, H]. */
export function computePositionBias(
  ctx: ForwardContext,
  prefix: string,
  queryLength: number,
  keyLength: number,
  bidirectional: boolean,
  queryOffset = 0,
): Tensor {
  const c = ctx.config;
  const buckets = relativePositionBuckets(
    queryLength, keyLength, bidirectional, c.relative_attention_num_buckets, c.relative_attention_max_distance, queryOffset,
  );
  // idsTensor keeps a host copy: out-of-range checks, and the scatter-add backward sorts on the CPU
  const ids = idsTensor(buckets, [queryLength, keyLength]);
  const values = embedding(param(ctx, `${prefix}.relative_attention_bias.weight`), ids); // [Lq, Lk, H]
  return permute(values, [2, 0, 1]).reshape([1, c.num_heads, queryLength, keyLength]);
}

export interface KeyValue {
  k: Tensor; // [B, Lk, H, dk]
  v: Tensor;
}

export interface AttentionInputs {
  /** additive position bias [1|B, H, Lq, Lk], or none (cross-attention) */
  bias?: Tensor;
  /** additive mask broadcast to [B, H, Lq, Lk] (padding), without the causal part */
  mask?: Tensor;
  causal?: boolean;
  /** keys/values computed already (cross-attention cache, or past + new in self-attention) */
  keyValue?: KeyValue;
}

export function projectKeyValue(ctx: ForwardContext, prefix: string, x: Tensor): KeyValue {
  const { num_heads: h, d_kv: dk } = ctx.config;
  return {
    k: splitHeads(linear(x, param(ctx, `${prefix}.k.weight`)), h, dk),
    v: splitHeads(linear(x, param(ctx, `${prefix}.v.weight`)), h, dk),
  };
}

export function T5Attention(ctx: ForwardContext, prefix: string, x: Tensor, inputs: AttentionInputs): Tensor {
  const { num_heads: h, d_kv: dk } = ctx.config;
  const q = splitHeads(linear(x, param(ctx, `${prefix}.q.weight`)), h, dk);
  const kv = inputs.keyValue ?? projectKeyValue(ctx, prefix, x);
  const [b, lq] = q.shape as [number, number];
  // dropout on the [B, H, Lq, Lk] probabilities, drawn inside the kernels as dropout(softmax(...)) would
  const dropout = ctx.dropout.draw(b * h * lq * kv.k.shape[1]!);
  const out = attention(q, kv.k, kv.v, { bias: inputs.bias, mask: inputs.mask, causal: inputs.causal, dropout, layout: 'BLHD' });
  return linear(mergeHeads(out), param(ctx, `${prefix}.o.weight`));
}

export function T5LayerSelfAttention(
  ctx: ForwardContext, prefix: string, hidden: Tensor, inputs: AttentionInputs,
): Tensor {
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  const out = T5Attention(ctx, `${prefix}.SelfAttention`, normed, inputs);
  return add(hidden, ctx.dropout.apply(out));
}

export function T5LayerCrossAttention(
  ctx: ForwardContext, prefix: string, hidden: Tensor, inputs: AttentionInputs,
): Tensor {
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  const out = T5Attention(ctx, `${prefix}.EncDecAttention`, normed, inputs);
  return add(hidden, ctx.dropout.apply(out));
}

export function T5LayerFF(ctx: ForwardContext, prefix: string, hidden: Tensor): Tensor {
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  const ff = `${prefix}.DenseReluDense`;
  let h: Tensor;
  if (ctx.config.is_gated_act) {
    // T5DenseGatedActDense: act(wi_0 x) * wi_1 x
    const act = ctx.config.dense_act_fn === 'relu' ? 'relu' : 'gelu';
    h = mul(linear(normed, param(ctx, `${ff}.wi_0.weight`), act), linear(normed, param(ctx, `${ff}.wi_1.weight`)));
  } else {
    h = linear(normed, param(ctx, `${ff}.wi.weight`), ctx.config.dense_act_fn === 'relu' ? 'relu' : 'gelu');
  }
  h = linear(ctx.dropout.apply(h), param(ctx, `${ff}.wo.weight`));
  return add(hidden, ctx.dropout.apply(h));
}

/** Additive padding mask [B, 1, 1, L] from a 0/1 attention mask. */
export function paddingMask(attentionMask: ArrayLike<number>, batch: number, length: number): Tensor {
  const m = new Float32Array(batch * length);
  for (let i = 0; i < m.length; i++) m[i] = attentionMask[i] ? 0 : MASK_MIN;
  return tensor(m, [batch, 1, 1, length]);
}

export interface EncoderInputs {
  inputIds: Tensor; // i32 [B, Ls]
  mask: Tensor; // additive [B, 1, 1, Ls]
}

/** T5Stack as encoder: embeddings, blocks of (self-attention, feed-forward), final norm. */
export function T5Encoder(ctx: ForwardContext, inp: EncoderInputs): Tensor {
  const c = ctx.config;
  const [, ls] = inp.inputIds.shape as [number, number];
  let h = ctx.dropout.apply(embedding(param(ctx, 'shared.weight'), inp.inputIds));
  const bias = computePositionBias(ctx, 'encoder.block.0.layer.0.SelfAttention', ls, ls, true);
  for (let i = 0; i < c.num_layers; i++) {
    const block = `encoder.block.${i}`;
    h = T5LayerSelfAttention(ctx, `${block}.layer.0`, h, { bias, mask: inp.mask });
    h = T5LayerFF(ctx, `${block}.layer.1`, h);
  }
  return ctx.dropout.apply(T5LayerNorm(ctx, 'encoder.final_layer_norm', h));
}

export interface DecoderInputs {
  decoderInputIds: Tensor; // i32 [B, Lt]
  encoderHidden: Tensor; // [B, Ls, D]
  encoderMask: Tensor; // additive [B, 1, 1, Ls]
}

/** T5Stack as decoder over a whole target sequence (training, scoring); generation has a cached variant. */
export function T5Decoder(ctx: ForwardContext, inp: DecoderInputs): Tensor {
  const c = ctx.config;
  const [, lt] = inp.decoderInputIds.shape as [number, number];
  let h = ctx.dropout.apply(embedding(param(ctx, 'shared.weight'), inp.decoderInputIds));
  const bias = computePositionBias(ctx, 'decoder.block.0.layer.0.SelfAttention', lt, lt, false);
  for (let i = 0; i < c.num_decoder_layers; i++) {
    const block = `decoder.block.${i}`;
    h = T5LayerSelfAttention(ctx, `${block}.layer.0`, h, { bias, causal: true });
    const crossKv = projectKeyValue(ctx, `${block}.layer.1.EncDecAttention`, inp.encoderHidden);
    h = T5LayerCrossAttention(ctx, `${block}.layer.1`, h, { mask: inp.encoderMask, keyValue: crossKv });
    h = T5LayerFF(ctx, `${block}.layer.2`, h);
  }
  return ctx.dropout.apply(T5LayerNorm(ctx, 'decoder.final_layer_norm', h));
}

/** Decoder output -> vocabulary logits [B, Lt, V]. */
export function lmHead(ctx: ForwardContext, sequenceOutput: Tensor): Tensor {
  const c = ctx.config;
  if (c.tie_word_embeddings) {
    return linear(scale(sequenceOutput, c.d_model ** -0.5), param(ctx, 'shared.weight'));
  }
  return linear(sequenceOutput, param(ctx, 'lm_head.weight'));
}

/** Hugging Face's `_shift_right`: decoder_start_token_id first, labels moved one right, -100 -> pad. */
export function shiftRight(labels: ArrayLike<number>, batch: number, length: number, config: T5Config): Int32Array {
  const out = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    out[b * length] = config.decoder_start_token_id;
    for (let t = 1; t < length; t++) {
      const v = labels[b * length + t - 1]!;
      out[b * length + t] = v === -100 ? config.pad_token_id : v;
    }
  }
  return out;
}

export interface Seq2SeqBatch {
  batchSize: number;
  sourceLength: number;
  targetLength: number;
  inputIds: Int32Array; // [B, Ls]
  attentionMask: Int32Array; // [B, Ls], 1 = token
  labels?: Int32Array; // [B, Lt], -100 = ignored
  decoderInputIds?: Int32Array; // [B, Lt]; default: shiftRight(labels)
}

export interface Seq2SeqOutput {
  logits: Tensor; // [B, Lt, V]
  encoderHidden: Tensor;
  loss?: Tensor; // scalar, mean over label tokens != -100
}

export function t5Forward(ctx: ForwardContext, batch: Seq2SeqBatch): Seq2SeqOutput {
  const { batchSize: b, sourceLength: ls, targetLength: lt } = batch;
  const inputIds = idsTensor(batch.inputIds, [b, ls]);
  const mask = paddingMask(batch.attentionMask, b, ls);
  const encoderHidden = T5Encoder(ctx, { inputIds, mask });
  const decIds = batch.decoderInputIds ?? (batch.labels ? shiftRight(batch.labels, b, lt, ctx.config) : undefined);
  if (!decIds) throw new Error('t5Forward: give labels or decoderInputIds');
  const decoderInputIds = idsTensor(decIds, [b, lt]);
  const out = T5Decoder(ctx, { decoderInputIds, encoderHidden, encoderMask: mask });
  const logits = lmHead(ctx, out);
  let loss: Tensor | undefined;
  if (batch.labels) {
    loss = crossEntropy(logits.reshape([b * lt, -1]), batch.labels, { ignoreIndex: -100 });
  }
  return { logits, encoderHidden, loss };
}

