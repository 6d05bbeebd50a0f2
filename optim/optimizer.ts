// What the training step needs of an optimizer (AdamW, Adafactor): the parameters it updates, one update at a
// learning rate, and dropping the gradients. Each keeps its own state and its own checkpoint format.
import type { Tensor } from '../engine/tensor.ts';

export interface Optimizer {
  readonly params: Tensor[];
  /** optimizer steps taken */
  stepCount: number;
  /** Updates every parameter that has a gradient; `lr`, if given, becomes the learning rate from now on. */
  step(lr?: number): void;
  /** Drops every parameter's gradient (set_to_none). */
  zeroGrad(): void;
  /** Frees the optimizer's state (not the parameters). */
  dispose(): void;
}

/**
 * The parameters of `params` that `noDecay` names, as a set to test each parameter against: PyTorch's second
 * param group with weight_decay 0 (HF's Trainer puts norms and biases there). Each must be one of `params`.
 */
export function noDecaySet(optimizer: string, params: readonly Tensor[], noDecay: Iterable<Tensor> | undefined): ReadonlySet<Tensor> {
  const set = new Set(noDecay ?? []);
  const known = new Set(params);
  for (const p of set) if (!known.has(p)) throw new Error(`${optimizer}: a noDecay tensor ${p.describe()} is not one of its parameters`);
  return set;
}

/**
 * The checks both optimizers make of their parameter list: f32 only, and no two entries on one buffer. Updates
 * are in place, so two entries on one buffer (the same tensor twice, or a view of it) would be updated twice per
 * step; tied weights are one parameter.
 */
export function checkOptimizerParams(optimizer: string, params: readonly Tensor[]): void {
  const seen = new Map<GPUBuffer, number>();
  params.forEach((p, i) => {
    if (p.dtype !== 'f32') throw new TypeError(`${optimizer}: parameter ${i} ${p.describe()} is not f32`);
    const j = seen.get(p.buffer);
    if (j !== undefined) throw new Error(`${optimizer}: parameter ${i} ${p.describe()} shares its storage with parameter ${j}`);
    seen.set(p.buffer, i);
  });
}
