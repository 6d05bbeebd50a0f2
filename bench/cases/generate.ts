// Generation rows: Hugging Face-style decoding of exactly NEW_TOKENS new tokens for a random-init T5, in new
// tokens per second (batch x NEW_TOKENS per run; the encoder pass is inside the timed run, as in
// bench/peers/torch_t5.py). `</s>` is banned until the last token (min_new_tokens = max_new_tokens), so random
// weights cannot stop early, as the peer ignores EOS.
//   generate greedy          greedy search through generateIds (KV cache: encoder once, cross-attention K/V
//                            once, one decoder position per step). The min_new_tokens processor keeps it on the
//                            host path (logits read back, argmax on the CPU), not greedy-on-device.ts; the two
//                            measured the same when interleaved in one process (bench/peers/README.md)
//   generate beam4           4-beam search, same cache, reordered by beam every step
//   generate greedy-nocache  greedy without a cache: the encoder once, then every step re-runs the decoder over
//                            the whole prefix (cross-attention K/V re-projected and the LM head computed at every
//                            position, as transformers does with use_cache=False); batch 1 only
// Shapes '<size> b<batch> s<source> new<tokens>': t5-small (the default, 60.5M parameters) and tiny
// (`--sizes tiny`: the peer's --config tiny model) for a quick run.
// check(): a few decoder steps on random tokens: the cached decoder's next-token logits against t5Forward over the
// whole prefix (max |difference| / max |logit|; two GPU paths, not a CPU reference: tests/t5-golden.test.ts and
// tests/t5-generate-golden.test.ts tie both to Hugging Face).
//
// Decoding runs matmuls with M = rows (1 to 64), shapes training never autotunes: a winner measured while other
// work held the cores can persist a variant tens of times slower (seen here: 'tiled' for 1x512x2048, 61 ms a
// call against 1.7 ms for 'subgroup', which made greedy t5-small 8x slower). Compare rows against a fresh
// T5_WEBGPU_CACHE_DIR when they look wrong.
//
// The rows must be timed with runAsync (each step reads back the logits to pick the next token): run() throws,
// and the runner (bench/run.ts) times runAsync instead.
import { noGrad } from '../../engine/autograd.ts';
import { rt } from '../../engine/runtime.ts';
import { tidy } from '../../engine/scope.ts';
import { memory, tensor, type Tensor } from '../../engine/tensor.ts';
import { slice } from '../../kernels/layout.ts';
import { parseT5Config, presetConfig, type T5Config } from '../../model/config.ts';
import { generateIds, padBatch } from '../../generate/generate.ts';
import { resolveGenerationConfig, type ResolvedGenerationConfig } from '../../generate/generation-config.ts';
import { storedParameters } from '../../model/parameters.ts';
import { initT5Weights } from '../../model/init-weights.ts';
import { T5ForConditionalGeneration } from '../../model/t5-model.ts';
import { T5DecoderCache } from '../../model/t5-decoder-cache.ts';
import { lmHead, paddingMask, t5Forward, T5Decoder, T5Encoder, type ForwardContext } from '../../model/t5.ts';
import type { BenchCase, BenchInstance } from '../types.ts';

export const NEW_TOKENS = 32;
export const SOURCE = 128;
const BATCHES = [1, 16];
const BEAMS = 4;
const CHECK_STEPS = 4;

type SizeName = 't5-small' | 'tiny';
type Mode = 'greedy' | 'beam4' | 'greedy-nocache';

function configFor(size: SizeName): T5Config {
  if (size === 't5-small') return presetConfig('t5-small');
  // bench/peers/torch_t5.py --config tiny
  return parseT5Config({
    model_type: 't5', vocab_size: 512, d_model: 64, d_kv: 16, num_heads: 4, d_ff: 128, num_layers: 2,
    num_decoder_layers: 2, relative_attention_num_buckets: 32, relative_attention_max_distance: 128,
    feed_forward_proj: 'relu', dropout_rate: 0.1, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1,
  }, 'bench tiny config');
}

function randomModel(config: T5Config): T5ForConditionalGeneration {
  const weights = initT5Weights(config, { seed: 0 });
  const params = new Map<string, Tensor>();
  for (const spec of storedParameters(config)) {
    params.set(spec.name, tensor(weights.get(spec.name)!, spec.shape, { name: spec.name }).keep());
  }
  return new T5ForConditionalGeneration(config, params);
}

/** Sources of random ids (3 .. vocab-1, `</s>` last) from a small LCG: the same every setup, no padding. */
function randomSources(batch: number, length: number, vocab: number): number[][] {
  let s = 2024;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 3 + (s % (vocab - 3));
  };
  return Array.from({ length: batch }, () => Array.from({ length }, (_, i) => (i === length - 1 ? 1 : next())));
}

function generationConfig(config: T5Config, beams: number): ResolvedGenerationConfig {
  return resolveGenerationConfig(
    { decoder_start_token_id: config.decoder_start_token_id, eos_token_id: config.eos_token_id, pad_token_id: config.pad_token_id },
    { num_beams: beams, max_new_tokens: NEW_TOKENS, min_new_tokens: NEW_TOKENS },
  );
}

function argmaxBanning(row: Float32Array, banned: number): number {
  let best = banned === 0 ? 1 : 0;
  for (let i = 0; i < row.length; i++) if (i !== banned && row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Greedy decoding without a KV cache: the encoder once, then per step the whole decoder over the prefix and the
 * LM head at every position; the next token is the argmax of the last position (eos banned). Returns the tokens,
 * and, with `keepLogits`, each step's last-position logits.
 */
export async function greedyNoCache(
  ctx: ForwardContext,
  sources: number[][],
  steps: number,
  keepLogits = false,
): Promise<{ tokens: number[][]; logits: Float32Array[] }> {
  const c = ctx.config;
  const batch = padBatch(sources, c.pad_token_id);
  const b = batch.batchSize;
  const encoded = noGrad(() =>
    tidy(() => {
      const mask = paddingMask(batch.attentionMask, b, batch.sourceLength);
      const hidden = T5Encoder(ctx, { inputIds: tensor(batch.inputIds, [b, batch.sourceLength], { dtype: 'i32' }), mask });
      return { mask, hidden };
    }),
  );
  encoded.mask.keep();
  encoded.hidden.keep();
  const tokens = Array.from({ length: b }, () => [c.decoder_start_token_id]);
  const logitsOut: Float32Array[] = [];
  try {
    for (let t = 0; t < steps; t++) {
      const len = t + 1;
      const last = noGrad(() =>
        tidy(() => {
          const ids = tensor(Int32Array.from(tokens.flat()), [b, len], { dtype: 'i32' });
          const out = T5Decoder(ctx, { decoderInputIds: ids, encoderHidden: encoded.hidden, encoderMask: encoded.mask });
          return slice(lmHead(ctx, out), 1, len - 1, len);
        }),
      );
      const host = await last.toFloat32();
      last.dispose();
      const vocab = host.length / b;
      if (keepLogits) logitsOut.push(host);
      for (let r = 0; r < b; r++) tokens[r]!.push(argmaxBanning(host.subarray(r * vocab, (r + 1) * vocab), c.eos_token_id));
    }
  } finally {
    encoded.mask.dispose();
    encoded.hidden.dispose();
  }
  return { tokens, logits: logitsOut };
}

/**
 * The cached decoder's next-token logits for CHECK_STEPS steps against the no-cache recomputation, both fed the
 * same random decoder tokens (argmax tokens of a random model tend to repeat one id, which would test little).
 */
async function checkCacheAgainstRecompute(model: T5ForConditionalGeneration, sources: number[][]): Promise<number> {
  const c = model.config;
  const inputs = padBatch(sources, c.pad_token_id);
  const b = inputs.batchSize;
  const prefix = randomSources(b, CHECK_STEPS, c.vocab_size).map((row) => [c.decoder_start_token_id, ...row.slice(0, CHECK_STEPS - 1)]);
  const ctx = model.context();
  const cache = new T5DecoderCache(ctx, inputs.inputIds, inputs.attentionMask, b, inputs.sourceLength, 1);
  let maxDiff = 0;
  let maxRef = 0;
  try {
    for (let t = 0; t < CHECK_STEPS; t++) {
      const step = cache.step(Int32Array.from(prefix.map((row) => row[t]!)));
      const got = await step.toFloat32();
      step.dispose();
      const ref = noGrad(() =>
        tidy(() => {
          const batch = { ...inputs, targetLength: t + 1, decoderInputIds: Int32Array.from(prefix.flatMap((row) => row.slice(0, t + 1))) };
          const { logits } = t5Forward(ctx, batch);
          return slice(logits, 1, t, t + 1);
        }),
      );
      const want = await ref.toFloat32();
      ref.dispose();
      for (let i = 0; i < want.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
        maxRef = Math.max(maxRef, Math.abs(want[i]!));
      }
    }
  } finally {
    cache.dispose();
  }
  return maxDiff / maxRef;
}

function generateCase(size: SizeName, mode: Mode, batch: number): BenchCase {
  return {
    op: 'generate',
    shape: `${size} b${batch} s${SOURCE} new${NEW_TOKENS} ${mode}`,
    dtype: 'f32',
    // new tokens of the returned sequences (one per input), as the peer counts them
    tokens: batch * NEW_TOKENS,
    setup(): BenchInstance {
      rt().pool.trim();
      rt().pool.resetPeak();
      const config = configFor(size);
      const model = randomModel(config);
      const sources = randomSources(batch, SOURCE, config.vocab_size);
      const gen = generationConfig(config, mode === 'beam4' ? BEAMS : 1);
      const inputs = padBatch(sources, config.pad_token_id);
      return {
        run() {
          throw new Error('generate rows read logits back every step: time them with runAsync() (timeAsyncCase)');
        },
        async runAsync() {
          if (mode === 'greedy-nocache') {
            await greedyNoCache(model.context(), sources, NEW_TOKENS);
            return;
          }
          const out = await generateIds(model, inputs, gen);
          if (out.sequences[0]!.length !== NEW_TOKENS + 1) throw new Error(`generate bench: ${out.sequences[0]!.length - 1} new tokens, expected ${NEW_TOKENS}`);
        },
        check: () => checkCacheAgainstRecompute(model, sources.slice(0, 1)),
        peakBytes: () => memory().peakBytes,
        dispose() {
          model.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[]): BenchCase[] {
  const wanted: SizeName[] = sizes?.some((s) => s.startsWith('tiny')) ? ['tiny'] : [];
  if (!sizes || sizes.some((s) => s.startsWith('t5-small'))) wanted.unshift('t5-small');
  return wanted.flatMap((size) => [
    ...BATCHES.map((b) => generateCase(size, 'greedy', b)),
    ...BATCHES.map((b) => generateCase(size, 'beam4', b)),
    generateCase(size, 'greedy-nocache', 1),
  ]);
}

