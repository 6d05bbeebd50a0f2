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
