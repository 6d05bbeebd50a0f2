// skipPadding: TokenRows (a padded batch's real tokens as rows, through gatherRows), and the places that skip
// padding doing less matmul work on a padded batch than on the same shape without padding: a training step,
// the decoder (only when the positions without labels end every row), and generation's encoder. The numerics are the golden tests' (t5-golden.test.ts: batch0's
// logits, loss and gradients with skipPadding; gradient-checkpointing.test.ts: the recomputation with it).
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { tensor, type Tensor } from '../engine/tensor.ts';
import { tidy } from '../engine/scope.ts';
import { rt } from '../engine/runtime.ts';
import { AdamW } from '../optim/adamw.ts';
import { parseT5Config } from '../model/config.ts';
import { initT5Weights } from '../model/init-weights.ts';
import { storedParameters } from '../model/parameters.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { T5DecoderCache } from '../model/t5-decoder-cache.ts';
import type { ParamMap } from '../model/t5.ts';
import { RowGroup, TokenRows } from '../model/token-rows.ts';
import { trainStep } from '../train/train-step.ts';
import { captureDispatches } from '../train/profile.ts';
import type { Batch } from '../train/dataset.ts';

beforeAll(async () => {
  await initGpu();
});

describe('TokenRows', () => {
  it('is undefined without padding; unpad then pad gives the real positions back and zeros elsewhere', async () => {
    expect(TokenRows.of([1, 1, 1, 1], 2, 2)).toBeUndefined();
    // right padding, left padding and a row of padding only
    const mask = [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0];
    const rows = TokenRows.of(mask, 3, 4)!;
    expect(rows.tokens).toBe(5);
    expect(Array.from(rows.select([10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33]))).toEqual([10, 11, 12, 22, 23]);
    const data = Float32Array.from({ length: 12 * 2 }, (_, i) => i + 1);
    const x = tensor(data, [3, 4, 2]);
    const packed = rows.unpad(x);
    expect(packed.shape).toEqual([1, 5, 2]);
    expect(Array.from(await packed.toArray())).toEqual([1, 2, 3, 4, 5, 6, 13, 14, 15, 16]);
    const back = rows.pad(packed);
    expect(back.shape).toEqual([3, 4, 2]);
    expect(Array.from(await back.toArray())).toEqual(Array.from(data, (v, i) => (mask[Math.floor(i / 2)] ? v : 0)));
    for (const t of [x, packed, back]) t.dispose();
  });

  it('leading(): only when every row\'s real positions come first', () => {
    expect(TokenRows.leading([1, 1, 0, 1, 0, 0], 2, 3)?.tokens).toBe(3);
    expect(TokenRows.leading([1, 0, 1, 1, 1, 1], 2, 3)).toBeUndefined(); // a hole in row 0
    expect(TokenRows.leading([0, 1, 1, 1, 1, 1], 2, 3)).toBeUndefined(); // left padding
    expect(TokenRows.leading([1, 1, 1, 1, 1, 1], 2, 3)).toBeUndefined(); // nothing to skip
    expect(TokenRows.of([0, 0, 0, 0], 2, 2)).toBeUndefined(); // nothing to compute on
  });

  it('attentionGroups(): the long rows apart when that saves more attention than the gathers cost', async () => {
    const mask = (lengths: number[], L: number) => lengths.flatMap((n) => Array.from({ length: L }, (_, l) => (l < n ? 1 : 0)));
    const rowsOf = (lengths: number[], L: number) => TokenRows.of(mask(lengths, L), lengths.length, L)!;
    // golden batch0's sources: 4 x 180² = 129,600 position pairs, or 180² + 3 x 140² = 91,200 plus 24 x 552
    expect(rowsOf([140, 180, 134, 98], 180).attentionGroups()?.map((g) => [g.rows, g.length])).toEqual([[[1], 180], [[0, 2, 3], 140]]);
    // one long row and seven short ones: three groups
    const groups = rowsOf([512, 150, 300, 140, 145, 310, 130, 160], 512).attentionGroups()!;
    expect(groups.map((g) => [g.rows, g.length])).toEqual([[[0], 512], [[2, 5], 310], [[1, 3, 4, 6, 7], 160]]);
    expect(Array.from(groups[1]!.attentionMask).filter((m) => m === 1).length).toBe(610);
    // close lengths: one padded batch
    expect(rowsOf([100, 96, 98, 90], 100).attentionGroups()).toBeUndefined();
    // rows of padding only join a group at length 1 or more, never an empty attention
    expect(rowsOf([400, 0, 0, 0, 0, 0, 0, 0], 400).attentionGroups()?.map((g) => [g.rows, g.length])).toEqual([[[0], 400], [[1, 2, 3, 4, 5, 6, 7], 1]]);

    // every token goes to one group and comes back from it: summing the groups' unpad(pad(x)) gives x
    // rows of 5, 1 and 3 tokens (9): row 0 alone, rows 1 and 2 padded to 3
    const m = mask([5, 1, 3], 5);
    let next = 0;
    const rowOf = Int32Array.from(m, (v) => (v ? next++ : -1));
    const split = [new RowGroup([0], 5, rowOf, 5, 9), new RowGroup([1, 2], 3, rowOf, 5, 9)];
    const data = Float32Array.from({ length: 9 * 2 }, (_, i) => i + 1);
    const x = tensor(data, [1, 9, 2]);
    const padded = split.map((g) => g.pad(x));
    expect(padded.map((p) => p.shape)).toEqual([[1, 5, 2], [2, 3, 2]]);
    expect(Array.from(await padded[1]!.toArray())).toEqual([11, 12, 0, 0, 0, 0, 13, 14, 15, 16, 17, 18]);
    const back = split.map((g, i) => g.unpad(padded[i]!));
    const [first, second] = [await back[0]!.toArray(), await back[1]!.toArray()];
    expect(Array.from(first, (v, i) => v + second[i]!)).toEqual(Array.from(data));
    expect(Array.from(first).slice(10)).toEqual(Array(8).fill(0)); // the other group's tokens
    for (const t of [x, ...padded, ...back]) t.dispose();
  });

  it('checks the mask length and the shapes it is given', () => {
    expect(() => TokenRows.of([1, 0, 1], 2, 2)).toThrow(/attention mask of 3 entries for \[2, 2\]/);
    const rows = TokenRows.of([1, 0, 1, 1], 2, 2)!;
    const x = tensor(new Float32Array(8), [2, 2, 2]);
    expect(() => rows.pad(x)).toThrow(/TokenRows.pad: expected \[1, 3, \.\.\.\]/);
    x.dispose();
  });
});

describe('the encoder on real tokens only', () => {
  const cfg = parseT5Config({
    model_type: 't5', vocab_size: 97, d_model: 32, d_kv: 8, num_heads: 4, d_ff: 64, num_layers: 2, num_decoder_layers: 2,
    relative_attention_num_buckets: 8, relative_attention_max_distance: 20, feed_forward_proj: 'relu',
    dropout_rate: 0.1, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1,
  }, 'test config');
  const B = 4;
  const LS = 24;
  const LT = 5;
  // one row of 24 tokens, three of 6: 42 real source tokens of 96 positions
  const padded = Int32Array.from({ length: B * LS }, (_, i) => (i < LS || i % LS < 6 ? 1 : 0));
  const full = new Int32Array(B * LS).fill(1);
  const ids = Int32Array.from({ length: B * LS }, (_, i) => 2 + ((i * 37) % 90));

  function model(): T5ForConditionalGeneration {
    const w = initT5Weights(cfg, { seed: 9 });
    const params: ParamMap = new Map();
    for (const { name, shape } of storedParameters(cfg)) params.set(name, tensor(w.get(name)!, shape, { name, requiresGrad: true }).keep());
    return new T5ForConditionalGeneration(cfg, params);
  }

  /** multiply-adds of the matmul launches `run` records */
  async function matmulFlops(run: () => Promise<void>): Promise<number> {
    const capture = captureDispatches();
    let launches;
    try {
      await run();
    } finally {
      launches = capture.stop();
    }
    return launches.filter((c) => /matmul/.test(c.launch.name)).reduce((sum, c) => sum + (c.launch.flops ?? 0) * c.count, 0);
  }

  it('a training step', async () => {
    const m = model();
    const opt = new AdamW(m.params.values(), { lr: 1e-3 });
    const batch = (attentionMask: Int32Array): Batch => ({
      batchSize: B, sourceLength: LS, targetLength: LT, inputIds: ids, attentionMask,
      labels: Int32Array.from({ length: B * LT }, (_, i) => 2 + i), tokens: 1, labelTokens: B * LT,
    });
    const step = (mask: Int32Array) => matmulFlops(async () => void (await trainStep(m, opt, [batch(mask)], { seed: 1, firstMicro: 0, lr: 1e-3 })));
    const withPadding = await step(padded);
    const without = await step(full);
    // the encoder's projections and feed-forward (forward and backward) and the cross-attention keys/values
    // run on 42 rows instead of 96
    expect(withPadding).toBeGreaterThan(0);
    expect(withPadding).toBeLessThan(0.75 * without);
    opt.dispose();
    m.dispose();
  });

  it('the decoder skips the positions without a label only when they end each row; the loss is the same', async () => {
    const m = model();
    // row 0 has 5 labels, rows 1-3 two and then -100; with a hole, row 1's second label comes after a -100
    const suffix = Int32Array.from({ length: B * LT }, (_, i) => (i < LT || i % LT < 2 ? 2 + i : -100));
    const hole = suffix.slice();
    hole[LT + 1] = -100;
    hole[LT + 2] = 7;
    const run = async (labels: Int32Array, skipPadding: boolean) => {
      let loss = 0;
      const flops = await matmulFlops(async () => {
        const batch = { batchSize: B, sourceLength: LS, targetLength: LT, inputIds: ids, attentionMask: full, labels };
        const out = m.forward(batch, { skipPadding });
        loss = await out.loss!.item();
        for (const t of [out.loss!, out.logits, out.encoderHidden]) t.dispose();
      });
      return { loss, flops };
    };
    for (const labels of [suffix, hole]) {
      const plain = await run(labels, false);
      const skip = await run(labels, true);
      expect(Math.abs(skip.loss - plain.loss) / Math.abs(plain.loss)).toBeLessThan(1e-5);
      if (labels === suffix) expect(skip.flops).toBeLessThan(0.95 * plain.flops); // the decoder on 11 of 20 positions
      else expect(skip.flops).toBe(plain.flops);
    }
    m.dispose();
  });

  it('gathers the padded logits and encoder states only when they are read', async () => {
    const m = model();
    const labels = Int32Array.from({ length: B * LT }, (_, i) => (i % LT < 2 ? 2 + i : -100));
    const batch = { batchSize: B, sourceLength: LS, targetLength: LT, inputIds: ids, attentionMask: padded, labels };
    const padBytes = (read: (out: ReturnType<typeof m.forward>) => Tensor[]) => {
      const capture = captureDispatches();
      let launches;
      try {
        tidy(() => read(m.forward(batch, { skipPadding: true })));
      } finally {
        launches = capture.stop();
      }
      const gathers = launches.filter((c) => c.launch.name === 'gather rows');
      return gathers.flatMap((c) => Array<number>(c.count).fill(Math.max(...c.sizes)));
    };
    // the cross-attention's keys and values are gathered to the padded layout either way
    const lossOnly = padBytes((out) => [out.loss!]);
    const all = padBytes((out) => [out.logits, out.encoderHidden]);
    const extra = [...all];
    for (const bytes of lossOnly) extra.splice(extra.indexOf(bytes), 1);
    expect(extra.sort((a, b) => a - b)).toEqual([B * LT * cfg.vocab_size * 4, B * LS * cfg.d_model * 4].sort((a, b) => a - b));
    // returned whole from a tidy, the output's padded tensors are gathered before the scope frees their sources
    const out = tidy(() => m.forward(batch, { skipPadding: true }));
    const logits = await out.logits.toArray();
    expect(logits.subarray(0, 2 * cfg.vocab_size).some((v) => v !== 0)).toBe(true);
    for (const t of [out.loss!, out.logits, out.encoderHidden]) t.dispose();
    m.dispose();
  });

  it("generation's cache encodes a source row of padding only whole, as HF (t5-reference.test.ts: the forward)", async () => {
    const m = model();
    // row 2 has no token: HF's decoder still attends over its encoder states at the padded positions
    const mask = Int32Array.from(padded, (v, i) => (Math.floor(i / LS) === 2 ? 0 : v));
    const labels = Int32Array.from({ length: B * LT }, (_, i) => 2 + i);
    const out = m.forward({ batchSize: B, sourceLength: LS, targetLength: LT, inputIds: ids, attentionMask: mask, labels });
    const plain = await out.logits.toArray();
    for (const t of [out.loss!, out.logits, out.encoderHidden]) t.dispose();
    // the cache always skips padding; its first step (the decoder start token) gives position 0's logits
    const cache = new T5DecoderCache(m.context(), ids, mask, B, LS, 1);
    const first = cache.step(new Int32Array(B).fill(cfg.decoder_start_token_id));
    const stepped = await first.toArray();
    first.dispose();
    cache.dispose();
    const V = cfg.vocab_size;
    for (let b = 0; b < B; b++) {
      for (let v = 0; v < V; v++) expect(Math.abs(stepped[b * V + v]! - plain[b * LT * V + v]!)).toBeLessThan(1e-4);
    }
    m.dispose();
  });

  it("generation's encoder and cross-attention keys/values", async () => {
    const m = model();
    const encode = (mask: Int32Array) => matmulFlops(async () => {
      new T5DecoderCache(m.context(), ids, mask, B, LS, 2).dispose();
      await rt().sync();
    });
    const withPadding = await encode(padded);
    const without = await encode(full);
    expect(withPadding).toBeGreaterThan(0);
    expect(withPadding / without).toBeCloseTo(42 / 96, 5);
    m.dispose();
  });
});
