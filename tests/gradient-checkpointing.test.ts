// Activation checkpointing (HF's gradient_checkpointing): the loss equals the plain one bit for bit and every
// gradient agrees to float32 rounding (the recomputation runs the same kernels on the same inputs and replays the
// dropout masks; only the order in which a shared parameter's gradient contributions are summed changes), with
// dropout on and off, encoder and decoder; and the forward keeps far fewer bytes alive for the backward.
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward, checkpoint, zeroGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import { memory, tensor, type Tensor } from '../engine/tensor.ts';
import { mul, relu } from '../kernels/elementwise.ts';
import { matmul } from '../kernels/matmul.ts';
import { sum } from '../kernels/reduce.ts';
import { parseT5Config, type T5Config } from '../model/config.ts';
import { initT5Weights } from '../model/init-weights.ts';
import { storedParameters } from '../model/parameters.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { ParamMap, Seq2SeqBatch } from '../model/t5.ts';
import { TokenRows } from '../model/token-rows.ts';

beforeAll(async () => {
  await initGpu();
});

function model(cfg: T5Config): T5ForConditionalGeneration {
  const params: ParamMap = new Map();
  const w = initT5Weights(cfg, { seed: 3 });
  for (const { name, shape } of storedParameters(cfg)) params.set(name, tensor(w.get(name)!, shape, { name, requiresGrad: true }).keep());
  return new T5ForConditionalGeneration(cfg, params);
}

/** Row 0 has ls tokens, the others `others` (default ls - 3), then padding. */
function batch(b: number, ls: number, lt: number, vocab: number, others = ls - 3): Seq2SeqBatch {
  let s = 7;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), 2 + (s % (vocab - 2)));
  const attentionMask = Int32Array.from({ length: b * ls }, (_, i) => (i < ls || i % ls < others ? 1 : 0));
  return {
    batchSize: b, sourceLength: ls, targetLength: lt,
    inputIds: Int32Array.from({ length: b * ls }, next),
    attentionMask,
    labels: Int32Array.from({ length: b * lt }, (_, i) => (i % lt === lt - 1 ? -100 : next())),
  };
}

async function step(m: T5ForConditionalGeneration, bt: Seq2SeqBatch, opts: { training: boolean; gradientCheckpointing: boolean; skipPadding: boolean }) {
  zeroGrad(m.params.values());
  memory();
  const before = memory().bytesLive;
  let peakLive = 0;
  const loss = tidy(() => m.forward(bt, { ...opts, dropoutSeed: 11 }).loss!);
  peakLive = memory().bytesLive - before; // what the forward keeps alive for the backward
  backward(loss);
  const value = await loss.item();
  loss.dispose();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of m.params) grads.set(name, await p.grad!.toFloat32());
  return { value, grads, keptBytes: peakLive };
}

describe('gradient checkpointing', () => {
  const cfg = parseT5Config({
    model_type: 't5', vocab_size: 97, d_model: 24, d_kv: 8, num_heads: 3, d_ff: 40, num_layers: 3, num_decoder_layers: 2,
    relative_attention_num_buckets: 8, relative_attention_max_distance: 20, feed_forward_proj: 'gated-gelu',
    dropout_rate: 0.2, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1, tie_word_embeddings: false,
  }, 'test config');

  // the batch is padded: with skipPadding the recomputed encoder blocks work on its real tokens too, and with
  // one long row and three short ones their self-attention runs in two groups of rows
  for (const [training, skipPadding] of [[false, false], [true, false], [true, true]]) {
    it(`loss and every gradient equal the plain backward (dropout ${training ? 'on' : 'off'}${skipPadding ? ', skipPadding, attention in groups' : ''})`, async () => {
      const m = model(cfg);
      const bt = skipPadding ? batch(4, 24, 7, cfg.vocab_size, 4) : batch(3, 13, 7, cfg.vocab_size);
      if (skipPadding) expect(TokenRows.of(bt.attentionMask, 4, 24)!.attentionGroups()?.length).toBe(2);
      const plain = await step(m, bt, { training: training!, gradientCheckpointing: false, skipPadding: skipPadding! });
      const ckpt = await step(m, bt, { training: training!, gradientCheckpointing: true, skipPadding: skipPadding! });
      expect(ckpt.value).toBe(plain.value);
      for (const [name, g] of plain.grads) {
        const h = ckpt.grads.get(name)!;
        let maxDiff = 0;
        let scale = 0;
        for (let i = 0; i < g.length; i++) {
          maxDiff = Math.max(maxDiff, Math.abs(g[i]! - h[i]!));
          scale = Math.max(scale, Math.abs(g[i]!));
        }
        expect(scale, name).toBeGreaterThan(0);
        expect(maxDiff / scale, name).toBeLessThan(1e-5);
      }
      // the forward keeps only each block's inputs alive
      expect(ckpt.keptBytes).toBeLessThan(plain.keptBytes / 2);
      zeroGrad(m.params.values());
      m.dispose();
    });
  }

  it('checkpoint() itself: gradients of inputs and of the leaves read inside', async () => {
    const x = tensor([1, -2, 3, 0.5, 4, -1], [2, 3], { requiresGrad: true });
    const w = tensor([0.5, -1, 2, 1, 0, 3], [3, 2], { requiresGrad: true });
    const f = ([a]: Tensor[]) => mul(relu(matmul(a!, w)), matmul(a!, w));
    const run = (ck: boolean) => {
      const y = tidy(() => sum(ck ? checkpoint('f', [x], f) : f([x])));
      backward(y);
      y.dispose();
    };
    run(false);
    const [gx, gw] = [await x.grad!.toFloat32(), await w.grad!.toFloat32()];
    zeroGrad([x, w]);
    run(true);
    expect(Array.from(await x.grad!.toFloat32())).toEqual(Array.from(gx));
    expect(Array.from(await w.grad!.toFloat32())).toEqual(Array.from(gw));
    zeroGrad([x, w]);
    x.dispose();
    w.dispose();
  });
});
