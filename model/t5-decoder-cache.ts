// Incremental decoding for generation: the encoder runs once; each decoder step feeds one token per row
// (rows = inputs x beams), appends that step's self-attention keys/values to a cache, and reuses the
// cross-attention keys/values computed once from the encoder output. A step costs one decoder pass over
// one position instead of a re-run of the whole prefix.
import { noGrad } from '../engine/autograd.ts';
import { tensor, type Tensor } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { embedding, idsTensor } from '../kernels/embedding.ts';
import { concat } from '../kernels/layout.ts';
import {
  computePositionBias, lmHead, paddingMask, projectKeyValue, T5Attention, T5Encoder, T5LayerFF, T5LayerNorm,
  type ForwardContext, type KeyValue,
} from './t5.ts';
import { add } from '../kernels/elementwise.ts';

/** Rows of `x` (first axis) picked by `rows`: beam expansion and cache reordering. */
function gatherRows(x: Tensor, rows: Tensor): Tensor {
  const [n, ...rest] = x.shape as [number, ...number[]];
  const width = rest.reduce((a, b) => a * b, 1);
  return embedding(x.reshape([n, width]), rows).reshape([rows.size, ...rest]);
}

export class T5DecoderCache {
  private selfKv: KeyValue[] = [];
  private crossKv: KeyValue[];
  private encoderMask: Tensor;
  /** tokens fed so far (the position of the next one) */
  length = 0;
  readonly rows: number;

  /** Runs the encoder on `batch` inputs and prepares `beams` decoder rows per input. */
  constructor(
    private readonly ctx: ForwardContext,
    inputIds: Int32Array,
    attentionMask: Int32Array,
    batch: number,
    sourceLength: number,
    beams: number,
  ) {
    this.rows = batch * beams;
    const made = noGrad(() =>
      tidy(() => {
        const ids = idsTensor(inputIds, [batch, sourceLength]);
        const mask = paddingMask(attentionMask, batch, sourceLength);
        const enc = T5Encoder(ctx, { inputIds: ids, mask });
        const expand = tensor(Int32Array.from({ length: this.rows }, (_, r) => Math.floor(r / beams)), [this.rows], { dtype: 'i32' });
        const rowMask = gatherRows(mask, expand);
        const rowEnc = beams === 1 ? enc : gatherRows(enc, expand);
        const cross = Array.from({ length: ctx.config.num_decoder_layers }, (_, i) =>
          projectKeyValue(ctx, `decoder.block.${i}.layer.1.EncDecAttention`, rowEnc),
        );
        return { rowMask, cross };
      }),
    );
    for (const kv of made.cross) kv.k.keep(), kv.v.keep();
    this.crossKv = made.cross;
    this.encoderMask = made.rowMask.keep();
  }

  /** Feeds one token per row; returns next-token logits [rows, vocab] on the GPU. */
  step(tokens: Int32Array): Tensor {
    if (tokens.length !== this.rows) throw new RangeError(`decoder step: ${tokens.length} tokens for ${this.rows} rows`);
    const ctx = this.ctx;
    const pos = this.length;
    const newKv: KeyValue[] = [];
    const logits = noGrad(() =>
      tidy(() => {
        const ids = idsTensor(tokens, [this.rows, 1]);
        let h = embedding(ctx.params.get('shared.weight')!, ids);
        const bias = computePositionBias(ctx, 'decoder.block.0.layer.0.SelfAttention', 1, pos + 1, false, pos);
        for (let i = 0; i < ctx.config.num_decoder_layers; i++) {
          const block = `decoder.block.${i}`;
          const normed = T5LayerNorm(ctx, `${block}.layer.0.layer_norm`, h);
          const step = projectKeyValue(ctx, `${block}.layer.0.SelfAttention`, normed);
          const past = this.selfKv[i];
          const kv = past ? { k: concat([past.k, step.k], 1), v: concat([past.v, step.v], 1) } : step;
          newKv.push(kv);
          // one query sees every cached key: nothing to mask causally
          h = add(h, T5Attention(ctx, `${block}.layer.0.SelfAttention`, normed, { bias, keyValue: kv }));
          const normed2 = T5LayerNorm(ctx, `${block}.layer.1.layer_norm`, h);
          h = add(h, T5Attention(ctx, `${block}.layer.1.EncDecAttention`, normed2, { mask: this.encoderMask, keyValue: this.crossKv[i] }));
          h = T5LayerFF(ctx, `${block}.layer.2`, h);
        }
        const out = T5LayerNorm(ctx, 'decoder.final_layer_norm', h);
        for (const kv of newKv) kv.k.keep(), kv.v.keep();
        return lmHead(ctx, out).reshape([this.rows, -1]);
      }),
    );
    for (const kv of this.selfKv) kv.k.dispose(), kv.v.dispose();
    this.selfKv = newKv;
    this.length++;
    return logits;
  }

  /** New row r continues old row beamIdx[r] (Hugging Face's `_reorder_cache`). */
  reorder(beamIdx: Int32Array): void {
    let identity = true;
    for (let r = 0; r < beamIdx.length; r++) if (beamIdx[r] !== r) identity = false;
    if (identity) return;
    noGrad(() => {
      const idx = tensor(beamIdx, [beamIdx.length], { dtype: 'i32' });
      this.selfKv = this.selfKv.map((kv) => {
        const next = { k: gatherRows(kv.k, idx).keep(), v: gatherRows(kv.v, idx).keep() };
        kv.k.dispose();
        kv.v.dispose();
        return next;
      });
      idx.dispose();
    });
  }

  dispose(): void {
    for (const kv of [...this.selfKv, ...this.crossKv]) kv.k.dispose(), kv.v.dispose();
    this.selfKv = [];
    this.crossKv = [];
    this.encoderMask.dispose();
  }
}
