// The bandwidth reference rows: the WGSL copy kernel that sets the ceiling, and copyBufferToBuffer.
import { COPY_WORKGROUP, copyCode } from '../../engine/ceilings.ts';
import { rt } from '../../engine/runtime.ts';
import { empty, tensor } from '../../engine/tensor.ts';
import type { BenchCase } from '../types.ts';

const VEC4_PER_THREAD = 16;

function parseElements(shape: string): number {
  return shape.split('x').map(Number).reduce((a, b) => a * b, 1);
}

export function cases(sizes: string[] = ['16777216']): BenchCase[] {
  return sizes.flatMap((shape) => {
    const n = parseElements(shape);
    const bytes = 2 * 4 * n;
    const make = (kind: 'wgsl' | 'copyBufferToBuffer'): BenchCase => ({
      op: 'copy',
      shape: `${shape} (${kind})`,
      dtype: 'f32',
      bytes,
      setup() {
        const host = Float32Array.from({ length: n }, (_, i) => (i % 1000) * 0.5);
        const src = tensor(host, [n]);
        const dst = empty([n]);
        const vecs = Math.ceil(n / 4);
        return {
          run() {
            if (kind === 'copyBufferToBuffer') rt().copy(src.buffer, 0, dst.buffer, 0, n * 4);
            else {
              rt().dispatch({
                name: 'copy',
                code: copyCode(VEC4_PER_THREAD),
                bindings: [src.read(), dst.write()],
                params: [['u32', vecs]],
                workgroups: [Math.ceil(vecs / (COPY_WORKGROUP * VEC4_PER_THREAD))],
              });
            }
          },
          async check() {
            const got = await dst.toArray();
            let err = 0;
            for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(got[i]! - host[i]!) / Math.max(1e-30, Math.abs(host[i]!)) || 0);
            return err;
          },
          dispose() {
            src.dispose();
            dst.dispose();
          },
        };
      },
    });
    return [make('wgsl'), make('copyBufferToBuffer')];
  });
}
