// A padded batch's real tokens as rows. T5's encoder then runs its row-wise work (embedding, norms, q/k/v/o
// projections, feed-forward, residuals, dropout) on the T real tokens instead of B x L positions, and only the
// attention on the padded [B, L] layout that its kernels and masks need. This is what PyTorch's nested-tensor
// fast path does for nn.TransformerEncoder (`enable_nested_tensor`): real positions get the same values; the
// padded positions of the encoder output hold zeros instead of the values Hugging Face computes there, which
// nothing reads (cross-attention masks them). The decoder does the same with the target positions that have a
// label, when those lead every row (`leading`): causal attention keeps the later ones from changing them. On the
// tutorial's batches 43% of source positions and 61% of target positions are padding.
import type { Tensor } from '../engine/tensor.ts';
import { gatherRows } from '../kernels/gather-rows.ts';

export class TokenRows {
  /** real tokens, T */
  readonly tokens: number;
  /** padded position (b * length + l) -> its token row, -1 for padding */
  private readonly rowOf: Int32Array;
  /** token row -> its padded position */
  private readonly positionOf: Int32Array;

  private constructor(
    attentionMask: ArrayLike<number>,
    readonly batch: number,
    /** the padded length L */
    readonly length: number,
  ) {
    this.rowOf = new Int32Array(batch * length).fill(-1);
    const positions: number[] = [];
    for (let p = 0; p < batch * length; p++) {
      if (attentionMask[p]) {
        this.rowOf[p] = positions.length;
        positions.push(p);
      }
    }
    this.positionOf = Int32Array.from(positions);
    this.tokens = positions.length;
  }

  /** The real tokens of a [batch, length] attention mask (1 = token), or undefined when none is padding (or
   * all of it is: nothing to compute on). */
  static of(attentionMask: ArrayLike<number>, batch: number, length: number): TokenRows | undefined {
    if (attentionMask.length !== batch * length) {
      throw new RangeError(`TokenRows: attention mask of ${attentionMask.length} entries for [${batch}, ${length}]`);
    }
    let real = 0;
    for (let p = 0; p < attentionMask.length; p++) if (attentionMask[p]) real++;
    return real === attentionMask.length || real === 0 ? undefined : new TokenRows(attentionMask, batch, length);
  }

  /** As `of`, but only when every row's real tokens are its first ones (right padding): what a causal decoder
   * may skip, since a position it leaves out comes after every position it keeps. Undefined otherwise. */
  static leading(mask: ArrayLike<number>, batch: number, length: number): TokenRows | undefined {
    for (let b = 0; b < batch; b++) {
      for (let l = 1; l < length; l++) if (mask[b * length + l] && !mask[b * length + l - 1]) return undefined;
    }
    return TokenRows.of(mask, batch, length);
  }

  /** The real tokens' entries of a [batch, length] array (input ids), in row order. */
  select(values: ArrayLike<number>): Int32Array {
    return Int32Array.from(this.positionOf, (p) => values[p]!);
  }

  /** [1, T, ...] token rows -> [B, L, ...], zeros at padded positions. */
  pad(x: Tensor): Tensor {
    const rest = this.check('pad', x, [1, this.tokens]);
    return gatherRows(x.reshape([this.tokens, ...rest]), this.rowOf).reshape([this.batch, this.length, ...rest]);
  }

  /** [B, L, ...] -> [1, T, ...]: the real positions' rows. */
  unpad(x: Tensor): Tensor {
    const rest = this.check('unpad', x, [this.batch, this.length]);
    return gatherRows(x.reshape([this.batch * this.length, ...rest]), this.positionOf).reshape([1, this.tokens, ...rest]);
  }

  private check(op: string, x: Tensor, lead: [number, number]): number[] {
    if (x.rank < 2 || x.shape[0] !== lead[0] || x.shape[1] !== lead[1]) {
      throw new RangeError(`TokenRows.${op}: expected [${lead.join(', ')}, ...], got ${x.describe()}`);
    }
    return x.shape.slice(2);
  }
}
