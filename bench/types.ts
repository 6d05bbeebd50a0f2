// What a benchmark case provides; bench/run.ts times it and prints rows (`engine-cli bench`).

export interface BenchInstance {
  /** records the op once (no readback); the runner times batches of calls by GPU completion */
  run(): void;
  /** max relative error of the op's output on this instance's random data against the CPU reference */
  check(): Promise<number>;
  dispose(): void;
  /**
   * For cases that read results back between GPU steps (generation: each token depends on the previous one), so
   * that run() + sync cannot time them: one complete run, awaited. When present the runner times this instead
   * of run(); bench/cases/generate.ts's timeAsyncCase does so.
   */
  runAsync?(): Promise<void>;
  /** GPU memory high-water mark (engine memory().peakBytes: live + pooled buffers), for cases whose footprint
   * matters (whole-model rows); the runner empties the pool and resets the mark after the warm-up, so it covers
   * the timed runs, and copies it into BenchRow.peakBytes */
  peakBytes?(): number;
}

export interface BenchCase {
  /** row group as named on the command line: matmul, attention, softmax, rmsnorm, ... */
  op: string;
  /** e.g. '1024x1024x1024' or '64x256x64' */
  shape: string;
  dtype: string;
  /** floating-point operations of one run (for GFLOP/s) */
  flops?: number;
  /** bytes read + written by one run (for GB/s) */
  bytes?: number;
  /** tokens one run processes (model rows: batch x (source + target)), for BenchRow.tokensPerSecond */
  tokens?: number;
  setup(): BenchInstance;
}

export interface BenchRow {
  op: string;
  shape: string;
  dtype: string;
  ms: number;
  gflops: number | null;
  gbps: number | null;
  /** share of the device's measured ceiling (matmul ceiling for flops, copy bandwidth for bytes) */
  ceilingFraction: number | null;
  maxRelErr: number;
  variant?: string;
  /** tokens / (ms / 1000) for cases that give `tokens` */
  tokensPerSecond?: number | null;
  /** BenchInstance.peakBytes() after the timed runs, for cases that report it */
  peakBytes?: number | null;
}
