// T5 as Hugging Face's `modeling_t5.py` (transformers 4.36) computes it, assembled from the engine's ops.
// Class and parameter names follow Hugging Face, so a checkpoint key maps to one `param(...)` call:
//   shared.weight                                        T5ForConditionalGeneration.shared
//   {encoder,decoder}.block.{i}.layer.0.SelfAttention.*  T5LayerSelfAttention -> T5Attention
//   decoder.block.{i}.layer.1.EncDecAttention.*           T5LayerCrossAttention -> T5Attention
//   {...}.layer.{1|2}.DenseReluDense.{wi,wi_0,wi_1,wo}   T5LayerFF -> T5DenseActDense / T5DenseGatedActDense
//   {...}.layer_norm.weight, {stack}.final_layer_norm.weight   T5LayerNorm (RMS: no mean, no bias)
//   lm_head.weight                                        only when embeddings are untied
// T5Stack -> T5Block -> layers serve the encoder, the decoder over a whole target, and the decoder one position
// at a time with Hugging Face's past_key_values (BlockCache; held by model/t5-decoder-cache.ts).
// What Hugging Face does and we match: no 1/sqrt(d_kv) scaling of scores; the relative position bias is
// computed by the first block of each stack and shared by the others (bidirectional buckets in the encoder,
// causal in the decoder; cross-attention has none); masks add finfo(float32).min; dropout after the
// embedding, on attention probabilities, inside the feed-forward, on each sublayer output and after the
// final norm; the tied LM head scales the decoder output by d_model ** -0.5.
// With `skipPadding` (model/token-rows.ts) everything but attention runs on a padded batch's real positions.
import { tensor, type Tensor } from '../engine/tensor.ts';
import { checkpoint } from '../engine/autograd.ts';
import { add, mul, scale, silu } from '../kernels/elementwise.ts';
import { matmul } from '../kernels/matmul.ts';
import { rmsNorm } from '../kernels/rmsnorm.ts';
import { attention } from '../kernels/attention.ts';
import { embedding, idsTensor } from '../kernels/embedding.ts';
import { crossEntropy } from '../kernels/cross-entropy.ts';
import { permute } from '../kernels/layout.ts';
import { dropout } from '../kernels/random.ts';
import type { T5Config } from './config.ts';
import { relativePositionBuckets } from './relative-position.ts';
import { TokenRows, type RowGroup } from './token-rows.ts';

/** torch.finfo(torch.float32).min: what Hugging Face adds at masked key positions */
export const MASK_MIN = -3.4028234663852886e38;

export type ParamMap = Map<string, Tensor>;

/** Dropout with a counter-based mask: `offset` advances by each call's element count, so a step's masks
 * depend only on (seed, step), not on batch order. */
export class DropoutState {
  offset = 0;
  constructor(public rate: number, public seed: number, public training: boolean) {}
  /** whether apply() drops anything */
  get active(): boolean {
    return this.training && this.rate > 0;
  }
  apply(x: Tensor): Tensor {
    if (!this.active) return x;
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
  /** Hugging Face's gradient_checkpointing: each block's activations are recomputed in the backward */
  gradientCheckpointing?: boolean;
  /** t5Forward skips a padded batch's padding (model/token-rows.ts): the encoder runs on the real source tokens,
   * the decoder on the target positions that have labels when those lead every row; the same loss, and the same
   * logits and encoder states at real positions, zeros at the others */
  skipPadding?: boolean;
  /** t5Forward's loss with label smoothing ε (kernels/cross-entropy.ts); 0 or undefined: the plain loss */
  labelSmoothing?: number;
}

export function param(ctx: ForwardContext, name: string): Tensor {
  const p = ctx.params.get(name);
  if (!p) throw new Error(`T5: parameter '${name}' is missing from the model`);
  return p;
}

/** nn.Linear without bias: x @ W^T, W stored [out, in] as in PyTorch; `residual` is added to the result (in
 * the matmul's store when no gradient is recorded). */
function linear(x: Tensor, w: Tensor, activation: 'none' | 'relu' | 'gelu' = 'none', residual?: Tensor): Tensor {
  return matmul(x, w, { transB: true, activation, residual });
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

/** One self-attention layer's `past_key_value` during incremental decoding: the keys/values of the positions
 * fed before. How they are stored (preallocated, reordered by beam) is the owner's business, so the owner also
 * runs the attention over them. */
export interface SelfAttentionCache {
  /** positions cached */
  readonly length: number;
  /** The layer's q, k and v weights stacked, [3, H*dk, d_model]: a step's three projections are one product (a
   * step's three small products are mostly fixed costs: 0.82 -> 0.62 ms at batch 1 on lavapipe). */
  readonly qkvWeight: Tensor;
  /** Stores this step's keys/values from that product, qkv [3, B, H, dk] (q, k, v), as position `length` and
   * returns the attention of its queries over every position so far with the position bias [1, H, 1, length + 1]:
   * [B, H, 1, dk]. */
  attend(qkv: Tensor, bias: Tensor): Tensor;
}

/** One decoder block's `past_key_value`: Hugging Face's (self k, self v, cross k, cross v). */
export interface BlockCache {
  self: SelfAttentionCache;
  /** projected once from the encoder output (`crossAttentionKeyValues`); every step reuses them. [inputs, H, Ls,
   * dk]: with beams, the decoder's rows are inputs x beams and the beams of one input share them. */
  cross: KeyValue;
}

export interface AttentionInputs {
  /** additive position bias [1|B, H, Lq, Lk], or none (cross-attention) */
  bias?: Tensor;
  /** additive mask broadcast to [B, H, Lq, Lk] (padding), without the causal part */
  mask?: Tensor;
  /** key j hidden from query i when j > i + Lk - Lq: with cached keys, the queries are the last Lq positions */
  causal?: boolean;
  /** keys/values projected already (cross-attention's, from the encoder output); default: projected from x */
  keyValue?: KeyValue;
  /** incremental decoding (Hugging Face's past_key_value with use_cache): x's keys/values join the cached ones
   * and the cache attends the queries over all of them (with `bias`) */
  past?: SelfAttentionCache;
  /** x is [1, T, D], the real positions of a padded batch (skipPadding): q, and k and v when projected here, go
   * back to the padded layout for the attention, and its output to the T rows */
  rows?: TokenRows;
  /** with `rows`, self-attention: the rows attend in these groups, each with its own bias and mask, instead */
  groups?: GroupAttention[];
}

/** One group of rows attending separately (TokenRows.attentionGroups), with its position bias and mask. */
export interface GroupAttention {
  group: RowGroup;
  /** [1, H, length, length] */
  bias: Tensor;
  /** additive [rows, 1, 1, length] */
  mask: Tensor;
}

/** Keys and values projected from x; when x holds a padded batch's real tokens (`rows`), in the padded layout. */
export function projectKeyValue(ctx: ForwardContext, prefix: string, x: Tensor, rows?: TokenRows): KeyValue {
  const { num_heads: h, d_kv: dk } = ctx.config;
  const project = (name: string) => {
    const y = linear(x, param(ctx, `${prefix}.${name}.weight`));
    return splitHeads(rows ? rows.pad(y) : y, h, dk);
  };
  return { k: project('k'), v: project('v') };
}

/** The attention output projected by `o`; `residual`, when given, is added to it (the caller's residual
 * connection, when no dropout comes between). */
export function T5Attention(ctx: ForwardContext, prefix: string, x: Tensor, inputs: AttentionInputs, residual?: Tensor): Tensor {
  const { num_heads: h, d_kv: dk } = ctx.config;
  let out: Tensor;
  if (inputs.past) {
    // decoding, one position: q, k and v in one product with the cache's stacked weights, [3, B, H*dk]; the
    // cache's [B, H, 1, dk] is the same memory as [B, 1, H, dk]
    const [b, , d] = x.shape as [number, number, number];
    const qkv = matmul(x.reshape([1, b, d]), inputs.past.qkvWeight, { transB: true }).reshape([3, b, h, dk]);
    out = inputs.past.attend(qkv, inputs.bias!).reshape([b, 1, h, dk]);
  } else {
    const rows = inputs.rows;
    const qRows = linear(x, param(ctx, `${prefix}.q.weight`));
    if (inputs.groups) {
      const grouped = groupedSelfAttention(ctx, prefix, x, splitHeads(qRows, h, dk), inputs.groups);
      return linear(mergeHeads(grouped), param(ctx, `${prefix}.o.weight`), 'none', residual);
    }
    const q = splitHeads(rows ? rows.pad(qRows) : qRows, h, dk);
    const kv = inputs.keyValue ?? projectKeyValue(ctx, prefix, x, rows);
    const [b, lq] = q.shape as [number, number];
    // dropout on the [B, H, Lq, Lk] probabilities, drawn inside the kernels as dropout(softmax(...)) would
    const dropout = ctx.dropout.draw(b * h * lq * kv.k.shape[1]!);
    out = attention(q, kv.k, kv.v, { bias: inputs.bias, mask: inputs.mask, causal: inputs.causal, dropout, layout: 'BLHD' });
    if (rows) out = rows.unpad(out);
  }
  return linear(mergeHeads(out), param(ctx, `${prefix}.o.weight`), 'none', residual);
}

/** Self-attention of a padded batch's real tokens x [1, T, D] (queries q [1, T, H, dk] projected already) in
 * groups of rows, each padded to its own length: [1, T, H, dk], each token's output from its group. */
function groupedSelfAttention(ctx: ForwardContext, prefix: string, x: Tensor, q: Tensor, groups: GroupAttention[]): Tensor {
  const h = ctx.config.num_heads;
  const { k, v } = projectKeyValue(ctx, prefix, x);
  let out: Tensor | undefined;
  for (const { group, bias, mask } of groups) {
    const dropout = ctx.dropout.draw(group.rows.length * h * group.length * group.length);
    const part = group.unpad(attention(group.pad(q), group.pad(k), group.pad(v), { bias, mask, dropout, layout: 'BLHD' }));
    out = out ? add(out, part) : part;
  }
  return out!;
}

/** `past`: the layer's cache during incremental decoding, extended by this step's keys/values. */
export function T5LayerSelfAttention(
  ctx: ForwardContext, prefix: string, hidden: Tensor, inputs: Pick<AttentionInputs, 'bias' | 'mask' | 'causal' | 'rows' | 'groups'>,
  past?: SelfAttentionCache,
): Tensor {
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  // without dropout the residual add rides in the o-projection's store (one kernel less per layer)
  if (!ctx.dropout.active) return T5Attention(ctx, `${prefix}.SelfAttention`, normed, { ...inputs, past }, hidden);
  const out = T5Attention(ctx, `${prefix}.SelfAttention`, normed, { ...inputs, past });
  return add(hidden, ctx.dropout.apply(out));
}

/** What a decoder block's cross-attention attends over. */
export interface EncoderOutput {
  /** [B, Ls, D]; not needed when every block's cache holds its cross-attention keys/values */
  hidden?: Tensor;
  /** additive padding mask [B, 1, 1, Ls] (B inputs, as the cached keys/values) */
  mask: Tensor;
  /** `hidden` is [1, T, D], the real tokens of a padded [B, Ls] batch */
  rows?: TokenRows;
}

/** Cross-attention's keys/values from the encoder output; they depend on no decoder position. */
function crossKeyValue(ctx: ForwardContext, prefix: string, encoderHidden: Tensor, rows?: TokenRows): KeyValue {
  return projectKeyValue(ctx, `${prefix}.EncDecAttention`, encoderHidden, rows);
}

/** Attends over the encoder output, or over its keys/values projected before (`past`, reused at every step).
 * When those are per input and `hidden`'s rows are inputs x beams, each input's rows attend as more query
 * positions of that input: cross-attention has no causal mask, so every query position is independent.
 * `rows`: `hidden` is [1, T, D], the real positions of a padded target batch (the queries then attend padded). */
export function T5LayerCrossAttention(
  ctx: ForwardContext, prefix: string, hidden: Tensor, encoder: EncoderOutput, past?: KeyValue, rows?: TokenRows,
): Tensor {
  const keyValue = past ?? (encoder.hidden && crossKeyValue(ctx, prefix, encoder.hidden, encoder.rows));
  if (!keyValue) throw new Error(`${prefix}: cross-attention needs the encoder output or its cached keys/values`);
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  const queries = rows ? normed : normed.reshape([keyValue.k.shape[0]!, -1, normed.shape[2]!]);
  const inputs = { mask: encoder.mask, keyValue, rows };
  if (!ctx.dropout.active) {
    const residual = hidden.reshape(queries.shape);
    return T5Attention(ctx, `${prefix}.EncDecAttention`, queries, inputs, residual).reshape(hidden.shape);
  }
  const out = T5Attention(ctx, `${prefix}.EncDecAttention`, queries, inputs);
  return add(hidden, ctx.dropout.apply(out.reshape(hidden.shape)));
}

export function T5LayerFF(ctx: ForwardContext, prefix: string, hidden: Tensor): Tensor {
  const normed = T5LayerNorm(ctx, `${prefix}.layer_norm`, hidden);
  const ff = `${prefix}.DenseReluDense`;
  let h: Tensor;
  // relu and gelu_new run in the matmul's epilogue; SiLU (UL2's "gated-silu") as an op of its own
  const act = ctx.config.dense_act_fn;
  const activated = (w: Tensor) => (act === 'silu' ? silu(linear(normed, w)) : linear(normed, w, act === 'relu' ? 'relu' : 'gelu'));
  if (ctx.config.is_gated_act) {
    // T5DenseGatedActDense: act(wi_0 x) * wi_1 x
    h = mul(activated(param(ctx, `${ff}.wi_0.weight`)), linear(normed, param(ctx, `${ff}.wi_1.weight`)));
  } else {
    h = activated(param(ctx, `${ff}.wi.weight`));
  }
  if (!ctx.dropout.active) return linear(h, param(ctx, `${ff}.wo.weight`), 'none', hidden);
  h = linear(ctx.dropout.apply(h), param(ctx, `${ff}.wo.weight`));
  return add(hidden, ctx.dropout.apply(h));
}

export interface BlockInputs {
  /** self-attention position bias, computed by the stack's first block and shared by the others */
  bias: Tensor;
  /** self-attention padding mask (encoder) */
  mask?: Tensor;
  /** `hidden` is [1, T, D], the real tokens of a padded batch (the encoder's, described by `mask`, or the
   * decoder's leading target positions) */
  rows?: TokenRows;
  /** encoder with `rows`: self-attention in these groups of rows (TokenRows.attentionGroups) */
  groups?: GroupAttention[];
  /** decoder blocks only: causal self-attention, then cross-attention over the encoder output */
  encoder?: EncoderOutput;
}

/** Self-attention, cross-attention when a decoder block, feed-forward: layer.0, layer.1[, layer.2]. */
export function T5Block(
  ctx: ForwardContext, prefix: string, hidden: Tensor, inputs: BlockInputs, past?: BlockCache,
): Tensor {
  const isDecoder = inputs.encoder !== undefined;
  const selfInputs = { bias: inputs.bias, mask: inputs.mask, causal: isDecoder, rows: inputs.rows, groups: inputs.groups };
  let h = T5LayerSelfAttention(ctx, `${prefix}.layer.0`, hidden, selfInputs, past?.self);
  if (inputs.encoder) h = T5LayerCrossAttention(ctx, `${prefix}.layer.1`, h, inputs.encoder, past?.cross, inputs.rows);
  return T5LayerFF(ctx, `${prefix}.layer.${isDecoder ? 2 : 1}`, h);
}

/**
 * T5Block under activation checkpointing (HF's `gradient_checkpointing`): only the block's inputs are kept for
 * the backward, which runs the block again. The recomputation replays the block's dropout masks: they are
 * numbered from the offset the block started at.
 */
function checkpointedBlock(ctx: ForwardContext, prefix: string, hidden: Tensor, inputs: BlockInputs): Tensor {
  const start = ctx.dropout.offset;
  const enc = inputs.encoder;
  const groups = inputs.groups ?? [];
  const ts = [hidden, inputs.bias, inputs.mask ?? null, enc?.hidden ?? null, enc?.mask ?? null, ...groups.flatMap((g) => [g.bias, g.mask])];
  const present = ts.filter((t): t is Tensor => t !== null);
  return checkpoint(`${prefix} (checkpointed)`, present, (args) => {
    const it = args[Symbol.iterator]();
    const [h, bias, mask, encHidden, encMask, ...groupTensors] = ts.map((t) => (t ? it.next().value! : undefined));
    const before = ctx.dropout.offset;
    ctx.dropout.offset = start;
    try {
      return T5Block(ctx, prefix, h!, {
        bias: bias!, mask, rows: inputs.rows, encoder: enc ? { hidden: encHidden, mask: encMask!, rows: enc.rows } : undefined,
        groups: inputs.groups?.map((g, i) => ({ group: g.group, bias: groupTensors[2 * i]!, mask: groupTensors[2 * i + 1]! })),
      });
    } finally {
      if (before !== start) ctx.dropout.offset = before; // a recomputation leaves the offset where it found it
    }
  });
}

export interface StackInputs {
  inputIds: Tensor; // i32 [B, L], or [1, T] with `rows`
  /** encoder: additive padding mask [B, 1, 1, L] */
  mask?: Tensor;
  /** `inputIds` are the real tokens of a padded [B, L] batch (model/token-rows.ts): the encoder's (`mask`
   * describes them), or the decoder's leading positions, those with a label (causal: the others cannot change
   * them) */
  rows?: TokenRows;
  /** decoder: the encoder output its cross-attention attends over */
  encoder?: EncoderOutput;
  /** decoder, incremental: every block's past keys/values (Hugging Face's past_key_values); `inputIds` are
   * the positions after the cached ones */
  past?: BlockCache[];
}

/** Embeddings, blocks, final norm: the encoder, or the decoder when given `encoder`. */
export function T5Stack(ctx: ForwardContext, inputs: StackInputs): Tensor {
  const c = ctx.config;
  const stack = inputs.encoder ? 'decoder' : 'encoder';
  const layers = inputs.encoder ? c.num_decoder_layers : c.num_layers;
  const length = inputs.rows?.length ?? inputs.inputIds.shape[1]!;
  const pastLength = inputs.past?.[0]?.self.length ?? 0;
  let h = ctx.dropout.apply(embedding(param(ctx, 'shared.weight'), inputs.inputIds));
  // Hugging Face computes the bias for all past + new positions and keeps the last `length` query rows
  const bias = computePositionBias(
    ctx, `${stack}.block.0.layer.0.SelfAttention`, length, pastLength + length, !inputs.encoder, pastLength,
  );
  // the encoder's self-attention in groups of rows when that skips enough of the padding
  const groups = !inputs.encoder && inputs.rows ? inputs.rows.attentionGroups()?.map((group) => ({
    group,
    bias: group.length === length ? bias : computePositionBias(ctx, `${stack}.block.0.layer.0.SelfAttention`, group.length, group.length, true),
    mask: paddingMask(group.attentionMask, group.rows.length, group.length),
  })) : undefined;
  for (let i = 0; i < layers; i++) {
    const blockInputs = { bias, mask: inputs.mask, rows: inputs.rows, groups, encoder: inputs.encoder };
    h = ctx.gradientCheckpointing && !inputs.past
      ? checkpointedBlock(ctx, `${stack}.block.${i}`, h, blockInputs)
      : T5Block(ctx, `${stack}.block.${i}`, h, blockInputs, inputs.past?.[i]);
  }
  return ctx.dropout.apply(T5LayerNorm(ctx, `${stack}.final_layer_norm`, h));
}

/** Every decoder block's cross-attention keys/values: what Hugging Face's first cached step computes and the
 * later steps reuse. */
export function crossAttentionKeyValues(ctx: ForwardContext, encoderHidden: Tensor, rows?: TokenRows): KeyValue[] {
  return Array.from({ length: ctx.config.num_decoder_layers }, (_, i) =>
    crossKeyValue(ctx, `decoder.block.${i}.layer.1`, encoderHidden, rows),
  );
}

/** Additive padding mask [B, 1, 1, L] from a 0/1 attention mask. */
export function paddingMask(attentionMask: ArrayLike<number>, batch: number, length: number): Tensor {
  const m = new Float32Array(batch * length);
  for (let i = 0; i < m.length; i++) m[i] = attentionMask[i] ? 0 : MASK_MIN;
  return tensor(m, [batch, 1, 1, length]);
}

export interface EncoderInputs {
  inputIds: Tensor; // i32 [B, Ls], or [1, T] with `rows`
  mask: Tensor; // additive [B, 1, 1, Ls]
  /** `inputIds` are the real tokens of the padded batch; the output is then [1, T, D] */
  rows?: TokenRows;
}

export function T5Encoder(ctx: ForwardContext, inp: EncoderInputs): Tensor {
  return T5Stack(ctx, { inputIds: inp.inputIds, mask: inp.mask, rows: inp.rows });
}

/** The encoder over a padded [batch, length] batch; with `skipPadding`, over its real tokens only (the output,
 * [1, T, D], comes with the `rows` that say where they sit). */
export function encodeBatch(
  ctx: ForwardContext, inputIds: ArrayLike<number>, attentionMask: ArrayLike<number>, batch: number, length: number, skipPadding: boolean,
): { hidden: Tensor; mask: Tensor; rows?: TokenRows } {
  const mask = paddingMask(attentionMask, batch, length);
  // a source row of padding only is encoded whole, as HF does: its decoder rows attend (uniformly, every key
  // masked alike) over its encoder states at padded positions, which a skip would leave as zeros
  const skip = skipPadding && everyRowHasAToken(attentionMask, batch, length);
  const rows = skip ? TokenRows.of(attentionMask, batch, length) : undefined;
  const ids = rows ? idsTensor(rows.select(inputIds), [1, rows.tokens]) : idsTensor(inputIds, [batch, length]);
  return { hidden: T5Encoder(ctx, { inputIds: ids, mask, rows }), mask, rows };
}

function everyRowHasAToken(attentionMask: ArrayLike<number>, batch: number, length: number): boolean {
  for (let b = 0; b < batch; b++) {
    let any = false;
    for (let l = 0; l < length && !any; l++) any = attentionMask[b * length + l] !== 0;
    if (!any) return false;
  }
  return true;
}

export interface DecoderInputs {
  decoderInputIds: Tensor; // i32 [B, Lt], or [1, Tt] with `rows`
  encoderHidden: Tensor; // [B, Ls, D], or [1, T, D] with `encoderRows`
  encoderMask: Tensor; // additive [B, 1, 1, Ls]
  encoderRows?: TokenRows;
  /** the decoder positions computed, leading ones of each row (the output is then [1, Tt, D]) */
  rows?: TokenRows;
}

/** The decoder over a whole target sequence (training, scoring); generation feeds it one position at a time
 * with a cache (t5-decoder-cache.ts). */
export function T5Decoder(ctx: ForwardContext, inp: DecoderInputs): Tensor {
  return T5Stack(ctx, {
    inputIds: inp.decoderInputIds, rows: inp.rows,
    encoder: { hidden: inp.encoderHidden, mask: inp.encoderMask, rows: inp.encoderRows },
  });
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
  /** [B, Lt, V]; with skipPadding, zeros at positions without a label when the decoder skipped them */
  logits: Tensor;
  /** [B, Ls, D]; with skipPadding, zeros at padded positions (unless a source row has no token: then none skip) */
  encoderHidden: Tensor;
  loss?: Tensor; // scalar, mean over label tokens != -100
}

export function t5Forward(ctx: ForwardContext, batch: Seq2SeqBatch): Seq2SeqOutput {
  const { batchSize: b, sourceLength: ls, targetLength: lt } = batch;
  const enc = encodeBatch(ctx, batch.inputIds, batch.attentionMask, b, ls, ctx.skipPadding ?? false);
  const decIds = batch.decoderInputIds ?? (batch.labels ? shiftRight(batch.labels, b, lt, ctx.config) : undefined);
  if (!decIds) throw new Error('t5Forward: give labels or decoderInputIds');
  // the decoder skips the positions without a label when they end every row: causal attention keeps them from
  // changing the others, and the loss does not read their logits
  const labels = batch.labels;
  const rows = ctx.skipPadding && labels ? TokenRows.leading(labels.map((v) => (v === -100 ? 0 : 1)), b, lt) : undefined;
  const decoderInputIds = rows ? idsTensor(rows.select(decIds), [1, rows.tokens]) : idsTensor(decIds, [b, lt]);
  const out = T5Decoder(ctx, { decoderInputIds, rows, encoderHidden: enc.hidden, encoderMask: enc.mask, encoderRows: enc.rows });
  const logits = lmHead(ctx, out);
  let loss: Tensor | undefined;
  if (labels) {
    const targets = rows ? rows.select(labels) : labels;
    loss = crossEntropy(logits.reshape([targets.length, -1]), targets, { ignoreIndex: -100, labelSmoothing: ctx.labelSmoothing });
  }
  // with skipPadding the padded layouts are gathered only when read: a training or evaluation step reads the loss
  // alone (t5-base at the tutorial's batch 8 x 128 targets: 131 MB of logits a step). Getters of a plain object,
  // so a `tidy` returning the output reads them, and keeps what they gather, before its scope is freed.
  const padded = (t: Tensor, r: TokenRows | undefined): (() => Tensor) => {
    let once: Tensor | undefined;
    return () => (once ??= r ? r.pad(t) : t);
  };
  const paddedLogits = padded(logits, rows);
  const paddedEncoder = padded(enc.hidden, enc.rows);
  return {
    get logits() {
      return paddedLogits();
    },
    get encoderHidden() {
      return paddedEncoder();
    },
    loss,
  };
}

