// Learning rate per optimizer step, as transformers' schedules (LambdaLR factors times the base lr).
// The tutorial's Lightning module used a constant rate with no warmup; that is the default here.

export const SCHEDULES = ['constant', 'linear', 'cosine'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

export interface LrSchedule {
  kind: ScheduleKind;
  /** base learning rate */
  lr: number;
  /** linear ramp from 0 over this many optimizer steps */
  warmupSteps: number;
  /** optimizer steps of the whole run (the linear and cosine decays reach 0 there) */
  totalSteps: number;
}

/**
 * The learning rate used by optimizer step `step` (0-based: the first update uses step 0), as
 * `get_constant_schedule_with_warmup` / `get_linear_schedule_with_warmup` / `get_cosine_schedule_with_warmup`
 * (num_cycles 0.5: half a cosine wave, from lr down to 0):
 *   warmup: lr * step / max(1, warmup)
 *   then constant: lr; linear: lr * max(0, (total - step) / max(1, total - warmup));
 *   cosine: lr * max(0, (1 + cos(pi * progress)) / 2), progress = (step - warmup) / max(1, total - warmup)
 */
export function lrAt(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lr * step) / Math.max(1, s.warmupSteps);
  if (s.kind === 'constant') return s.lr;
  if (s.kind === 'cosine') {
    const progress = (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps);
    return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
  }
  return s.lr * Math.max(0, (s.totalSteps - step) / Math.max(1, s.totalSteps - s.warmupSteps));
}

export function checkSchedule(s: LrSchedule): void {
  if (!SCHEDULES.includes(s.kind)) throw new Error(`unknown learning-rate schedule '${s.kind}' (${SCHEDULES.join(', ')})`);
  if (!(s.lr > 0) || !Number.isFinite(s.lr)) throw new Error(`learning rate must be a positive number, got ${s.lr}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new Error(`warmup steps must be a non-negative integer, got ${s.warmupSteps}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 0) throw new Error(`total steps must be a non-negative integer, got ${s.totalSteps}`);
}
