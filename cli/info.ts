// engine-cli info: what the adapter is and what it can do, measured.
import { readFileSync } from 'node:fs';
import { deviceCeilings } from '../engine/ceilings.ts';
import { DEVICE_FLAGS, openDevice } from './device-flags.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

const USAGE = 'usage: engine-cli info [--json] [--remeasure]\n';

const INFO_FLAGS = {
  json: { type: 'boolean', help: 'one JSON object' },
  remeasure: { type: 'boolean', help: 'measure the ceilings again instead of reading the cached ones', to: 'remeasure' },
  ...DEVICE_FLAGS,
} satisfies Flags<NonNullable<Parameters<typeof deviceCeilings>[0]>>;

/**
 * lavapipe builds its shaders for 256-bit vectors (8 lanes) even on a CPU with AVX-512; LP_NATIVE_VECTOR_WIDTH=512,
 * set before the driver loads, gives 16 lanes. On this project's 2-core AMD EPYC (Zen 4) that made the t5-small
 * training step 12% faster and the forward 16% (bench t5), decoding at batch 1 a little slower; on an earlier
 * Xeon matmul went either way by shape. So it is a tip to measure, not a default.
 */
export function vectorWidthTip(
  adapterName: string, env: NodeJS.ProcessEnv = process.env, cpuinfo = readCpuinfo(),
): string | null {
  if (!/llvmpipe/i.test(adapterName) || !/256-bits/.test(adapterName) || env.LP_NATIVE_VECTOR_WIDTH) return null;
  if (!/\bavx512f\b/.test(cpuinfo)) return null;
  return 'this CPU has AVX-512: try LP_NATIVE_VECTOR_WIDTH=512 (16-lane lavapipe; measure with engine-cli bench ' +
    't5 generate, see bench/peers/README.md)';
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

export async function infoCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('info', USAGE, INFO_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
  const g = await openDevice(values);
  const ceilings = await deviceCeilings(flagOptions(INFO_FLAGS, values));
  const report = {
    adapter: g.info,
    features: [...g.features].sort(),
    limits: g.limits,
    ceilings: { copyGBps: ceilings.copyGBps, fmaGflops: ceilings.fmaGflops, measuredAt: ceilings.measuredAt },
    tip: vectorWidthTip(g.info.name),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const l = g.limits;
  process.stdout.write(
    [
      `adapter      ${g.info.name}${g.info.isSoftware ? ' (software: CPU)' : ''}`,
      `vendor       ${g.info.vendor} ${g.info.architecture}`,
      `backend      ${g.info.backend || 'default'}`,
      `driver       ${g.info.driver}`,
      `features     ${report.features.join(', ')}`,
      `limits       maxStorageBufferBindingSize ${mib(l.maxStorageBufferBindingSize)}, maxBufferSize ${mib(l.maxBufferSize)},`,
      `             maxComputeWorkgroupsPerDimension ${l.maxComputeWorkgroupsPerDimension}, ` +
        `maxComputeInvocationsPerWorkgroup ${l.maxComputeInvocationsPerWorkgroup}, workgroup storage ${l.maxComputeWorkgroupStorageSize} B`,
      `             subgroup size ${l.subgroupMinSize ?? '?'}-${l.subgroupMaxSize ?? '?'}`,
      `ceilings     copy ${ceilings.copyGBps.toFixed(2)} GB/s (read+written), multiply-add ${ceilings.fmaGflops.toFixed(1)} GFLOP/s` +
        ` (measured ${ceilings.measuredAt}; --remeasure to redo)`,
      ...(report.tip ? [`tip          ${report.tip}`] : []),
      '',
    ].join('\n'),
  );
}
