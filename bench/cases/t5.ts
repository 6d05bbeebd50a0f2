// Whole-model rows: T5ForConditionalGeneration with random init (HF's _init_weights scales), batch 8 (or
// `--batch`), source 256, target 32, no padding; tokens per run = batch x (source + target), as
// bench/peers/torch_t5.py counts them.
//   t5-forward     eval forward + loss, no gradient recording
//   t5-train-step  one training step as HF's Trainer takes it: forward with dropout 0.1, loss, backward,
//                  AdamW step (torch variant; Adafactor in the +adafactor rows), zero the gradients
// Shapes: 't5-small b8 s256 t32' (the default, 60.5M parameters), 'tiny b8 s256 t32' (`--sizes tiny`: the
// peer's --config tiny model, vocab 512, d_model 64, 2+2 layers), for a quick run, and 'base b8 s512 t128'
// (`--sizes base`: t5-base, 223M parameters, at the tutorial's own settings; one step takes minutes here).
// `--sizes base+ckpt` (or t5-small+ckpt) adds the train step with gradient checkpointing, `+adafactor` one with
// Adafactor (HF Trainer's optim="adafactor") instead of AdamW, and `base+ckpt+adafactor` both ('base' matches
// every base row).
// check(): the eval loss on the current parameters against the float64 reference T5 (model/t5-float64.ts) for the
// tiny model; t5-small is left unchecked (NaN: the reference would take minutes; tests/t5-golden.test.ts and
// tests/t5-reference.test.ts cover the numerics). the rate is the step's effective GFLOP/s (model/flops.ts) beside tokens/s.
import type { BenchCase, BenchInstance } from '../types.ts';
import { backward, noGrad, zeroGrad } from '../../engine/autograd.ts';
import { AdamW } from '../../optim/adamw.ts';
import { Adafactor } from '../../optim/adafactor.ts';
import { rt } from '../../engine/runtime.ts';
import { tidy } from '../../engine/scope.ts';
import { memory, tensor } from '../../engine/tensor.ts';
import { parseT5Config, presetConfig, type T5Config } from '../../model/config.ts';
import { storedParameters } from '../../model/parameters.ts';
import { initT5Weights } from '../../model/init-weights.ts';
import { T5ForConditionalGeneration } from '../../model/t5-model.ts';
import type { ParamMap, Seq2SeqBatch } from '../../model/t5.ts';
import { t5ReferenceForward } from '../../model/t5-float64.ts';
import { t5ForwardFlops } from '../../model/flops.ts';

/** The rows' batch unless `--batch` says otherwise (the tutorial's). */
const DEFAULT_BATCH = 8;

type SizeName = 't5-small' | 'tiny' | 'base';

/** Source and target lengths: the tutorial trains t5-base with 512 and 128. */
const LENGTHS: Record<SizeName, { source: number; target: number }> = {
  't5-small': { source: 256, target: 32 },
  tiny: { source: 256, target: 32 },
  base: { source: 512, target: 128 },
};

function configFor(size: SizeName): T5Config {
  if (size === 't5-small') return presetConfig('t5-small');
  if (size === 'base') return presetConfig('t5-base');
  return parseT5Config({
    model_type: 't5', vocab_size: 512, d_model: 64, d_kv: 16, num_heads: 4, d_ff: 128, num_layers: 2,
    num_decoder_layers: 2, relative_attention_num_buckets: 32, relative_attention_max_distance: 128,
    feed_forward_proj: 'relu', dropout_rate: 0.1, decoder_start_token_id: 0, pad_token_id: 0, eos_token_id: 1,
  }, 'bench tiny config');
}

/** Random token ids (2 .. vocab-1, </s> last) from a small LCG: the same batch every setup. */
function randomBatch(vocab: number, BATCH: number, SOURCE: number, TARGET: number): Seq2SeqBatch {
  let s = 12345;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 2 + (s % (vocab - 2));
  };
  const ids = (len: number): Int32Array => {
    const a = new Int32Array(BATCH * len);
    for (let b = 0; b < BATCH; b++) for (let i = 0; i < len; i++) a[b * len + i] = i === len - 1 ? 1 : next();
    return a;
  };
  return {
    batchSize: BATCH,
    sourceLength: SOURCE,
    targetLength: TARGET,
    inputIds: ids(SOURCE),
    attentionMask: new Int32Array(BATCH * SOURCE).fill(1),
    labels: ids(TARGET),
  };
}

function t5Case(size: SizeName, train: boolean, variant: TrainVariant, BATCH: number): BenchCase {
  const { source: SOURCE, target: TARGET } = LENGTHS[size];
  const gradientCheckpointing = variant.ckpt;
  return {
    op: train ? 't5-train-step' : 't5-forward',
    shape: `${size}${variant.ckpt ? '+ckpt' : ''}${variant.adafactor ? '+adafactor' : ''} b${BATCH} s${SOURCE} t${TARGET}`,
    dtype: 'f32',
    tokens: BATCH * (SOURCE + TARGET),
    // effective GFLOP/s of the whole step, against the matmul (multiply-add) ceiling
    flops: (train ? 3 : 1) * t5ForwardFlops(configFor(size), BATCH, SOURCE, TARGET),
    setup(): BenchInstance {
      // the row's peak counts its own buffers only: drop what earlier rows left pooled
      rt().pool.trim();
      rt().pool.resetPeak();
      const config = configFor(size);
      const params: ParamMap = new Map();
      const weights = initT5Weights(config, { seed: 0 });
      for (const { name, shape } of storedParameters(config)) {
        params.set(name, tensor(weights.get(name)!, shape, { name, requiresGrad: train }).keep());
      }
      const model = new T5ForConditionalGeneration(config, params);
      const batch = randomBatch(config.vocab_size, BATCH, SOURCE, TARGET);
      const trained = model.parameters().map(([, p]) => p);
      const opt = !train ? undefined : variant.adafactor
        ? new Adafactor(trained, { lr: 1e-4, relativeStep: false, scaleParameter: false })
        : new AdamW(trained, { lr: 1e-4, weightDecay: 0.01, variant: 'torch' });
      let step = 0;
      return {
        run() {
          if (!train) {
            noGrad(() => tidy(() => model.forward(batch).loss!)).dispose();
            return;
          }
          const loss = tidy(() => model.forward(batch, { training: true, dropoutSeed: step++, gradientCheckpointing }).loss!);
          backward(loss);
          loss.dispose();
          opt!.step();
          zeroGrad(params.values());
        },
        async check() {
          if (size !== 'tiny') return NaN;
          const loss = noGrad(() => tidy(() => model.forward(batch).loss!));
          const got = await loss.item();
          loss.dispose();
          const host = new Map<string, Float64Array>();
          for (const [name, p] of params) host.set(name, Float64Array.from(await p.toFloat32()));
          const ref = t5ReferenceForward(
            { ...config, dense_act_fn: config.dense_act_fn },
            host,
            { batch: BATCH, sourceLength: SOURCE, targetLength: TARGET, inputIds: batch.inputIds, attentionMask: batch.attentionMask, labels: batch.labels! },
          ).loss;
          return Math.abs(got - ref) / Math.abs(ref);
        },
        peakBytes() {
          return memory().peakBytes;
        },
        dispose() {
          opt?.dispose();
          model.dispose();
        },
      };
    },
  };
}

export function cases(sizes?: string[], opts: { batch?: number } = {}): BenchCase[] {
  const batch = opts.batch ?? DEFAULT_BATCH;
  const wanted: SizeName[] = [];
  if (!sizes || sizes.some((s) => s.startsWith('t5-small'))) wanted.push('t5-small');
  if (sizes?.some((s) => s.startsWith('tiny'))) wanted.push('tiny');
  if (sizes?.some((s) => s.startsWith('base') || s === 't5-base')) wanted.push('base');
  // SIZE+ckpt adds a train-step row with gradient checkpointing (base+ckpt, t5-small+ckpt)
  // SIZE+ckpt, SIZE+adafactor, SIZE+ckpt+adafactor: extra train-step rows with those settings
  const variants = (s: SizeName): TrainVariant[] => {
    const named = (sizes ?? []).filter((x) => x.includes('+') && (x.startsWith(s) || (s === 'base' && x.startsWith('t5-base'))));
    const out = new Map<string, TrainVariant>();
    for (const x of named) {
      const v = { ckpt: x.includes('+ckpt'), adafactor: x.includes('+adafactor') };
      out.set(JSON.stringify(v), v);
    }
    return [...out.values()];
  };
  const plain = { ckpt: false, adafactor: false };
  return wanted.flatMap((s) => [t5Case(s, false, plain, batch), t5Case(s, true, plain, batch), ...variants(s).map((v) => t5Case(s, true, v, batch))]);
}

interface TrainVariant {
  /** gradient checkpointing */
  ckpt: boolean;
  /** Adafactor instead of AdamW */
  adafactor: boolean;
}
