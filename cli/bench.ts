// engine-cli bench: kernel timings against the device's measured ceilings.
import { parseArgs } from 'node:util';
import { selectCases, timeCase } from '../bench/run.ts';
import { deviceCeilings } from '../engine/ceilings.ts';
import type { BenchRow } from '../bench/types.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';

function fmt(row: BenchRow): string {
  const rate = row.gflops !== null ? `${row.gflops.toFixed(2)} GFLOP/s`
    : row.gbps !== null ? `${row.gbps.toFixed(2)} GB/s`
    : row.tokensPerSecond != null ? `${row.tokensPerSecond.toFixed(1)} tok/s` : '';
  const peak = row.peakBytes != null ? `  peak ${(row.peakBytes / 2 ** 20).toFixed(0)} MiB` : '';
  const frac = row.ceilingFraction !== null ? `${(100 * row.ceilingFraction).toFixed(1)}%` : '';
  const err = Number.isNaN(row.maxRelErr) ? 'unchecked' : row.maxRelErr.toExponential(1);
  return `${row.op.padEnd(16)} ${row.shape.padEnd(30)} ${row.dtype.padEnd(5)} ${row.ms.toFixed(3).padStart(10)} ms ` +
    `${rate.padStart(16)} ${frac.padStart(7)} ${err.padStart(9)}${peak}`;
}

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...DEVICE_FLAGS,
      json: { type: 'boolean' },
      sizes: { type: 'string' },
      repeat: { type: 'string', default: '5' },
      'no-check': { type: 'boolean' },
    },
  });
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a positive integer, got '${values.repeat}'`);
  const sizes = values.sizes?.split(',').map((s) => s.trim()).filter(Boolean);
  const g = await openDevice(values);
  const cases = await selectCases({ ops: positionals, sizes });
  const ceilings = await deviceCeilings();
  if (!values.json) {
    process.stdout.write(
      `# ${g.info.name} (${g.info.driver}); ceilings: copy ${ceilings.copyGBps.toFixed(2)} GB/s, ` +
        `multiply-add ${ceilings.fmaGflops.toFixed(1)} GFLOP/s; median of ${repeat}\n` +
        `${'op'.padEnd(16)} ${'shape'.padEnd(30)} ${'dtype'.padEnd(5)} ${'time'.padStart(13)} ${'rate'.padStart(16)} ${'ceiling'.padStart(7)} ${'maxRelErr'.padStart(9)}\n`,
    );
  }
  for (const c of cases) {
    const row = await timeCase(c, repeat, !values['no-check'], ceilings);
    process.stdout.write(values.json ? `${JSON.stringify(row)}\n` : `${fmt(row)}\n`);
  }
}
