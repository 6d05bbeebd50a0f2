// Which matmul variant runs a problem: chosen by measurement, once per (adapter, shape class, transposes).
//
// The first matmul of an unknown class runs with the heuristic choice and schedules a short tuning job: when
// the event loop next gets control, each eligible variant is timed on a representative problem of that class
// (random data, a capped size) and the fastest is kept in memory and persisted to
// `${T5_WEBGPU_CACHE_DIR:-~/.cache/t5-webgpu}/matmul-autotune.json` (in memory in a web page), keyed by
// gpu.ts's measurementKey (adapter, driver, and the CPU under lavapipe), so the next process starts with it.
// `await matmulAutotuneSettled()` waits for pending jobs (benchmarks call it before timing).
// `T5_WEBGPU_AUTOTUNE=0` turns all of this off: then the heuristic always decides (the subgroup kernel on a CPU
// adapter that offers subgroups, the shared-memory tiled kernel on a GPU). Tests run with it off and force each
// variant in turn with `forceMatmulVariant`.
//
// Autotuning must never make things worse (a stale winner once made greedy decoding 8x slower):
//  * the variants are timed in TUNE_ROUNDS interleaved rounds (each variant once per round, so a burst of load
//    hits them alike) and compared by their medians; a winner other than the heuristic's choice is kept only if
//    it beats that choice by WIN_MARGIN;
//  * a winner read from the cache file is re-verified the first time a process uses its class (the same
//    interleaved timing against the heuristic's choice); until then the heuristic runs, and a winner that is now
//    slower is dropped from memory and from the file. To stay it need only not lose (to be adopted it had to win
//    by WIN_MARGIN): with one bar for both, a winner near the margin flipped on the machine's noise, dropped with
//    a warning in one process (seen here on ties, 1.73 against 1.73 ms) and tuned again in a later one;
//  * a winner just tuned, other than the heuristic's choice, is verified the same way at its next use in the
//    process that tuned it: on lavapipe one tuning of 280x512x2048 (x·W) gave packed 15.8 ms against subgroup
//    20.9 and the next process's 17.7 against 14.2, where interleaved timings alone favour subgroup (45.9
//    against 40.3 GFLOP/s): one timing past the margin can be luck;
//  * a timing counts only if nothing else was recorded on the device while it ran (jobs run one at a time; a
//    decoding loop that records a step while a candidate runs would otherwise be timed with it: seen here as
//    1x2048x512 at 222 ms for 'subgroup' against 2.6 ms alone). A job that cannot time alone after a few
//    backed-off attempts gives up (AutotuneBusyError): its class keeps the heuristic's choice in this process.
import { gpu, measurementKey } from '../engine/gpu.ts';
import { platform } from '../engine/platform.ts';
import type { MatmulVariant } from './matmul.wgsl.ts';

export interface TuneProblem {
  M: number;
  N: number;
  K: number;
  /** matmuls in the batch (1 for a plain or batch-folded matmul) */
  batch: number;
  transA: boolean;
  transB: boolean;
}

export type ChoiceSource = 'forced' | 'autotuned' | 'heuristic' | 'autotune off';
export interface VariantChoice {
  variant: MatmulVariant;
  source: ChoiceSource;
}

/**
 * Thrown by a MeasureFn that could not time a variant alone: other work (a decoding loop, a training step) was
 * recorded on the device while each attempt ran, so any time it got would include that work. The job then
 * gives up, and the class keeps the heuristic's choice in this process (a later process tunes it again).
 */
export class AutotuneBusyError extends Error {}

/** Times one variant (ms per run, the best of a few), or rejects if it cannot run; `shape` names what it times. */
export type MeasureFn = ((variant: MatmulVariant) => Promise<number>) & { shape?: string };

/** Rounds of interleaved timings per tuning or verification. */
const TUNE_ROUNDS = 3;
/** A variant other than the heuristic's choice must be this much faster (median against median) to be kept. */
const WIN_MARGIN = 0.1;

export interface TuneRecord {
  variant: MatmulVariant;
  /** ms per run of each variant timed, on the problem in `shape` (MxKxN, a representative of the class) */
  ms: Partial<Record<MatmulVariant, number>>;
  shape: string;
  tunedAt: string;
}

interface CacheFile {
  version: 1;
  adapters: Record<string, Record<string, TuneRecord>>;
}

/** T5_WEBGPU_AUTOTUNE=0 (or false, off) disables tuning; unset, it is on, except under vitest (tests are
 * timing-free and must not write the user's cache: a test that wants tuning sets T5_WEBGPU_AUTOTUNE=1). */
function autotuneEnabled(): boolean {
  const v = platform().setting('T5_WEBGPU_AUTOTUNE');
  if (v === undefined || v === '') return !platform().setting('VITEST');
  return !(v === '0' || v === 'false' || v === 'off');
}

const CACHE_NAME = 'matmul-autotune.json';

/** Where the winners are kept: a path in Node (follows T5_WEBGPU_CACHE_DIR), memory in a page. */
export function autotuneCachePath(): string {
  return platform().cacheLocation(CACHE_NAME);
}

/** dims bucketed by powers of two (1, 2, 4, ... 65536+); batch as one or many */
function bucket(x: number): number {
  return Math.min(16, Math.ceil(Math.log2(Math.max(1, x))));
}

export function shapeClass(p: TuneProblem): string {
  const t = `${p.transA ? 'T' : 'N'}${p.transB ? 'T' : 'N'}`;
  return `m${bucket(p.M)} n${bucket(p.N)} k${bucket(p.K)} ${p.batch > 1 ? 'batched' : 'single'} ${t}`;
}

/** The fixed choice: the subgroup kernel on a CPU adapter, shared-memory tiles on a GPU (matmul.ts passes its own). */
function heuristicVariant(eligible: readonly MatmulVariant[]): MatmulVariant {
  if (gpu().info.isSoftware) {
    if (eligible.includes('subgroup')) return 'subgroup';
    if (eligible.includes('regblock')) return 'regblock';
  }
  return eligible.includes('tiled') ? 'tiled' : eligible[0]!;
}

let forced: MatmulVariant | null = null;
/** Runs every matmul with `variant` (tests, benchmarks); null restores the normal choice. */
export function forceMatmulVariant(variant: MatmulVariant | null): void {
  forced = variant;
}

// ---------------------------------------------------------------------------------------------------------
// the cache: in memory per adapter, loaded from disk on first use

const memory = new Map<string, Map<string, TuneRecord>>();
const pending = new Map<string, Promise<void>>();
/** Jobs run one after another: two at once would each time the other's launches. */
let jobQueue: Promise<void> = Promise.resolve();
/** classes whose job gave up (device busy): the heuristic's choice for the rest of this process (classKey) */
const gaveUp = new Set<string>();
/** classes whose record was tuned or verified by this process (classKey) */
const verified = new Set<string>();
/** a shape class on this adapter, as gaveUp and verified hold it */
const classKey = (key: string): string => `${measurementKey()} | ${key}`;
let loadedFrom: string | null = null;

function readCacheFile(): CacheFile {
  try {
    const parsed = JSON.parse(platform().readCache(CACHE_NAME) ?? '') as CacheFile;
    if (parsed && parsed.version === 1 && typeof parsed.adapters === 'object') return parsed;
  } catch {
    // missing or unreadable: start empty (a corrupt file is replaced on the next write)
  }
  return { version: 1, adapters: {} };
}

function table(): Map<string, TuneRecord> {
  const path = autotuneCachePath();
  const adapter = measurementKey();
  if (loadedFrom !== path) {
    memory.clear();
    loadedFrom = path;
    const file = readCacheFile();
    for (const [a, recs] of Object.entries(file.adapters)) memory.set(a, new Map(Object.entries(recs)));
  }
  let t = memory.get(adapter);
  if (!t) memory.set(adapter, (t = new Map()));
  return t;
}

async function persist(adapter: string, key: string, rec: TuneRecord): Promise<void> {
  const file = readCacheFile(); // merge with what other processes wrote meanwhile
  (file.adapters[adapter] ??= {})[key] = rec;
  await platform().writeCache(CACHE_NAME, JSON.stringify(file, null, 1) + '\n');
}

/** Forgets every choice held in memory (the file stays); the next matmul reloads it. */
export function resetMatmulAutotune(): void {
  memory.clear();
  verified.clear();
  gaveUp.clear();
  loadedFrom = null;
}

/** The name of the autotuner's timing launches (the profiler leaves them out of a step). */
export const AUTOTUNE_LAUNCH_NAME = 'matmul autotune';

/** Waits for every tuning job scheduled so far; true if there were any. */
export async function matmulAutotuneSettled(): Promise<boolean> {
  const waited = pending.size > 0;
  while (pending.size > 0) await Promise.allSettled([...pending.values()]);
  return waited;
}

/** Median ms of each variant over TUNE_ROUNDS interleaved rounds; a variant that fails once drops out. */
async function timeInterleaved(variants: readonly MatmulVariant[], measure: MeasureFn): Promise<Partial<Record<MatmulVariant, number>>> {
  const runs = new Map<MatmulVariant, number[]>(variants.map((v) => [v, []]));
  for (let round = 0; round < TUNE_ROUNDS; round++) {
    for (const v of [...runs.keys()]) {
      try {
        const t = await measure(v);
        if (Number.isFinite(t)) runs.get(v)!.push(t);
        else runs.delete(v);
      } catch (e) {
        if (e instanceof AutotuneBusyError) throw e; // no fair timing now: nothing is decided
        runs.delete(v); // a variant that cannot run here simply does not win
      }
    }
  }
  const ms: Partial<Record<MatmulVariant, number>> = {};
  for (const [v, ts] of runs) {
    if (ts.length) ms[v] = ts.sort((x, y) => x - y)[Math.floor(ts.length / 2)]!;
  }
  return ms;
}

/** The fastest of `ms`, unless it is not WIN_MARGIN faster than the heuristic's choice (which then stays). */
function pickWinner(ms: Partial<Record<MatmulVariant, number>>, heuristic: MatmulVariant): MatmulVariant | null {
  let best: MatmulVariant | null = null;
  for (const [v, t] of Object.entries(ms) as [MatmulVariant, number][]) if (best === null || t < ms[best]!) best = v;
  const base = ms[heuristic];
  if (best !== null && base !== undefined && ms[best]! > base * (1 - WIN_MARGIN)) return heuristic;
  return best;
}

/** Keeps `rec` for the problem's class; unconfirmed, it is verified again at the class's next use. */
async function record(p: TuneProblem, rec: TuneRecord, confirmed = true): Promise<void> {
  const key = shapeClass(p);
  table().set(key, rec);
  if (confirmed) verified.add(classKey(key));
  else verified.delete(classKey(key));
  try {
    await persist(measurementKey(), key, rec);
  } catch (e) {
    console.warn(`matmul autotune: could not write ${autotuneCachePath()}: ${(e as Error).message}`);
  }
}

/**
 * Times each eligible variant with `measure` (interleaved rounds, medians) and records the winner for the
 * problem's class: the fastest, if it beats `heuristic` by the margin, else `heuristic`. Exported for tests.
 */
export async function tuneClass(
  p: TuneProblem,
  eligible: readonly MatmulVariant[],
  measure: MeasureFn,
  heuristic: MatmulVariant = heuristicVariant(eligible),
  shape = measure.shape ?? `${p.batch > 1 ? `${p.batch}x` : ''}${p.M}x${p.K}x${p.N}`,
): Promise<TuneRecord | null> {
  const ms = await timeInterleaved(eligible, measure);
  const variant = pickWinner(ms, heuristic);
  if (variant === null) return null;
  const rec: TuneRecord = { variant, ms, shape, tunedAt: new Date().toISOString() };
  await record(p, rec, variant === heuristic);
  return rec;
}

/** Times a cached winner against the heuristic's choice; keeps it unless it is now slower (or fails to run). */
async function verifyRecord(p: TuneProblem, rec: TuneRecord, heuristic: MatmulVariant, measure: MeasureFn): Promise<void> {
  const ms = await timeInterleaved([rec.variant, heuristic], measure);
  const mine = ms[rec.variant];
  const base = ms[heuristic];
  const keep = mine !== undefined && (base === undefined || mine <= base);
  const variant = keep ? rec.variant : heuristic;
  if (!keep) {
    console.warn(
      `matmul autotune: the tuned winner '${rec.variant}' for ${shapeClass(p)} is now slower than '${heuristic}' ` +
        `(${ms[rec.variant]?.toFixed(2) ?? 'failed'} ms against ${ms[heuristic]?.toFixed(2)} ms); dropped`,
    );
  }
  await record(p, { variant, ms, shape: measure.shape ?? rec.shape, tunedAt: new Date().toISOString() });
}

/**
 * The variant for a problem now. With `measure`, an unknown class schedules a tuning job over `candidates`, and
 * a cached winner not yet verified by this process a verification job (the heuristic runs meanwhile); without it
 * the choice is only looked up. A forced variant must be
 * in `eligible` (the variants that can run on this adapter).
 */
export function chooseMatmulVariant(
  p: TuneProblem,
  eligible: readonly MatmulVariant[],
  measure?: MeasureFn,
  heuristic: MatmulVariant = heuristicVariant(eligible),
  candidates: readonly MatmulVariant[] = eligible,
): VariantChoice {
  if (forced) {
    if (!eligible.includes(forced)) {
      throw new Error(`matmul: variant '${forced}' was forced but cannot run on this adapter (eligible: ${eligible.join(', ')})`);
    }
    return { variant: forced, source: 'forced' };
  }
  if (!autotuneEnabled()) return { variant: heuristic, source: 'autotune off' };
  const key = shapeClass(p);
  const cls = classKey(key);
  const rec = table().get(key);
  const usable = rec && eligible.includes(rec.variant);
  if (usable && (rec.variant === heuristic || verified.has(cls) || !measure)) {
    return { variant: rec.variant, source: 'autotuned' };
  }
  if (measure && (usable || candidates.length > 1) && !pending.has(key) && !gaveUp.has(cls)) {
    // queued after the jobs before it, and started after the current synchronous op has recorded its work
    const job = jobQueue.then(async () => {
      try {
        if (usable) await verifyRecord(p, rec, heuristic, measure);
        else await tuneClass(p, candidates, measure, heuristic);
      } catch (e) {
        if (!(e instanceof AutotuneBusyError)) throw e;
        gaveUp.add(cls);
      }
    }).finally(() => pending.delete(key));
    jobQueue = job.catch(() => {});
    pending.set(key, job);
  }
  return { variant: heuristic, source: 'heuristic' };
}
