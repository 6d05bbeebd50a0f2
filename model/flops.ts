// Matmul FLOPs of T5 for a batch, as the bench reports a whole step's effective GFLOP/s against the device's
// multiply-add ceiling. Counted: every projection, the attention products (scores and context), the feed-forward
// and the LM head, 2 FLOPs per multiply-add; norms, softmax and elementwise work are left out (a few percent).
// A training step is 3x the forward: the backward computes two products (input and weight gradients) per one.
import type { T5Config } from './config.ts';

export function t5ForwardFlops(c: T5Config, batch: number, sourceLength: number, targetLength: number): number {
  const inner = c.num_heads * c.d_kv;
  const ffMats = c.is_gated_act ? 3 : 2;
  const linear = (rows: number, inF: number, outF: number) => 2 * rows * inF * outF;
  const attention = (lq: number, lk: number) => 2 * 2 * batch * c.num_heads * lq * lk * c.d_kv;
  const S = batch * sourceLength;
  const T = batch * targetLength;
  const encoderLayer = 4 * linear(S, c.d_model, inner) + attention(sourceLength, sourceLength) + ffMats * linear(S, c.d_model, c.d_ff);
  const decoderLayer =
    4 * linear(T, c.d_model, inner) + attention(targetLength, targetLength) + // self-attention
    2 * linear(T, c.d_model, inner) + 2 * linear(S, c.d_model, inner) + attention(targetLength, sourceLength) + // cross
    ffMats * linear(T, c.d_model, c.d_ff);
  return c.num_layers * encoderLayer + c.num_decoder_layers * decoderLayer + linear(T, c.d_model, c.vocab_size);
}
