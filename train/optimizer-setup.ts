// The optimizer of a training run, as `--optim` names it (HF TrainingArguments' `optim` values, and the tutorial's):
//   adamw        the tutorial's transformers.AdamW (correct_bias) over every parameter: Lightning's
//                `AdamW(self.parameters(), lr)`, eps 1e-6 and weight decay 0 by default
//   adamw_torch  HF Trainer's default: torch.optim.AdamW, eps 1e-8 by default, in Trainer's two param groups
//   adafactor    HF Trainer's optim="adafactor": transformers' Adafactor at the given lr (no relative step, no
//                parameter scale), in the same two groups
// Trainer's groups (`get_decay_parameter_names`): weight decay for every parameter but those whose lower-cased
// name matches bias|layernorm|rmsnorm|(^|.)norm($|.)|_norm($|.): in T5 every layer_norm.weight, and, since its name
// holds "bias", each stack's relative_attention_bias.weight.
import type { Tensor } from '../engine/tensor.ts';
import { Adafactor } from '../optim/adafactor.ts';
import { AdamW } from '../optim/adamw.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { ResolvedTrainOptions } from './train-options.ts';

const TRAINER_NO_DECAY = /bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)/;

/** Whether HF's Trainer leaves this parameter (a Hugging Face name) out of weight decay. */
export function trainerSkipsDecay(name: string): boolean {
  return TRAINER_NO_DECAY.test(name.toLowerCase());
}

export function createOptimizer(
  model: T5ForConditionalGeneration,
  o: Pick<ResolvedTrainOptions, 'optim' | 'lr' | 'adamBetas' | 'adamEps' | 'weightDecay'>,
): AdamW | Adafactor {
  const named = model.parameters();
  const params = named.map(([, p]) => p);
  const noDecay: Tensor[] = named.filter(([name]) => trainerSkipsDecay(name)).map(([, p]) => p);
  switch (o.optim) {
    case 'adamw':
      return new AdamW(params, { lr: o.lr, betas: o.adamBetas, eps: o.adamEps, weightDecay: o.weightDecay, variant: 'hf' });
    case 'adamw_torch':
      return new AdamW(params, { lr: o.lr, betas: o.adamBetas, eps: o.adamEps, weightDecay: o.weightDecay, variant: 'torch', noDecay });
    case 'adafactor':
      return new Adafactor(params, { lr: o.lr, relativeStep: false, scaleParameter: false, weightDecay: o.weightDecay, noDecay });
  }
}
