// What a benchmark case provides; bench/run.ts times it and prints rows (`engine-cli bench`).

export interface BenchInstance {
  /** records the op once (no readback); the runner times batches of calls by GPU completion */
  run(): void;
  /** max relative error of the op's output on this instance's random data against the CPU reference */
  check(): Promise<number>;
  dispose(): void;
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
}
