// Incremental decoding for generation: the encoder runs once; each decoder step feeds one token per row
// (rows = inputs x beams) through the decoder stack of t5.ts with every block's cache (Hugging Face's
// past_key_values): self-attention keys/values grow by one position a step, cross-attention keys/values are
// projected once from the encoder output. A step costs one decoder pass over one position instead of a re-run
// of the whole prefix.
import { noGrad } from '../engine/autograd.ts';
import { tensor, type Tensor } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { embedding, idsTensor } from '../kernels/embedding.ts';
import { concat } from '../kernels/layout.ts';
import {
  crossAttentionKeyValues, lmHead, paddingMask, T5Encoder, T5Stack,
  type ForwardContext, type KeyValue, type SelfAttentionCache,
} from './t5.ts';

/** Rows of `x` (first axis) picked by `rows`: beam expansion and cache reordering. */
function gatherRows(x: Tensor, rows: Tensor): Tensor {
  const [n, ...rest] = x.shape as [number, ...number[]];
  const width = rest.reduce((a, b) => a * b, 1);
  return embedding(x.reshape([n, width]), rows).reshape([rows.size, ...rest]);
}

/** One self-attention layer's keys/values [rows, length, H, dk], grown by concatenation each step. Its
 * tensors outlive the step's `tidy`; the ones an append or reorder replaces are freed. */
class ConcatKvCache implements SelfAttentionCache {
  private kv?: KeyValue;

  get length(): number {
    return this.kv?.k.shape[1] ?? 0;
  }

  append(step: KeyValue): KeyValue {
    const past = this.kv;
    this.replace(past ? { k: concat([past.k, step.k], 1), v: concat([past.v, step.v], 1) } : step);
    return this.kv!;
  }

  /** New row r continues old row beamIdx[r]. */
  reorder(beamIdx: Tensor): void {
    if (this.kv) this.replace({ k: gatherRows(this.kv.k, beamIdx), v: gatherRows(this.kv.v, beamIdx) });
  }

  private replace(next: KeyValue): void {
    next.k.keep();
    next.v.keep();
    this.dispose();
    this.kv = next;
  }

  dispose(): void {
    this.kv?.k.dispose();
    this.kv?.v.dispose();
    this.kv = undefined;
  }
}

export class T5DecoderCache {
  private blocks: Array<{ self: ConcatKvCache; cross: KeyValue }>;
  private encoderMask: Tensor;
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
        return { rowMask, cross: crossAttentionKeyValues(ctx, rowEnc) };
      }),
    );
    for (const kv of made.cross) kv.k.keep(), kv.v.keep();
    this.blocks = made.cross.map((cross) => ({ self: new ConcatKvCache(), cross }));
    this.encoderMask = made.rowMask.keep();
  }

  /** tokens fed so far (the position of the next one) */
  get length(): number {
    return this.blocks[0]?.self.length ?? 0;
  }

  /** Feeds one token per row; returns next-token logits [rows, vocab] on the GPU. */
  step(tokens: Int32Array): Tensor {
    if (tokens.length !== this.rows) throw new RangeError(`decoder step: ${tokens.length} tokens for ${this.rows} rows`);
    const ctx = this.ctx;
    return noGrad(() =>
      tidy(() => {
        const inputIds = idsTensor(tokens, [this.rows, 1]);
        const out = T5Stack(ctx, { inputIds, encoder: { mask: this.encoderMask }, past: this.blocks });
        return lmHead(ctx, out).reshape([this.rows, -1]);
      }),
    );
  }

  /** New row r continues old row beamIdx[r] (Hugging Face's `_reorder_cache`). */
  reorder(beamIdx: Int32Array): void {
    let identity = true;
    for (let r = 0; r < beamIdx.length; r++) if (beamIdx[r] !== r) identity = false;
    if (identity) return;
    // tidy frees gatherRows' reshaped views, which would otherwise hold the replaced buffers
    noGrad(() =>
      tidy(() => {
        const idx = tensor(beamIdx, [beamIdx.length], { dtype: 'i32' });
        for (const block of this.blocks) block.self.reorder(idx);
      }),
    );
  }

  dispose(): void {
    for (const block of this.blocks) {
      block.self.dispose();
      block.cross.k.dispose();
      block.cross.v.dispose();
    }
    this.blocks = [];
    this.encoderMask.dispose();
  }
}
