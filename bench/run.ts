// Times benchmark cases by GPU completion: warm up (pipeline compile; matmul autotuning jobs the warm-up started
// are awaited, and the case warmed again until none is left, so tuning never overlaps a timed run), then batches
// of runs sized to take at least MIN_BATCH_MS each, median over `repeat` batches. Rows carry GFLOP/s or GB/s, the
// share of the device's measured ceiling, and the max relative error against the CPU reference on the same data.
// A row's peakBytes counts the timed runs only: the pool is emptied after the warm-up, so the autotuner's scratch
// tensors (a 65 MB copy of the LM head's weight, for one) and the warm-up's leftovers are not the row's memory.
import { deviceCeilings, type Ceilings } from '../engine/ceilings.ts';
import { rt } from '../engine/runtime.ts';
import { matmulAutotuneSettled } from '../kernels/matmul-autotune.ts';
import type { BenchCase, BenchInstance, BenchRow } from './types.ts';
import { benchCases } from './cases/index.ts';

const MIN_BATCH_MS = 50;
const MAX_RUNS_PER_BATCH = 256;

export interface BenchOptions {
  /** op groups, e.g. ['matmul', 'softmax']; empty or ['all'] runs every group */
  ops?: string[];
  /** shape strings to run instead of the defaults, e.g. ['1024x1024x1024'] */
  sizes?: string[];
  repeat?: number;
  /** skip the reference check (for very large custom sizes) */
  noCheck?: boolean;
  /** batch of the whole-model t5 rows (default 8, the tutorial's) */
  batch?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The peak from here on: what the warm-up left pooled is given back (its buffers are allocated again as needed). */
function startPeak(): void {
  rt().pool.trim();
  rt().pool.resetPeak();
}

/** Warm-ups after tuning jobs: a class is tuned, then its winner verified, then nothing is left to run. */
const SETTLE_ROUNDS = 3;

export async function timeCase(c: BenchCase, repeat: number, check: boolean, ceilings: Ceilings): Promise<BenchRow> {
  const inst = c.setup();
  try {
    if (inst.runAsync) return await timeAsyncInstance(c, inst, repeat, check);
    inst.run();
    await rt().sync();
    // warm again while jobs ran: the winners' pipelines compile now, and a winner just tuned is verified at its
    // next use (matmul-autotune.ts), not in a timed run
    for (let round = 0; round < SETTLE_ROUNDS && (await matmulAutotuneSettled()); round++) {
      inst.run();
      await rt().sync();
    }
    startPeak();
    // size a batch so that per-batch overheads (submit, wait) stay small against the work
    let runs = 1;
    const times: number[] = [];
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < runs; i++) inst.run();
      await rt().sync();
      const ms = performance.now() - t0;
      if (ms >= MIN_BATCH_MS || runs >= MAX_RUNS_PER_BATCH) {
        // a single run this long (a whole t5-base step takes minutes) is a timed sample already
        if (runs === 1 && ms >= MIN_BATCH_MS) times.push(ms);
        break;
      }
      runs = Math.min(MAX_RUNS_PER_BATCH, runs * Math.max(2, Math.ceil(MIN_BATCH_MS / Math.max(ms, 0.01))));
    }
    while (times.length < repeat) {
      const t0 = performance.now();
      for (let i = 0; i < runs; i++) inst.run();
      await rt().sync();
      times.push((performance.now() - t0) / runs);
    }
    const ms = median(times);
    const gflops = c.flops ? c.flops / ms / 1e6 : null;
    const gbps = c.bytes ? c.bytes / ms / 1e6 : null;
    const ceilingFraction =
      gflops !== null ? gflops / ceilings.fmaGflops : gbps !== null ? gbps / ceilings.copyGBps : null;
    const maxRelErr = check ? await inst.check() : NaN;
    return {
      op: c.op, shape: c.shape, dtype: c.dtype, ms, gflops, gbps, ceilingFraction, maxRelErr,
      ...(c.tokens ? { tokensPerSecond: c.tokens / (ms / 1000) } : {}),
      ...(inst.peakBytes ? { peakBytes: inst.peakBytes() } : {}),
    };
  } finally {
    inst.dispose();
  }
}

/** A case that reads back as it runs (generation): one untimed warm-up run, then `repeat` timed runs. */
async function timeAsyncInstance(c: BenchCase, inst: BenchInstance, repeat: number, check: boolean): Promise<BenchRow> {
  await inst.runAsync!();
  for (let round = 0; round < SETTLE_ROUNDS && (await matmulAutotuneSettled()); round++) await inst.runAsync!();
  await rt().sync();
  startPeak();
  const times: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t0 = performance.now();
    await inst.runAsync!();
    await rt().sync();
    times.push(performance.now() - t0);
  }
  const ms = median(times);
  const maxRelErr = check ? await inst.check() : NaN;
  return {
    op: c.op, shape: c.shape, dtype: c.dtype, ms, gflops: null, gbps: null, ceilingFraction: null, maxRelErr,
    ...(c.tokens ? { tokensPerSecond: c.tokens / (ms / 1000) } : {}),
    ...(inst.peakBytes ? { peakBytes: inst.peakBytes() } : {}),
  };
}

/** The cases selected by `opts`, without running them. */
export async function selectCases(opts: BenchOptions): Promise<BenchCase[]> {
  const wanted = opts.ops?.filter((o) => o !== 'all') ?? [];
  const groups = await benchCases();
  const known = Object.keys(groups);
  const unknown = wanted.filter((o) => !known.includes(o));
  if (unknown.length) {
    throw new Error(`bench: unknown op '${unknown[0]}'; choose from ${known.join(', ')} or all`);
  }
  const out: BenchCase[] = [];
  for (const name of wanted.length ? wanted : known) {
    const make = groups[name]!;
    const cases = make(opts.sizes, { batch: opts.batch });
    out.push(...(opts.sizes ? cases.filter((c) => opts.sizes!.some((s) => c.shape.startsWith(s))) : cases));
  }
  if (opts.sizes && out.length === 0) {
    throw new Error(`bench: no case matches --sizes ${opts.sizes.join(',')} for ${wanted.join(', ') || 'any op'}`);
  }
  return out;
}

export async function* runBench(opts: BenchOptions = {}): AsyncGenerator<BenchRow> {
  const ceilings = await deviceCeilings();
  for (const c of await selectCases(opts)) {
    yield await timeCase(c, opts.repeat ?? 5, !opts.noCheck, ceilings);
  }
}
