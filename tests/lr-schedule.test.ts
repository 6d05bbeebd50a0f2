// Learning-rate schedules against transformers' formulas (get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup), evaluated by hand; exact up to float64 rounding (1e-15 relative).
import { describe, expect, it } from 'vitest';
import { checkSchedule, lrAt } from '../optim/lr-schedule.ts';

describe('lrAt', () => {
  it('constant without warmup is the base rate at every step', () => {
    for (const s of [0, 1, 99, 1000]) expect(lrAt({ kind: 'constant', lr: 1e-4, warmupSteps: 0, totalSteps: 100 }, s)).toBe(1e-4);
  });
  it('warmup ramps linearly from 0, then holds (constant) or decays to 0 at totalSteps (linear)', () => {
    const c = { kind: 'constant' as const, lr: 1e-3, warmupSteps: 10, totalSteps: 110 };
    expect(lrAt(c, 0)).toBe(0);
    expect(lrAt(c, 5)).toBeCloseTo(5e-4, 15);
    expect(lrAt(c, 10)).toBe(1e-3);
    const l = { ...c, kind: 'linear' as const };
    expect(lrAt(l, 10)).toBeCloseTo(1e-3, 15);
    expect(lrAt(l, 60)).toBeCloseTo(1e-3 * 50 / 100, 15);
    expect(lrAt(l, 110)).toBe(0);
    expect(lrAt(l, 200)).toBe(0);
  });
  it('linear without warmup starts at the base rate', () => {
    expect(lrAt({ kind: 'linear', lr: 2, warmupSteps: 0, totalSteps: 4 }, 0)).toBe(2);
    expect(lrAt({ kind: 'linear', lr: 2, warmupSteps: 0, totalSteps: 4 }, 3)).toBe(0.5);
  });
  it('refuses bad settings with a message', () => {
    expect(() => checkSchedule({ kind: 'cosine' as never, lr: 1, warmupSteps: 0, totalSteps: 1 })).toThrow(/unknown learning-rate schedule/);
    expect(() => checkSchedule({ kind: 'linear', lr: -1, warmupSteps: 0, totalSteps: 1 })).toThrow(/positive/);
    expect(() => checkSchedule({ kind: 'linear', lr: 1, warmupSteps: 1.5, totalSteps: 1 })).toThrow(/warmup/);
  });
});
