// transformers' Adafactor: a parameter list, per-parameter state created on a parameter's first update (factored
// second moments for matrices: a row and a column vector instead of a full tensor; a full one for vectors; the
// first moment only with beta1), step counts, and checkpoint state. Each step records kernels/adafactor.ts's few
// kernels per parameter: no readback, no graph.
//
// Memory: AdamW keeps two tensors the size of the model; Adafactor without beta1 keeps R + C numbers per [R, C]
// matrix (t5-base: 1,873 MiB of AdamW moments against 2 MiB; t5-small 464 MiB against 1 MiB).
import { noGrad, zeroGrad } from '../engine/autograd.ts';
import { tensor, zeros, type Tensor } from '../engine/tensor.ts';
import { adafactorStep, ADAFACTOR_DEFAULTS, checkAdafactorHyper, isFactored, type AdafactorHyper, type AdafactorSlotTensors } from '../kernels/adafactor.ts';
import { checkOptimizerParams, noDecaySet, type Optimizer } from './optimizer.ts';

/** HF's constructor arguments (camelCase); left out: HF's defaults. */
export type AdafactorOptions = Partial<AdafactorHyper> & {
  /** parameters updated without weight decay (a param group with weight_decay 0) */
  noDecay?: Iterable<Tensor>;
};

/** One parameter's state as a checkpoint holds it (HF's names): factored or not, with or without exp_avg. */
export interface AdafactorParamState {
  step: number;
  expAvgSqRow?: Float32Array;
  expAvgSqCol?: Float32Array;
  expAvgSq?: Float32Array;
  expAvg?: Float32Array;
}

export interface AdafactorState {
  step: number;
  hyper: AdafactorHyper;
  /** null: not updated yet */
  params: Array<AdafactorParamState | null>;
}

interface Slot extends AdafactorSlotTensors {
  step: number;
}

export class Adafactor implements Optimizer {
  readonly params: Tensor[];
  readonly hyper: AdafactorHyper;
  stepCount = 0;
  private slots: Array<Slot | null>;
  private readonly noDecay: ReadonlySet<Tensor>;

  constructor(params: Iterable<Tensor>, opts: AdafactorOptions = {}) {
    this.params = [...params];
    const { noDecay, ...hyper } = opts;
    this.hyper = { ...ADAFACTOR_DEFAULTS, ...hyper };
    checkAdafactorHyper(this.hyper);
    checkOptimizerParams('Adafactor', this.params);
    this.noDecay = noDecaySet('Adafactor', this.params, noDecay);
    for (const p of this.params) isFactored(p.shape); // rank 1 or 2 only
    this.slots = this.params.map(() => null);
  }

  /** The external learning rate (null with relative_step). */
  get lr(): number | null {
    return this.hyper.lr;
  }

  step(lr?: number): void {
    if (lr !== undefined) {
      if (this.hyper.relativeStep) throw new Error('Adafactor: relative_step computes its own learning rate; step() takes none');
      this.hyper.lr = lr;
    }
    checkAdafactorHyper(this.hyper);
    noGrad(() => {
      this.params.forEach((p, i) => {
        const g = p.grad;
        if (!g) return;
        let slot = this.slots[i];
        if (!slot) slot = this.slots[i] = this.newSlot(p);
        slot.step++;
        adafactorStep(p, g, slot, slot.step, this.noDecay.has(p) ? { ...this.hyper, weightDecay: 0 } : this.hyper);
      });
    });
    this.stepCount++;
  }

  private newSlot(p: Tensor): Slot {
    const slot: Slot = { step: 0 };
    if (isFactored(p.shape)) {
      slot.vr = zeros([p.shape[0]!]).keep();
      slot.vc = zeros([p.shape[1]!]).keep();
    } else slot.v = zeros(p.shape).keep();
    if (this.hyper.beta1 !== null) slot.m = zeros(p.shape).keep();
    return slot;
  }

  /** Drops every parameter's gradient (set_to_none, PyTorch's default). */
  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** Reads the state back for a checkpoint. */
  async state(): Promise<AdafactorState> {
    const params: Array<AdafactorParamState | null> = [];
    for (const slot of this.slots) {
      if (!slot) {
        params.push(null);
        continue;
      }
      const s: AdafactorParamState = { step: slot.step };
      if (slot.vr) s.expAvgSqRow = await slot.vr.toFloat32();
      if (slot.vc) s.expAvgSqCol = await slot.vc.toFloat32();
      if (slot.v) s.expAvgSq = await slot.v.toFloat32();
      if (slot.m) s.expAvg = await slot.m.toFloat32();
      params.push(s);
    }
    return { step: this.stepCount, hyper: { ...this.hyper, eps: [...this.hyper.eps] }, params };
  }

  /** Restores `state()` for the same parameter list; other hyperparameters than lr are refused, so a resumed run
   * cannot silently change optimizer. */
  loadState(s: AdafactorState): void {
    if (s.params.length !== this.params.length) {
      throw new RangeError(`Adafactor.loadState: state has ${s.params.length} parameters, optimizer has ${this.params.length}`);
    }
    const { lr: _a, ...mine } = this.hyper;
    const { lr: _b, ...theirs } = s.hyper;
    if (JSON.stringify(mine) !== JSON.stringify(theirs)) {
      throw new Error(`Adafactor.loadState: state was saved with ${JSON.stringify(theirs)}; this optimizer has ${JSON.stringify(mine)}`);
    }
    const slots = s.params.map((ps, i): Slot | null => {
      if (!ps) return null;
      const p = this.params[i]!;
      const fits = (a: Float32Array | undefined, n: number) => a !== undefined && a.length === n;
      const factored = isFactored(p.shape);
      const ok = Number.isInteger(ps.step) && ps.step >= 1 &&
        (factored ? fits(ps.expAvgSqRow, p.shape[0]!) && fits(ps.expAvgSqCol, p.shape[1]!) : fits(ps.expAvgSq, p.size)) &&
        (this.hyper.beta1 === null || fits(ps.expAvg, p.size));
      if (!ok) throw new RangeError(`Adafactor.loadState: state of parameter ${i} does not fit ${p.describe()}`);
      const slot: Slot = { step: ps.step };
      if (factored) {
        slot.vr = tensor(ps.expAvgSqRow!, [p.shape[0]!]).keep();
        slot.vc = tensor(ps.expAvgSqCol!, [p.shape[1]!]).keep();
      } else slot.v = tensor(ps.expAvgSq!, p.shape).keep();
      if (this.hyper.beta1 !== null) slot.m = tensor(ps.expAvg!, p.shape).keep();
      return slot;
    });
    this.dispose();
    this.slots = slots;
    this.stepCount = s.step;
    if (!this.hyper.relativeStep) this.hyper.lr = s.hyper.lr;
  }

  dispose(): void {
    for (const s of this.slots) for (const t of [s?.vr, s?.vc, s?.v, s?.m]) t?.dispose();
    this.slots = this.params.map(() => null);
  }
}
