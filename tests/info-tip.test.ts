import { describe, expect, it } from 'vitest';
import { vectorWidthTip } from '../cli/info.ts';

const AVX512 = 'flags\t\t: fpu sse2 avx2 avx512f avx512dq avx512vl';
const AVX2 = 'flags\t\t: fpu sse2 avx2 fma';

describe('engine-cli info: the lavapipe vector width tip', () => {
  it('suggests 512-bit vectors on an AVX-512 CPU running 256-bit lavapipe', () => {
    expect(vectorWidthTip('llvmpipe-llvm-15-0-6-256-bits-', {}, AVX512)).toMatch(/LP_NATIVE_VECTOR_WIDTH=512/);
  });

  it('says nothing without AVX-512, when the width is set already, or on another adapter', () => {
    expect(vectorWidthTip('llvmpipe-llvm-15-0-6-256-bits-', {}, AVX2)).toBeNull();
    expect(vectorWidthTip('llvmpipe-llvm-15-0-6-256-bits-', { LP_NATIVE_VECTOR_WIDTH: '256' }, AVX512)).toBeNull();
    expect(vectorWidthTip('llvmpipe-llvm-15-0-6-512-bits-', {}, AVX512)).toBeNull();
    expect(vectorWidthTip('NVIDIA H100 80GB HBM3', {}, AVX512)).toBeNull();
  });
});
