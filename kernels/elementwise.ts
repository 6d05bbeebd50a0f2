// Elementwise ops. (First cut: same-shape add, which autograd needs to accumulate gradients.)
import { recordOp } from '../engine/autograd.ts';
import { grid1D, rt } from '../engine/runtime.ts';
import { empty, type Tensor } from '../engine/tensor.ts';

const WORKGROUP = 256;

function binaryCode(expr: string): string {
  return /* wgsl */ `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct Params { n: u32 }
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  if (i >= p.n) { return; }
  let x = a[i];
  let y = b[i];
  out[i] = ${expr};
}`;
}

export function add(a: Tensor, b: Tensor): Tensor {
  if (a.shape.join() !== b.shape.join()) {
    throw new RangeError(`add: shapes [${a.shape}] and [${b.shape}] differ`);
  }
  const out = empty(a.shape);
  rt().dispatch({
    name: 'add',
    code: binaryCode('x + y'),
    bindings: [a.read(), b.read(), out.write()],
    params: [['u32', a.size]],
    workgroups: grid1D(Math.ceil(a.size / WORKGROUP)),
  });
  return recordOp('add', [a, b], out, [], (g) => [g, g]);
}
