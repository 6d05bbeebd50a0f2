// The package's public API: everything the CLI does, a Node program can do with these.
export { initGpu, gpu, getGpu, listAdapters, GpuError, type Gpu, type GpuOptions, type AdapterSummary } from './engine/gpu.ts';
export { Tensor, tensor, empty, zeros, ones, full, reshape, memory, setPoison, tensorFromHalf, type DType } from './engine/tensor.ts';
export { tidy } from './engine/scope.ts';
export { backward, noGrad, zeroGrad, isGradEnabled, recordOp } from './engine/autograd.ts';
export { rt } from './engine/runtime.ts';
export { deviceCeilings, measureCeilings, type Ceilings } from './engine/ceilings.ts';
export { runBench, type BenchOptions } from './bench/run.ts';
export type { BenchRow } from './bench/types.ts';
export * from './kernels/elementwise.ts';
