// One optimizer step over gradAccum micro-batches, as the inner loop of nanoGPT's train.py:
//
//   for each micro-batch b:  loss_b = model(b, dropout on).loss;  backward(loss_b · labels_b / labels_step)
//   clip the global gradient norm (optional);  AdamW or Adafactor step with the schedule's lr;  zero the gradients
//
// Each micro-batch's loss is a mean over its label tokens; weighting it by its share of the step's label tokens
// makes the accumulated gradient that of the mean over every label token of the step, however the step is split.
import { backward, noGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import type { Tensor } from '../engine/tensor.ts';
import { scale } from '../kernels/elementwise.ts';
import { clipGradNorm } from '../kernels/grad-norm.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { Batch } from './dataset.ts';

export interface StepOptions {
  /** the run's seed and the micro-batches done before this step: the dropout masks are a function of both */
  seed: number;
  firstMicro: number;
  /** overrides config.dropout_rate; undefined keeps the config's */
  dropout?: number;
  /** HF's gradient_checkpointing */
  gradientCheckpointing?: boolean;
  /** max global gradient norm; undefined: no clipping */
  clipGradNorm?: number;
  /** the loss's label smoothing ε (HF's label_smoothing_factor); default 0 */
  labelSmoothing?: number;
  lr: number;
}

export interface StepResult {
  /** the mean of the micro-batches' mean losses (what is trained); when not finite, the loss of the micro-batch
   * that showed it */
  loss: number;
  /** false: a micro-batch's loss was NaN or ±Inf; the step stopped there, zeroed the gradients, updated nothing */
  finite: boolean;
  /** source + label tokens of the micro-batches done (what tokens/s counts) */
  tokens: number;
}

/** The dropout seed of micro-batch `micro`: distinct Philox streams per micro-batch, fixed by the run's seed. */
export function dropoutSeedFor(seed: number, micro: number): number {
  let h = Math.imul(seed ^ 0x3c6ef372, 0x9e3779b1) ^ Math.imul(micro + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 13)) >>> 0;
}

/** Forward with dropout and backward of one micro-batch, its loss scaled by `weight` (null: one micro-batch per
 * step, nothing to scale); returns the unscaled loss, the one readback of the micro-batch. */
async function microStep(
  model: T5ForConditionalGeneration, b: Batch, weight: number | null, o: StepOptions, dropoutSeed: number,
): Promise<number> {
  // skipPadding: the encoder and decoder work on the batch's real positions only (model/token-rows.ts)
  const forward = {
    training: true, dropoutRate: o.dropout, dropoutSeed, gradientCheckpointing: o.gradientCheckpointing, skipPadding: true,
    labelSmoothing: o.labelSmoothing,
  };
  const loss = tidy(() => model.forward(b, forward).loss!);
  const scaled: Tensor = weight === null ? loss : tidy(() => scale(loss, weight));
  backward(scaled);
  if (scaled !== loss) scaled.dispose();
  const v = await loss.item();
  loss.dispose();
  return v;
}

/**
 * Forward and backward over `batches`, then one clipped optimizer update of `opt.params` at `o.lr`. With several
 * micro-batches each mean loss is divided by their number, as HF's Trainer does for T5 (its forward takes no
 * num_items_in_batch, so Trainer divides by the accumulation steps) and Lightning's accumulate_grad_batches:
 * a micro-batch with few label tokens weighs as much as one with many.
 */
export async function trainStep(
  model: T5ForConditionalGeneration, opt: Optimizer, batches: readonly Batch[], o: StepOptions,
): Promise<StepResult> {
  let lossSum = 0;
  let tokens = 0;
  for (const [i, b] of batches.entries()) {
    const weight = batches.length === 1 ? null : 1 / batches.length;
    const v = await microStep(model, b, weight, o, dropoutSeedFor(o.seed, o.firstMicro + i));
    tokens += b.tokens;
    if (!Number.isFinite(v)) {
      opt.zeroGrad();
      return { loss: v, finite: false, tokens };
    }
    lossSum += v;
  }
  if (o.clipGradNorm !== undefined) noGrad(() => clipGradNorm(opt.params, o.clipGradNorm!).dispose());
  opt.step(o.lr);
  opt.zeroGrad();
  return { loss: lossSum / batches.length, finite: true, tokens };
}
