// The bench runner's peakBytes covers the timed runs only: scratch that the warm-up allocated (the autotuner's
// copies of a weight, for one) and left pooled is not the row's memory.
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { memory, zeros } from '../engine/tensor.ts';
import { selectCases, timeCase } from '../bench/run.ts';
import type { BenchCase } from '../bench/types.ts';
import type { Ceilings } from '../engine/ceilings.ts';

const SCRATCH_FLOATS = 1 << 20; // 4 MiB, allocated by the first run only
const WORK_FLOATS = 1 << 12; // 16 KiB, every run
const CEILINGS: Ceilings = { adapter: 'test', driver: 'test', copyGBps: 1, fmaGflops: 1, measuredAt: '' };

/** A case whose first run allocates SCRATCH and frees it into the pool, as a tuning job does. */
function caseWithWarmUpScratch(async: boolean): BenchCase {
  return {
    op: 'test', shape: async ? 'async' : 'sync', dtype: 'f32',
    setup() {
      let runs = 0;
      const run = () => {
        if (runs++ === 0) zeros([SCRATCH_FLOATS]).dispose();
        zeros([WORK_FLOATS]).dispose();
      };
      return {
        run,
        ...(async ? { runAsync: async () => run() } : {}),
        check: async () => 0,
        peakBytes: () => memory().peakBytes,
        dispose() {},
      };
    },
  };
}

beforeAll(async () => {
  await initGpu();
});

describe('bench runner', () => {
  for (const async of [false, true]) {
    it(`peakBytes leaves out what the warm-up left pooled (${async ? 'runAsync' : 'run'} case)`, async () => {
      const row = await timeCase(caseWithWarmUpScratch(async), 1, false, CEILINGS);
      expect(row.peakBytes).toBeGreaterThanOrEqual(WORK_FLOATS * 4);
      expect(row.peakBytes).toBeLessThan(SCRATCH_FLOATS * 4);
    });
  }

  it('runs the t5 rows at the batch asked for (--batch), checked against the float64 reference', async () => {
    const cases = await selectCases({ ops: ['t5'], sizes: ['tiny'], batch: 3 });
    expect(cases.map((c) => `${c.op} ${c.shape} ${c.tokens}`)).toEqual([
      't5-forward tiny b3 s256 t32 864',
      't5-train-step tiny b3 s256 t32 864',
    ]);
    const row = await timeCase(cases[0]!, 1, true, CEILINGS);
    expect(row.maxRelErr).toBeLessThan(1e-4);
    const byDefault = await selectCases({ ops: ['t5'], sizes: ['tiny'] });
    expect(byDefault.map((c) => c.shape)).toEqual(['tiny b8 s256 t32', 'tiny b8 s256 t32']);
  }, 120_000);

  it('adds train-step rows with gradient checkpointing and with Adafactor, and the Adafactor row trains', async () => {
    const cases = await selectCases({ ops: ['t5'], sizes: ['tiny+ckpt', 'tiny+adafactor', 'tiny+ckpt+adafactor'], batch: 2 });
    expect(cases.map((c) => `${c.op} ${c.shape}`)).toEqual([
      't5-train-step tiny+ckpt b2 s256 t32', 't5-train-step tiny+adafactor b2 s256 t32', 't5-train-step tiny+ckpt+adafactor b2 s256 t32',
    ]);
    const row = await timeCase(cases[1]!, 1, false, CEILINGS);
    expect(row.ms).toBeGreaterThan(0);
  }, 120_000);
});
