// The AdamW optimizer: a parameter list, its moments (exp_avg, exp_avg_sq, created as zeros on a parameter's first
// update, as PyTorch does), per-parameter step counts, and checkpoint state. Each step records one fused kernel per
// parameter (kernels/adamw.ts) and nothing else: no readback, no graph.
import { noGrad, zeroGrad } from '../engine/autograd.ts';
import { tensor, zeros, type Tensor } from '../engine/tensor.ts';
import { adamwStep, checkHyper, type AdamWHyper, type AdamWVariant } from '../kernels/adamw.ts';
import { checkOptimizerParams, noDecaySet } from './optimizer.ts';

export interface AdamWOptions {
  /** learning rate; change it per step with `opt.lr = …` or `step(lr)` (a schedule sets it) */
  lr: number;
  /** default [0.9, 0.999] */
  betas?: [number, number];
  /** default 1e-8 */
  eps?: number;
  /** decoupled weight decay; default 0.01 (torch.optim.AdamW's default; transformers.AdamW's is 0) */
  weightDecay?: number;
  /** 'torch': torch.optim.AdamW (default); 'hf': transformers.AdamW(correct_bias=True) */
  variant?: AdamWVariant;
  /** parameters updated without weight decay (a param group with weight_decay 0) */
  noDecay?: Iterable<Tensor>;
}

/** One parameter's optimizer state, as in PyTorch's `optimizer.state[p]`. */
export interface AdamWParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** Everything needed to resume: hyperparameters and per-parameter state (null: not updated yet), in param order. */
export interface AdamWState {
  step: number;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  variant: AdamWVariant;
  params: Array<AdamWParamState | null>;
}

interface Slot {
  step: number;
  m: Tensor;
  v: Tensor;
}

export class AdamW {
  readonly params: Tensor[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly variant: AdamWVariant;
  /** optimizer steps taken (calls of `step`) */
  stepCount = 0;
  private slots: Array<Slot | null>;
  private readonly noDecay: ReadonlySet<Tensor>;

  constructor(params: Iterable<Tensor>, opts: AdamWOptions) {
    this.params = [...params];
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.variant = opts.variant ?? 'torch';
    checkHyper(this.hyper());
    checkOptimizerParams('AdamW', this.params);
    this.noDecay = noDecaySet('AdamW', this.params, opts.noDecay);
    this.slots = this.params.map(() => null);
  }

  private hyper(): AdamWHyper {
    return {
      lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay,
      variant: this.variant,
    };
  }

  /** Updates every parameter that has a gradient (parameters without one are skipped and their step count does not
   * advance, as in PyTorch). `lr`, if given, becomes the learning rate from now on. */
  step(lr?: number): void {
    if (lr !== undefined) this.lr = lr;
    const h = this.hyper();
    checkHyper(h);
    const hNoDecay = { ...h, weightDecay: 0 };
    noGrad(() => {
      this.params.forEach((p, i) => {
        const g = p.grad;
        if (!g) return;
        if (g.shape.join() !== p.shape.join()) {
          throw new RangeError(`AdamW: gradient [${g.shape.join(', ')}] of parameter ${i} does not match [${p.shape.join(', ')}]`);
        }
        let slot = this.slots[i];
        if (!slot) slot = this.slots[i] = { step: 0, m: zeros(p.shape).keep(), v: zeros(p.shape).keep() };
        slot.step++;
        adamwStep(p, g, slot.m, slot.v, slot.step, this.noDecay.has(p) ? hNoDecay : h);
      });
    });
    this.stepCount++;
  }

  /** Drops every parameter's gradient (set_to_none, PyTorch's default). */
  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** Reads the moments back for a checkpoint. */
  async state(): Promise<AdamWState> {
    const params: Array<AdamWParamState | null> = [];
    for (const slot of this.slots) {
      params.push(slot ? { step: slot.step, expAvg: await slot.m.toFloat32(), expAvgSq: await slot.v.toFloat32() } : null);
    }
    return {
      step: this.stepCount, lr: this.lr, betas: [...this.betas], eps: this.eps, weightDecay: this.weightDecay,
      variant: this.variant, params,
    };
  }

  /** Restores a state from `state()` for the same parameter list (checked by count and sizes). Hyperparameters other
   * than lr stay as constructed; a mismatch is refused so a resumed run cannot silently change optimizer. */
  loadState(s: AdamWState): void {
    if (s.params.length !== this.params.length) {
      throw new RangeError(`AdamW.loadState: state has ${s.params.length} parameters, optimizer has ${this.params.length}`);
    }
    const same = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a));
    if (!same(s.betas[0], this.betas[0]) || !same(s.betas[1], this.betas[1]) || !same(s.eps, this.eps) ||
        !same(s.weightDecay, this.weightDecay) || s.variant !== this.variant) {
      throw new Error(
        `AdamW.loadState: state was saved with betas [${s.betas}], eps ${s.eps}, weight decay ${s.weightDecay}, ` +
          `variant ${s.variant}; this optimizer has [${this.betas}], ${this.eps}, ${this.weightDecay}, ${this.variant}`,
      );
    }
    s.params.forEach((ps, i) => {
      const p = this.params[i]!;
      if (ps && (ps.expAvg.length !== p.size || ps.expAvgSq.length !== p.size || !(Number.isInteger(ps.step) && ps.step >= 1))) {
        throw new RangeError(`AdamW.loadState: state of parameter ${i} does not fit ${p.describe()}`);
      }
    });
    this.disposeSlots();
    this.slots = s.params.map((ps, i) =>
      ps ? {
        step: ps.step,
        m: tensor(ps.expAvg, this.params[i]!.shape).keep(),
        v: tensor(ps.expAvgSq, this.params[i]!.shape).keep(),
      } : null,
    );
    this.stepCount = s.step;
    this.lr = s.lr;
  }

  /** The moment tensors of parameter i (for tests and inspection); null before its first update. */
  moments(i: number): { step: number; expAvg: Tensor; expAvgSq: Tensor } | null {
    const slot = this.slots[i];
    return slot ? { step: slot.step, expAvg: slot.m, expAvgSq: slot.v } : null;
  }

  private disposeSlots(): void {
    for (const s of this.slots) {
      s?.m.dispose();
      s?.v.dispose();
    }
  }

  /** Frees the moments (not the parameters). */
  dispose(): void {
    this.disposeSlots();
    this.slots = this.params.map(() => null);
  }
}
