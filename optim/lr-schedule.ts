// Learning rate per optimizer step, as transformers' schedules (LambdaLR factors times the base lr).
// The tutorial's Lightning module used a constant rate with no warmup; that is the default here.

export type ScheduleKind = 'constant' | 'linear';

export interface LrSchedule {
  kind: ScheduleKind;
  /** base learning rate */
  lr: number;
  /** linear ramp from 0 over this many optimizer steps */
  warmupSteps: number;
  /** optimizer steps of the whole run (the linear decay reaches 0 there) */
  totalSteps: number;
}

/**
 * The learning rate used by optimizer step `step` (0-based: the first update uses step 0), as
 * `get_constant_schedule_with_warmup` / `get_linear_schedule_with_warmup`:
 *   warmup: lr * step / max(1, warmup)
 *   then constant: lr; linear: lr * max(0, (total - step) / max(1, total - warmup))
 */
export function lrAt(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lr * step) / Math.max(1, s.warmupSteps);
  if (s.kind === 'constant') return s.lr;
  return s.lr * Math.max(0, (s.totalSteps - step) / Math.max(1, s.totalSteps - s.warmupSteps));
}

export function checkSchedule(s: LrSchedule): void {
  if (s.kind !== 'constant' && s.kind !== 'linear') throw new Error(`unknown learning-rate schedule '${s.kind}' (constant or linear)`);
  if (!(s.lr > 0) || !Number.isFinite(s.lr)) throw new Error(`learning rate must be a positive number, got ${s.lr}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new Error(`warmup steps must be a non-negative integer, got ${s.warmupSteps}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < 0) throw new Error(`total steps must be a non-negative integer, got ${s.totalSteps}`);
}
