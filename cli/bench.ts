// engine-cli bench: kernel timings against the device's measured ceilings.
import { selectCases, timeCase, type BenchOptions } from '../bench/run.ts';
import { deviceCeilings } from '../engine/ceilings.ts';
import type { BenchRow } from '../bench/types.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

function fmt(row: BenchRow): string {
  const rate = row.gflops !== null ? `${row.gflops.toFixed(2)} GFLOP/s`
    : row.gbps !== null ? `${row.gbps.toFixed(2)} GB/s`
    : row.tokensPerSecond != null ? `${row.tokensPerSecond.toFixed(1)} tok/s` : '';
  const tokens = row.tokensPerSecond != null && row.gflops !== null ? `  ${row.tokensPerSecond.toFixed(1)} tok/s` : '';
  const peak = `${tokens}${row.peakBytes != null ? `  peak ${(row.peakBytes / 2 ** 20).toFixed(0)} MiB` : ''}`;
  const frac = row.ceilingFraction !== null ? `${(100 * row.ceilingFraction).toFixed(1)}%` : '';
  const err = Number.isNaN(row.maxRelErr) ? 'unchecked' : row.maxRelErr.toExponential(1);
  return `${row.op.padEnd(16)} ${row.shape.padEnd(30)} ${row.dtype.padEnd(5)} ${row.ms.toFixed(3).padStart(10)} ms ` +
    `${rate.padStart(16)} ${frac.padStart(7)} ${err.padStart(9)}${peak}`;
}

const USAGE = 'usage: engine-cli bench [OP ...|all] [options]\n';

const BENCH_FLAGS = {
  sizes: { type: 'list', arg: 'A,B', help: 'shapes to run instead of the defaults, e.g. 1024x1024x1024', to: 'sizes' },
  repeat: { type: 'int', min: 1, default: 5, help: 'timed batches; the median is printed', to: 'repeat' },
  batch: { type: 'int', min: 1, arg: 'N', help: 'batch of the t5 rows (default 8, the tutorial\'s)', to: 'batch' },
  'no-check': { type: 'boolean', help: 'skip the check against the CPU reference (for very large sizes)', to: 'noCheck' },
  json: { type: 'boolean', help: 'one JSON object per line' },
  ...DEVICE_FLAGS,
} satisfies Flags<BenchOptions>;

export async function benchCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('bench', USAGE, BENCH_FLAGS, argv, { positionals: true });
  if (!parsed) return;
  const { values, positionals } = parsed;
  const opts = { ...flagOptions<BenchOptions>(BENCH_FLAGS, values), ops: positionals };
  const repeat = values.repeat;
  const g = await openDevice(values);
  const cases = await selectCases(opts);
  const ceilings = await deviceCeilings();
  if (!values.json) {
    process.stdout.write(
      `# ${g.info.name} (${g.info.driver}); ceilings: copy ${ceilings.copyGBps.toFixed(2)} GB/s, ` +
        `multiply-add ${ceilings.fmaGflops.toFixed(1)} GFLOP/s; median of ${repeat}\n` +
        `${'op'.padEnd(16)} ${'shape'.padEnd(30)} ${'dtype'.padEnd(5)} ${'time'.padStart(13)} ${'rate'.padStart(16)} ${'ceiling'.padStart(7)} ${'maxRelErr'.padStart(9)}\n`,
    );
  }
  for (const c of cases) {
    const row = await timeCase(c, repeat, !opts.noCheck, ceilings);
    process.stdout.write(values.json ? `${JSON.stringify(row)}\n` : `${fmt(row)}\n`);
  }
}
