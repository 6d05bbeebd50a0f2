// Fills a buffer with one 32-bit pattern: zeros, ones, constants, and NaN poison in tests. This is the engine's
// memset, part of the buffers rather than an op: WebGPU's clearBuffer writes only zeros and cannot be recorded
// inside the open compute pass, and tensors must be poisoned at allocation, below every kernel.
import { grid1D } from './runtime.ts';

const WORKGROUP = 256;
const PER_THREAD = 4;

export function fillKernel(n: number): { code: string; workgroups: [number, number] } {
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
struct Params { n: u32, bits: u32 }
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = ((wid.x + wid.y * nwg.x) * ${WORKGROUP}u) * ${PER_THREAD}u + lid;
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let i = base + k * ${WORKGROUP}u;
    if (i < p.n) { out[i] = p.bits; }
  }
}`;
  return { code, workgroups: grid1D(Math.ceil(n / (WORKGROUP * PER_THREAD))) };
}
