// Attention benchmarks in T5's encoder setting: B·H = 64 (batch 8 x 8 heads), shared relative position
// bias [1, H, L, L] (with gradient) and a padding mask [B, 1, 1, L]. Flops count the useful matmul work:
// forward 4·BH·L²·D (q·kᵀ and p·v); backward 2.5x that (dV, dP, dQ, dK plus recomputing q·kᵀ). Our
// backward kernels do 3.5x (q·kᵀ and dO·vᵀ are recomputed in both the row-owner and key-owner kernels),
// so the GFLOP/s of the fwd+bwd rows understate the arithmetic actually done.
// The 'train' row is T5's training setting: dropout 0.1 on the probabilities inside the kernels and heads
// interleaved ([B, L, H, D], the projections' output as it is).
import type { BenchCase, BenchInstance } from '../types.ts';
import { backward, zeroGrad } from '../../engine/autograd.ts';
import { tensor, type Tensor } from '../../engine/tensor.ts';
import {
  attention,
  attentionBackwardRef,
  attentionRef,
  type AttentionOptions,
  type AttentionRefInput,
} from '../../kernels/attention.ts';

const F32_MIN = -3.4028234663852886e38;

function rand(n: number, seed: number, amp: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296 * 2 - 1) * amp;
  }
  return out;
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  let m = 1e-30;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i]! - want[i]!));
    m = Math.max(m, Math.abs(want[i]!));
  }
  return e / m;
}

/** [B, H, L, D] data as [B, L, H, D], or back. */
function swapHeads(x: Float32Array, B: number, H: number, L: number, D: number, back = false): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < L; i++) {
        const bhld = ((b * H + h) * L + i) * D;
        const blhd = ((b * L + i) * H + h) * D;
        if (back) out.set(x.subarray(blhd, blhd + D), bhld);
        else out.set(x.subarray(bhld, bhld + D), blhd);
      }
  return out;
}

function attentionCase(B: number, H: number, L: number, D: number, withBackward: boolean, train = false): BenchCase {
  const fwdFlops = 4 * B * H * L * L * D;
  return {
    op: 'attention',
    shape: `${B * H}x${L}x${D} ${withBackward ? 'fwd+bwd' : 'fwd'}${train ? ' train' : ''}`,
    dtype: 'f32',
    flops: withBackward ? fwdFlops * 3.5 : fwdFlops,
    setup(): BenchInstance {
      const n = B * H * L * D;
      const qd = rand(n, 1, 0.5);
      const kd = rand(n, 2, 0.5);
      const vd = rand(n, 3, 1);
      const bd = rand(H * L * L, 4, 2);
      const gd = rand(n, 5, 1);
      // padding: batch element b keeps L - 8b keys, as HF's (1 - attention_mask) * finfo.min
      const md = new Float32Array(B * L);
      for (let b = 0; b < B; b++) for (let j = L - 8 * b; j < L; j++) md[b * L + j] = F32_MIN;
      const grad = { requiresGrad: withBackward };
      const shape = train ? [B, L, H, D] : [B, H, L, D];
      const gpuData = (x: Float32Array) => (train ? swapHeads(x, B, H, L, D) : x);
      const fromGpu = (x: ArrayLike<number>) => (train ? swapHeads(Float32Array.from(x), B, H, L, D, true) : x);
      const q = tensor(gpuData(qd), shape, grad);
      const k = tensor(gpuData(kd), shape, grad);
      const v = tensor(gpuData(vd), shape, grad);
      const bias = tensor(bd, [1, H, L, L], grad);
      const mask = tensor(md, [B, 1, 1, L]);
      const g = tensor(gpuData(gd), shape);
      const dropout = train ? { rate: 0.1, seed: 42, offset: 0 } : undefined;
      const opts: AttentionOptions = { bias, mask, dropout, layout: train ? 'BLHD' : 'BHLD' };
      const params: Tensor[] = [q, k, v, bias];
      const ref: AttentionRefInput = {
        q: qd, k: kd, v: vd, dims: { B, H, Lq: L, Lk: L, D },
        bias: { data: bd, shape: [1, H, L, L] }, mask: { data: md, shape: [B, 1, 1, L] }, dropout,
      };
      const step = (): Tensor => {
        const out = attention(q, k, v, opts);
        if (withBackward) backward(out, { gradient: g });
        return out;
      };
      return {
        run() {
          step().dispose();
          zeroGrad(params);
        },
        async check() {
          const out = step();
          let err: number;
          if (!withBackward) err = maxRelErr(fromGpu(await out.toArray()), attentionRef(ref));
          else {
            const want = attentionBackwardRef(ref, gd);
            err = Math.max(
              maxRelErr(fromGpu(await q.grad!.toArray()), want.dq),
              maxRelErr(fromGpu(await k.grad!.toArray()), want.dk),
              maxRelErr(fromGpu(await v.grad!.toArray()), want.dv),
              maxRelErr(await bias.grad!.toArray(), want.dbias!),
            );
          }
          out.dispose();
          zeroGrad(params);
          return err;
        },
        dispose() {
          for (const t of [q, k, v, bias, mask, g]) t.dispose();
        },
      };
    },
  };
}

export function cases(): BenchCase[] {
  return [
    attentionCase(8, 8, 256, 64, false),
    attentionCase(8, 8, 256, 64, true),
    attentionCase(8, 8, 256, 64, true, true),
    attentionCase(8, 8, 512, 64, false),
    attentionCase(8, 8, 512, 64, true),
  ];
}
