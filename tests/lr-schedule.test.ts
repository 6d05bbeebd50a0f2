// Learning-rate schedules against transformers' formulas (get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup), evaluated by hand; exact up to float64
// rounding (1e-15 relative).
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
  it('cosine: half a wave from the base rate after the warm-up to 0 at totalSteps, then 0', () => {
    const c = { kind: 'cosine' as const, lr: 1e-3, warmupSteps: 10, totalSteps: 110 };
    expect(lrAt(c, 5)).toBeCloseTo(5e-4, 15); // the warm-up is the same linear ramp
    expect(lrAt(c, 10)).toBe(1e-3);
    // a quarter of the way: (1 + cos(pi / 4)) / 2; half way: 1/2; three quarters: (1 + cos(3 pi / 4)) / 2
    expect(lrAt(c, 35)).toBeCloseTo(1e-3 * (1 + Math.SQRT1_2) / 2, 15);
    expect(lrAt(c, 60)).toBeCloseTo(5e-4, 15);
    expect(lrAt(c, 85)).toBeCloseTo(1e-3 * (1 - Math.SQRT1_2) / 2, 15);
    expect(lrAt(c, 110)).toBe(0);
    // past the end the wave would rise again (progress > 1); HF's max(0, ...) does not stop that, so neither do we
    expect(lrAt(c, 160)).toBeCloseTo(5e-4, 15);
  });
  it('refuses bad settings with a message', () => {
    expect(() => checkSchedule({ kind: 'cosine_with_restarts' as never, lr: 1, warmupSteps: 0, totalSteps: 1 }))
      .toThrow(/unknown learning-rate schedule 'cosine_with_restarts' \(constant, linear, cosine\)/);
    expect(() => checkSchedule({ kind: 'linear', lr: -1, warmupSteps: 0, totalSteps: 1 })).toThrow(/positive/);
    expect(() => checkSchedule({ kind: 'linear', lr: 1, warmupSteps: 1.5, totalSteps: 1 })).toThrow(/warmup/);
  });
});
