// T5ForConditionalGeneration: parameters on the GPU under Hugging Face's names (model/parameters.ts). Loading from
// and saving to Hugging Face folders is hf/pretrained.ts's job.
import type { Tensor } from '../engine/tensor.ts';
import type { T5Config } from './config.ts';
import { DropoutState, t5Forward, type ForwardContext, type ParamMap, type Seq2SeqBatch, type Seq2SeqOutput } from './t5.ts';

export interface ForwardOptions {
  /** dropout on (model.train()); default false (model.eval()) */
  training?: boolean;
  /** overrides config.dropout_rate */
  dropoutRate?: number;
  /** seed of the counter-based dropout masks */
  dropoutSeed?: number;
  /** recompute each block's activations in the backward instead of keeping them (HF's gradient_checkpointing) */
  gradientCheckpointing?: boolean;
  /** skip a padded batch's padding (model/token-rows.ts): the same loss, and the same logits and encoder states at
   * real positions, for less work; `encoderHidden` then holds zeros at padded positions where Hugging Face has values, and `logits` zeros
   * at target positions without a label (when those end every row, the decoder skips them). Those two padded
   * tensors are gathered when first read: a caller of the loss alone never pays for them. Default false. */
  skipPadding?: boolean;
  /** The loss with label smoothing ε in [0, 1), as HF's Trainer computes it with `label_smoothing_factor` (its
   * LabelSmoother; HF's model itself has none). Default 0. */
  labelSmoothing?: number;
}


export class T5ForConditionalGeneration {
  constructor(readonly config: T5Config, readonly params: ParamMap) {}

  /** Trainable parameters, each once (the tied embedding appears as `shared.weight` only). */
  parameters(): Array<[string, Tensor]> {
    return [...this.params];
  }

  setRequiresGrad(on: boolean): void {
    for (const p of this.params.values()) p.requiresGrad = on;
  }

  context(opts: ForwardOptions = {}): ForwardContext {
    const rate = opts.dropoutRate ?? this.config.dropout_rate;
    return {
      config: this.config,
      params: this.params,
      dropout: new DropoutState(rate, opts.dropoutSeed ?? 0, opts.training ?? false),
      gradientCheckpointing: opts.gradientCheckpointing ?? false,
      skipPadding: opts.skipPadding ?? false,
      labelSmoothing: opts.labelSmoothing ?? 0,
    };
  }

  forward(batch: Seq2SeqBatch, opts: ForwardOptions = {}): Seq2SeqOutput {
    return t5Forward(this.context(opts), batch);
  }

  /** Host copies of every parameter under Hugging Face's names. */
  async stateDict(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, p] of this.params) out.set(name, { shape: p.shape, data: await p.toFloat32() });
    return out;
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
  }
}
