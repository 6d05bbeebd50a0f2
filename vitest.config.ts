import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // lavapipe runs kernels on the CPU's 2 cores: more than two GPU test files at once only thrash.
    pool: 'forks',
    maxWorkers: 2,
    // tests choose kernel variants explicitly; no timing-based autotuning inside the suite
    env: { T5_WEBGPU_AUTOTUNE: '0' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
