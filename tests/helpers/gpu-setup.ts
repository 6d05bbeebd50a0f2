// The GPU for a kernel test file: opened before its tests, with poisoned outputs (every new tensor starts as NaN)
// so that an element a kernel leaves unwritten fails the comparison instead of passing as a stale zero.
import { afterAll, beforeAll } from 'vitest';
import { initGpu } from '../../engine/gpu.ts';
import { setPoison } from '../../engine/tensor.ts';

export function usePoisonedGpu(): void {
  beforeAll(async () => {
    await initGpu();
    setPoison(true);
  });
  afterAll(() => setPoison(false));
}
