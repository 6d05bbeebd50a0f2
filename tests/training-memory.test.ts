// A training loop must not grow memory: 1,000 AdamW steps of a small MLP (matmul with fused bias and relu,
// cross-entropy, backward, clipping, optimizer) end with exactly the live bytes and buffer count they had
// after the first steps, and create no new GPU buffers once the pool is warm.
import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { AdamW } from '../optim/adamw.ts';
import { rt } from '../engine/runtime.ts';
import { tidy } from '../engine/scope.ts';
import { memory, tensor } from '../engine/tensor.ts';
import { matmul } from '../kernels/matmul.ts';
import { crossEntropy } from '../kernels/cross-entropy.ts';
import { clipGradNorm } from '../kernels/grad-norm.ts';

const STEPS = 1000;
const WARMUP = 20;

beforeAll(async () => {
  await initGpu();
});

function randn(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * scale);
}

describe('memory across training steps', () => {
  it(`is flat over ${STEPS} steps`, async () => {
    const [batch, din, hidden, classes] = [8, 13, 32, 7];
    const w1 = tensor(randn(din * hidden, 0.3), [din, hidden], { requiresGrad: true }).keep();
    const b1 = tensor(randn(hidden, 0.1), [hidden], { requiresGrad: true }).keep();
    const w2 = tensor(randn(hidden * classes, 0.3), [hidden, classes], { requiresGrad: true }).keep();
    const x = tensor(randn(batch * din, 1), [batch, din]).keep();
    const labels = Int32Array.from({ length: batch }, (_, i) => i % classes);
    const opt = new AdamW([w1, b1, w2], { lr: 1e-2 });
    let first = NaN;
    let last = NaN;
    let baseline: ReturnType<typeof memory> | null = null;
    for (let step = 0; step < STEPS; step++) {
      const loss = tidy(() => crossEntropy(matmul(matmul(x, w1, { bias: b1, activation: 'relu' }), w2), labels));
      backward(loss);
      noGrad(() => clipGradNorm([w1, b1, w2], 1.0).dispose());
      opt.step();
      opt.zeroGrad();
      if (step === 0) first = await loss.item();
      if (step === STEPS - 1) last = await loss.item();
      loss.dispose();
      if (step === WARMUP) {
        await rt().sync();
        baseline = memory();
      }
    }
    await rt().sync();
    const end = memory();
    expect(end.bytesLive).toBe(baseline!.bytesLive);
    expect(end.buffersLive).toBe(baseline!.buffersLive);
    expect(end.buffersCreated).toBe(baseline!.buffersCreated);
    expect(last).toBeLessThan(first); // it did train
    opt.dispose();
    for (const t of [w1, b1, w2, x]) t.dispose();
  });
});
