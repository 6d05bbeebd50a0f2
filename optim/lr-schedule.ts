// Learning rate per optimizer step, as transformers' schedules: the base lr times a LambdaLR factor, under HF
// Trainer's `lr_scheduler_type` names. The tutorial's Lightning module used a constant rate with no warmup;
// that is the default here.

/** HF's `lr_scheduler_type` values that need no `lr_scheduler_kwargs` (reduce_lr_on_plateau, cosine_with_min_lr
 * and warmup_stable_decay do, and are not here). */
export const SCHEDULES = ['constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'inverse_sqrt'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

export interface LrSchedule {
  kind: ScheduleKind;
  /** base learning rate */
  lr: number;
  /** linear ramp from 0 over this many optimizer steps (not with `constant`: HF's get_constant_schedule has none) */
  warmupSteps: number;
  /** optimizer steps of the whole run (the linear, cosine and polynomial decays end there) */
  totalSteps: number;
}

/** get_polynomial_decay_schedule_with_warmup's defaults, which HF's Trainer keeps: a linear decay to 1e-7. */
const POLYNOMIAL_LR_END = 1e-7;
const POLYNOMIAL_POWER = 1.0;
/** get_inverse_sqrt_schedule's timescale when there is no warm-up (`num_warmup_steps or 10_000`). */
const INVERSE_SQRT_TIMESCALE = 10_000;

/**
 * The factor of optimizer step `step` (0-based: the first update uses step 0), each as transformers' lr_lambda,
 * operation for operation (W warm-up steps, T total steps):
 *   warm-up (every schedule but constant): step / max(1, W)
 *   constant, constant_with_warmup: 1;  linear: max(0, (T - step) / max(1, T - W))
 *   cosine: max(0, (1 + cos(pi * 0.5 * 2 * p)) / 2) with p = (step - W) / max(1, T - W); past T it rises again, as HF's
 *   cosine_with_restarts (one cycle, HF Trainer's): 0 from p >= 1, else max(0, (1 + cos(pi * (p % 1))) / 2)
 *   polynomial: lr_end / lr past T; else ((lr - lr_end) * (1 - (step - W) / (T - W)) ** power + lr_end) / lr
 *   inverse_sqrt: 1 / sqrt((step + timescale - W) / timescale), timescale = W or 10,000
 */
function factorAt(s: LrSchedule, step: number): number {
  const W = s.warmupSteps;
  const T = s.totalSteps;
  if (s.kind === 'constant') return 1.0;
  if (step < W) return step / Math.max(1, W);
  switch (s.kind) {
    case 'constant_with_warmup':
      return 1.0;
    case 'linear':
      return Math.max(0.0, (T - step) / Math.max(1, T - W));
    case 'cosine': {
      const progress = (step - W) / Math.max(1, T - W);
      return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * 0.5 * 2.0 * progress)));
    }
    case 'cosine_with_restarts': {
      const progress = (step - W) / Math.max(1, T - W);
      if (progress >= 1.0) return 0.0;
      return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * ((1.0 * progress) % 1.0))));
    }
    case 'polynomial': {
      if (step > T) return POLYNOMIAL_LR_END / s.lr;
      const pctRemaining = 1 - (step - W) / (T - W);
      return ((s.lr - POLYNOMIAL_LR_END) * pctRemaining ** POLYNOMIAL_POWER + POLYNOMIAL_LR_END) / s.lr;
    }
    case 'inverse_sqrt': {
      const timescale = W || INVERSE_SQRT_TIMESCALE;
      return 1.0 / Math.sqrt((step + timescale - W) / timescale);
    }
  }
}

/** The learning rate of optimizer step `step`: base lr times the factor (torch's LambdaLR). */
export function lrAt(s: LrSchedule, step: number): number {
  return s.lr * factorAt(s, step);
}

export function checkSchedule(s: LrSchedule): void {
  if (!SCHEDULES.includes(s.kind)) throw new Error(`unknown learning-rate schedule '${s.kind}' (${SCHEDULES.join(', ')})`);
  if (!(s.lr > 0) || !Number.isFinite(s.lr)) throw new Error(`learning rate must be a positive number, got ${s.lr}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new Error(`warmup steps must be a non-negative integer, got ${s.warmupSteps}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 0) throw new Error(`total steps must be a non-negative integer, got ${s.totalSteps}`);
  if (s.kind === 'constant' && s.warmupSteps > 0) {
    // HF's get_scheduler ignores num_warmup_steps for "constant": say so rather than warm up under its name
    throw new Error(`the 'constant' schedule has no warm-up (Hugging Face's get_constant_schedule ignores warmup_steps): use 'constant_with_warmup' for ${s.warmupSteps} warm-up steps`);
  }
  if (s.kind === 'polynomial') {
    if (!(s.lr > POLYNOMIAL_LR_END)) throw new Error(`lr_end (${POLYNOMIAL_LR_END}) must be smaller than initial lr (${s.lr})`);
    // HF divides by T - W at every step from W to T
    if (s.totalSteps <= s.warmupSteps) throw new Error(`the 'polynomial' schedule needs more total steps (${s.totalSteps}) than warm-up steps (${s.warmupSteps})`);
  }
}
