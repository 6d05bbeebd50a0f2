// A padded batch's real tokens as rows. T5's encoder then runs its row-wise work (embedding, norms, q/k/v/o
// projections, feed-forward, residuals, dropout) on the T real tokens instead of B x L positions, and only the
// attention on the padded [B, L] layout that its kernels and masks need. This is what PyTorch's nested-tensor
// fast path does for nn.TransformerEncoder (`enable_nested_tensor`): real positions get the same values; the
// padded positions of the encoder output hold zeros instead of the values Hugging Face computes there, which
// nothing reads (cross-attention masks them). The decoder does the same with the target positions that have a
// label, when those lead every row (`leading`): causal attention keeps the later ones from changing them. On the
// tutorial's batches 43% of source positions and 61% of target positions are padding.
//
// Attention itself can skip much of the padding too: `attentionGroups` splits the batch rows, longest first, into
// up to MAX_GROUPS groups that attend separately, each padded to its own longest row. Its work goes as the sum of
// rows x length² over the groups instead of B x L² (a batch of one 512-token row and seven of 150: 20% of it).
import type { Tensor } from '../engine/tensor.ts';
import { gatherRows } from '../kernels/gather-rows.ts';

/** At most this many attention groups: each adds gathers of the whole [T, ...] q, k, v and output and a sum. */
const MAX_GROUPS = 3;
/** What a group beyond the first costs, in attention position pairs per real token of the batch: its extra
 * gathers and sum move about 10 x T x d_model floats a layer, forward and backward; t5-small on lavapipe does
 * about 1.6 us of attention (forward and backward, all layers) per position pair and 1 ms per 3.4 MB moved. */
const GROUP_COST_PAIRS_PER_TOKEN = 24;

/** x [n0, n1, ...] taken as n0·n1 rows, gathered through `index` (-1: a zero row), returned as [...lead, ...]. */
function gatherAs(x: Tensor, index: Int32Array, lead: [number, number]): Tensor {
  const [n0, n1, ...rest] = x.shape as [number, number, ...number[]];
  return gatherRows(x.reshape([n0 * n1, ...rest]), index).reshape([...lead, ...rest]);
}

/** Some of a padded batch's rows, attending among themselves padded to their own longest row. */
export class RowGroup {
  /** token row -> its position in this group's [rows, length] layout, -1 for tokens of other rows */
  private readonly positionOf: Int32Array;
  /** this group's padded position -> its token row, -1 for padding */
  private readonly rowOf: Int32Array;
  /** 0/1 attention mask [rows, length] */
  readonly attentionMask: Int32Array;

  constructor(
    /** the batch rows in the group */
    readonly rows: readonly number[],
    /** the group's padded length: its rows' last real position + 1 */
    readonly length: number,
    batchRowOf: Int32Array,
    batchLength: number,
    tokens: number,
  ) {
    this.rowOf = new Int32Array(rows.length * length).fill(-1);
    this.positionOf = new Int32Array(tokens).fill(-1);
    this.attentionMask = new Int32Array(rows.length * length);
    rows.forEach((b, i) => {
      for (let l = 0; l < length; l++) {
        const t = batchRowOf[b * batchLength + l]!;
        if (t < 0) continue;
        this.rowOf[i * length + l] = t;
        this.positionOf[t] = i * length + l;
        this.attentionMask[i * length + l] = 1;
      }
    });
  }

  /** [1, T, ...] token rows -> [rows, length, ...], zeros at padded positions. */
  pad(x: Tensor): Tensor {
    return gatherAs(x, this.rowOf, [this.rows.length, this.length]);
  }

  /** [rows, length, ...] -> [1, T, ...]: this group's tokens, zeros for the other rows' tokens. */
  unpad(x: Tensor): Tensor {
    return gatherAs(x, this.positionOf, [1, this.positionOf.length]);
  }
}

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

  /** The rows split into groups that attend separately (see the header), or undefined when one padded batch
   * costs least. Rows must not attend across rows (no mask between rows): true of every T5 attention. */
  attentionGroups(): RowGroup[] | undefined {
    const { batch, length } = this;
    // each row's extent: its last real position + 1 (at least 1: a row of padding only still gets a position,
    // whose output nothing reads, rather than an attention over nothing)
    const extent = Array.from({ length: batch }, (_, b) => {
      let e = 1;
      for (let l = 0; l < length; l++) if (this.rowOf[b * length + l]! >= 0) e = l + 1;
      return e;
    });
    const order = [...extent.keys()].sort((a, b) => extent[b]! - extent[a]! || a - b);
    const groupCost = GROUP_COST_PAIRS_PER_TOKEN * this.tokens;
    // best[g][i]: the least cost of the first i rows (longest first) in g groups; a group [j, i) costs
    // (i - j) x extent[order[j]]² (its first row is its longest)
    const best = [[0, ...Array<number>(batch).fill(Infinity)]];
    const from: number[][] = [[]];
    for (let g = 1; g <= Math.min(MAX_GROUPS, batch); g++) {
      best.push(Array<number>(batch + 1).fill(Infinity));
      from.push(Array<number>(batch + 1).fill(0));
      for (let i = 1; i <= batch; i++) {
        for (let j = g - 1; j < i; j++) {
          const c = best[g - 1]![j]! + (i - j) * extent[order[j]!]! ** 2 + (g > 1 ? groupCost : 0);
          if (c < best[g]![i]!) {
            best[g]![i] = c;
            from[g]![i] = j;
          }
        }
      }
    }
    let groups = 1;
    for (let g = 2; g < best.length; g++) if (best[g]![batch]! < best[groups]![batch]!) groups = g;
    if (groups === 1) return undefined;
    const out: RowGroup[] = [];
    for (let g = groups, i = batch; g > 0; i = from[g]![i]!, g--) {
      const j = from[g]![i]!;
      const rows = order.slice(j, i).sort((a, b) => a - b);
      out.unshift(new RowGroup(rows, extent[order[j]!]!, this.rowOf, length, this.tokens));
    }
    return out;
  }

  /** The real tokens' entries of a [batch, length] array (input ids), in row order. */
  select(values: ArrayLike<number>): Int32Array {
    return Int32Array.from(this.positionOf, (p) => values[p]!);
  }

  /** [1, T, ...] token rows -> [B, L, ...], zeros at padded positions. */
  pad(x: Tensor): Tensor {
    this.check('pad', x, [1, this.tokens]);
    return gatherAs(x, this.rowOf, [this.batch, this.length]);
  }

  /** [B, L, ...] -> [1, T, ...]: the real positions' rows. */
  unpad(x: Tensor): Tensor {
    this.check('unpad', x, [this.batch, this.length]);
    return gatherAs(x, this.positionOf, [1, this.tokens]);
  }

  private check(op: string, x: Tensor, lead: [number, number]): void {
    if (x.rank < 2 || x.shape[0] !== lead[0] || x.shape[1] !== lead[1]) {
      throw new RangeError(`TokenRows.${op}: expected [${lead.join(', ')}, ...], got ${x.describe()}`);
    }
  }
}
