// Learning-rate schedules: against transformers' get_scheduler itself (fixtures/golden/lr-schedules.py, every
// step bit for bit), and against its formulas evaluated by hand (1e-15 relative).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkSchedule, lrAt, SCHEDULES, type ScheduleKind } from '../optim/lr-schedule.ts';
import { resolveTrainOptions, resumedOptions } from '../train/train-options.ts';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/golden/t5-tiny-relu/lr-schedules.json', import.meta.url), 'utf8')) as {
  runs: Array<{ lr_scheduler_type: ScheduleKind; lr: number; warmup_steps: number; total_steps: number; lrs: number[] }>;
};

describe("lrAt matches transformers' get_scheduler", () => {
  it('covers every schedule we offer', () => {
    expect(new Set(fixture.runs.map((r) => r.lr_scheduler_type))).toEqual(new Set(SCHEDULES));
  });
  for (const r of fixture.runs) {
    it(`${r.lr_scheduler_type}, lr ${r.lr}, warm-up ${r.warmup_steps} of ${r.total_steps} steps`, () => {
      const s = { kind: r.lr_scheduler_type, lr: r.lr, warmupSteps: r.warmup_steps, totalSteps: r.total_steps };
      checkSchedule(s);
      expect(r.lrs.map((_, step) => lrAt(s, step))).toEqual(r.lrs);
    });
  }
});

describe('lrAt', () => {
  it('constant without warmup is the base rate at every step', () => {
    for (const s of [0, 1, 99, 1000]) expect(lrAt({ kind: 'constant', lr: 1e-4, warmupSteps: 0, totalSteps: 100 }, s)).toBe(1e-4);
  });
  it('warmup ramps linearly from 0, then holds (constant_with_warmup) or decays to 0 at totalSteps (linear)', () => {
    const c = { kind: 'constant_with_warmup' as const, lr: 1e-3, warmupSteps: 10, totalSteps: 110 };
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
    expect(() => checkSchedule({ kind: 'reduce_lr_on_plateau' as never, lr: 1, warmupSteps: 0, totalSteps: 1 }))
      .toThrow(/unknown learning-rate schedule 'reduce_lr_on_plateau' \(constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial, inverse_sqrt\)/);
    // HF's "constant" ignores warm-up steps; we refuse rather than warm up (or not) under its name
    expect(() => checkSchedule({ kind: 'constant', lr: 1, warmupSteps: 3, totalSteps: 10 })).toThrow(/use 'constant_with_warmup' for 3 warm-up steps/);
    expect(() => checkSchedule({ kind: 'polynomial', lr: 1e-8, warmupSteps: 0, totalSteps: 10 })).toThrow(/lr_end \(1e-7\) must be smaller than initial lr \(1e-8\)/);
    expect(() => checkSchedule({ kind: 'polynomial', lr: 1, warmupSteps: 5, totalSteps: 5 })).toThrow(/more total steps \(5\) than warm-up steps \(5\)/);
    expect(() => checkSchedule({ kind: 'linear', lr: -1, warmupSteps: 0, totalSteps: 1 })).toThrow(/positive/);
    expect(() => checkSchedule({ kind: 'linear', lr: 1, warmupSteps: 1.5, totalSteps: 1 })).toThrow(/warmup/);
  });
});

describe('warm-up options of a training run', () => {
  const base = { data: 'd.csv', model: 'm', out: 'o' };
  it("HF's warmup_ratio in [0, 1]; a run saved when 'constant' warmed up resumes as 'constant_with_warmup'", () => {
    expect(resolveTrainOptions({ ...base, lrSchedule: 'linear', warmupRatio: 0.1 }).warmupRatio).toBe(0.1);
    expect(() => resolveTrainOptions({ ...base, warmupRatio: 1.5 })).toThrow(/warmup ratio must lie in range \[0, 1\], got 1.5/);
    // refused with the options, before a run writes anything
    expect(() => resolveTrainOptions({ ...base, lrSchedule: 'constant', warmupRatio: 0.1 })).toThrow(/use 'constant_with_warmup' to warm up/);
    expect(() => resolveTrainOptions({ ...base, warmupSteps: 3 })).toThrow(/'constant' schedule has no warm-up/);
    // (what such a run saved: a resolved 'constant' with warm-up steps, built here without the check)
    const old = { ...resolveTrainOptions({ ...base, lrSchedule: 'constant_with_warmup', warmupSteps: 4 }), lrSchedule: 'constant' as const };
    expect(resumedOptions(old, { ...base, maxSteps: 9 })).toMatchObject({ lrSchedule: 'constant_with_warmup', warmupSteps: 4, maxSteps: 9 });
    const plain = resolveTrainOptions({ ...base, lrSchedule: 'constant' });
    expect(resumedOptions(plain, base).lrSchedule).toBe('constant');
  });
});
