// Where kernels take `recordOp` from. Importing it registers the two kernels the engine's autograd runs itself
// (the seed of a scalar loss, the sum of gradients that meet at one tensor, and a copy when a rule hands one
// buffer to two inputs): the
// engine may not import kernels, and every differentiable op passes through here, so backward always has them.
import { registerGradientKernels } from '../engine/autograd.ts';
import { ones } from '../engine/tensor.ts';
import { ewDispatch } from './elementwise-dispatch.ts';

registerGradientKernels({
  ones,
  add: (a, b) => ewDispatch('gradient accumulate', [{ t: a, name: 'a' }, { t: b, name: 'b' }], 'a + b'),
  copy: (a) => ewDispatch('gradient copy', [{ t: a, name: 'x' }], 'x'),
});

export { recordOp, type BackwardRule } from '../engine/autograd.ts';
