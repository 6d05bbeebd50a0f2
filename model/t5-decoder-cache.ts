// Incremental decoding for generation: the encoder runs once; each decoder step feeds one token per row
// (rows = inputs x beams) through the decoder stack of t5.ts with every block's cache (Hugging Face's
// past_key_values). A step costs one decoder pass over one position instead of a re-run of the whole prefix.
// - Self-attention keys/values go into caches preallocated for the generation's length, written in place (one
//   buffer copy per layer and step), position-major [capacity, rows, H, dk]; a beam reorder (HF's
//   `_reorder_cache`) rewrites only a table of which physical row holds each row's past position, which
//   kernels/attention-decode.ts reads through. Nothing is copied per step but the new position.
// - Cross-attention keys/values are projected once from the encoder output, per input: the beams of one input
//   share them (t5.ts's T5LayerCrossAttention groups the rows by input).
import { noGrad } from '../engine/autograd.ts';
import { rt } from '../engine/runtime.ts';
import { empty, tensor, Tensor } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { decodeAttention } from '../kernels/attention-decode.ts';
import { idsTensor } from '../kernels/embedding.ts';
import {
  crossAttentionKeyValues, encodeBatch, lmHead, param, T5Stack,
  type ForwardContext, type KeyValue, type SelfAttentionCache,
} from './t5.ts';

/** Decoder positions preallocated when the caller does not say how many it will feed; more double it. */
const DEFAULT_CAPACITY = 16;

/** Which physical row holds each row's past keys/values, for every layer at once (they all reorder alike):
 * row r's position j lives in row src[j * rows + r]. Position-major, so a step's table is a prefix. */
class SlotTable {
  /** positions stored */
  length = 0;
  /** the table of the step in progress, i32 [length + 1, rows]; freed with the step's `tidy` */
  current?: Tensor;
  private src: Int32Array;

  constructor(readonly rows: number, public capacity: number) {
    this.src = new Int32Array(rows * capacity);
  }

  /** Uploads the table for the step writing position `length`, which every row writes into its own row. */
  beginStep(): void {
    const { rows, length } = this;
    if (length === this.capacity) {
      this.capacity *= 2;
      const grown = new Int32Array(rows * this.capacity);
      grown.set(this.src);
      this.src = grown;
    }
    for (let r = 0; r < rows; r++) this.src[length * rows + r] = r;
    this.current = tensor(this.src.subarray(0, (length + 1) * rows), [length + 1, rows], { dtype: 'i32' });
  }

  endStep(): void {
    this.length++;
    this.current = undefined;
  }

  /** New row r continues old row beamIdx[r]. */
  reorder(beamIdx: Int32Array): void {
    const { rows } = this;
    const old = this.src.slice(0, this.length * rows);
    for (let j = 0; j < this.length; j++) {
      for (let r = 0; r < rows; r++) this.src[j * rows + r] = old[j * rows + beamIdx[r]!]!;
    }
  }
}

/** One self-attention layer's keys/values [capacity, rows, H, dk], allocated at the first step and kept until
 * `dispose`; position t is written once, at step t. */
class PreallocatedKvCache implements SelfAttentionCache {
  private k?: Tensor;
  private v?: Tensor;

  /** `qkvWeight`: the layer's q, k, v weights stacked [3, H*dk, d_model] (owned by the decoder cache) */
  constructor(private readonly table: SlotTable, readonly qkvWeight: Tensor) {}

  get length(): number {
    return this.table.length;
  }

  /** The step's stacked projections [3, rows, H, dk]: k and v are copied into the cache from their blocks, and the
   * decode kernel reads q from the first. */
  attend(qkv: Tensor, bias: Tensor): Tensor {
    const [n, rows, heads, dk] = qkv.shape as [number, number, number, number];
    if (n !== 3 || rows !== this.table.rows) {
      throw new RangeError(`decoder cache: expected stacked q, k, v [3, ${this.table.rows}, H, dk], got [${qkv.shape}]`);
    }
    const position = this.table.length;
    this.reserve(heads, dk);
    const bytes = rows * heads * dk * 4;
    rt().copy(qkv.buffer, bytes, this.k!.buffer, position * bytes, bytes);
    rt().copy(qkv.buffer, 2 * bytes, this.v!.buffer, position * bytes, bytes);
    const out = decodeAttention({ q: qkv, k: this.k!, v: this.v!, src: this.table.current!, bias: bias.reshape([heads, position + 1]) });
    return out.reshape([rows, heads, 1, dk]);
  }

  /** Buffers for the table's capacity; growing copies the positions stored (one contiguous prefix). */
  private reserve(heads: number, dk: number): void {
    const capacity = this.table.capacity;
    if (this.k && this.k.shape[0] === capacity) return;
    const shape = [capacity, this.table.rows, heads, dk];
    const k = empty(shape).keep();
    const v = empty(shape).keep();
    if (this.k && this.v) {
      const bytes = this.table.length * this.table.rows * heads * dk * 4;
      rt().copy(this.k.buffer, 0, k.buffer, 0, bytes);
      rt().copy(this.v.buffer, 0, v.buffer, 0, bytes);
    }
    this.dispose();
    this.k = k;
    this.v = v;
  }

  dispose(): void {
    this.k?.dispose();
    this.v?.dispose();
    this.k = this.v = undefined;
  }
}

/** The attention's q, k and v weights [H*dk, d_model] copied into one [3, H*dk, d_model] tensor. */
function stackedQkv(ctx: ForwardContext, prefix: string): Tensor {
  const ws = ['q', 'k', 'v'].map((n) => param(ctx, `${prefix}.${n}.weight`));
  const out = empty([3, ...ws[0]!.shape]).keep();
  ws.forEach((w, i) => rt().copy(w.buffer, 0, out.buffer, i * w.bytes, w.bytes));
  return out;
}

export class T5DecoderCache {
  private blocks: Array<{ self: PreallocatedKvCache; cross: KeyValue }>;
  private qkvWeights: Tensor[];
  private encoderMask: Tensor;
  private table: SlotTable;
  readonly rows: number;

  /**
   * Runs the encoder on `batch` inputs and prepares `beams` decoder rows per input, with self-attention caches
   * for `maxPositions` decoder positions (generation's max_length - 1); feeding more grows them.
   */
  constructor(
    private readonly ctx: ForwardContext,
    inputIds: Int32Array,
    attentionMask: Int32Array,
    batch: number,
    sourceLength: number,
    beams: number,
    maxPositions = DEFAULT_CAPACITY,
  ) {
    this.rows = batch * beams;
    const made = noGrad(() =>
      tidy(() => {
        // the encoder output is only read through the cross-attention keys/values: padding rows can be skipped
        const enc = encodeBatch(ctx, inputIds, attentionMask, batch, sourceLength, true);
        return { mask: enc.mask, cross: crossAttentionKeyValues(ctx, enc.hidden, enc.rows) };
      }),
    );
    for (const kv of made.cross) kv.k.keep(), kv.v.keep();
    this.table = new SlotTable(this.rows, Math.max(1, maxPositions));
    // each self-attention's q, k, v weights stacked for this generation (a copy, so a later training step cannot
    // leave it stale): one product a step instead of three
    this.qkvWeights = made.cross.map((_, i) => stackedQkv(ctx, `decoder.block.${i}.layer.0.SelfAttention`));
    this.blocks = made.cross.map((cross, i) => ({ self: new PreallocatedKvCache(this.table, this.qkvWeights[i]!), cross }));
    this.encoderMask = made.mask.keep();
  }

  /** tokens fed so far (the position of the next one) */
  get length(): number {
    return this.table.length;
  }

  /** Feeds one token per row (host ids, or i32 ids already on the GPU: greedy search's own choice of the step
   * before); returns next-token logits [rows, vocab] on the GPU. */
  step(tokens: Int32Array | Tensor): Tensor {
    return this.stepWithHidden(tokens, false).logits;
  }

  /** As step(), also returning the decoder's output [rows, d_model] (after its final layer norm: HF's last
   * `decoder_hidden_states`, what contrastive search compares) when `hidden`. */
  stepWithHidden(tokens: Int32Array | Tensor, hidden = true): { logits: Tensor; hidden?: Tensor } {
    const n = tokens instanceof Tensor ? tokens.size : tokens.length;
    if (n !== this.rows || (tokens instanceof Tensor && tokens.dtype !== 'i32')) {
      throw new RangeError(`decoder step: ${n} tokens for ${this.rows} rows${tokens instanceof Tensor ? ` (${tokens.describe()})` : ''}`);
    }
    const ctx = this.ctx;
    const out = noGrad(() =>
      tidy(() => {
        const inputIds = tokens instanceof Tensor ? tokens.reshape([this.rows, 1]) : idsTensor(tokens, [this.rows, 1]);
        this.table.beginStep();
        const states = T5Stack(ctx, { inputIds, encoder: { mask: this.encoderMask }, past: this.blocks });
        const logits = lmHead(ctx, states).reshape([this.rows, -1]);
        return hidden ? { logits, hidden: states.reshape([this.rows, -1]) } : { logits };
      }),
    );
    this.table.endStep();
    return out;
  }

  /** New row r continues old row beamIdx[r] (Hugging Face's `_reorder_cache`): only the table changes. */
  reorder(beamIdx: Int32Array): void {
    if (beamIdx.length !== this.rows) throw new RangeError(`decoder cache reorder: ${beamIdx.length} indices for ${this.rows} rows`);
    this.table.reorder(beamIdx);
  }

  dispose(): void {
    for (const block of this.blocks) {
      block.self.dispose();
      block.cross.k.dispose();
      block.cross.v.dispose();
    }
    this.blocks = [];
    for (const w of this.qkvWeights) w.dispose();
    this.qkvWeights = [];
    this.encoderMask.dispose();
  }
}
