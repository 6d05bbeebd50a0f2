// Reverse-mode autograd. Each op that has a differentiable input records a GradNode on its output: the
// edges to its inputs, the tensors its backward rule needs (retained, so the caller may dispose its own
// handles), and the rule itself. `backward` walks the nodes in reverse topological order and frees each
// node's saved tensors as soon as its rule has run. Nodes are reference counted by the tensors and nodes
// that point at them, so a graph that is never differentiated is freed with its tensors.
// The engine holds no kernels: the ones autograd runs itself (the seed, sums of gradients, copies) are registered
// by kernels/record-op.ts, which every differentiable op imports `recordOp` from. Tensors are only types here, so
// tensor.ts (whose reshape records a node) and this file do not import each other's values.
import type { Storage, Tensor } from './tensor.ts';
import { tidy } from './scope.ts';

/** The kernels autograd itself runs: the seed of a scalar loss, sums of gradients that meet at a tensor, copies. */
export interface GradientKernels {
  ones(shape: readonly number[]): Tensor;
  add(a: Tensor, b: Tensor): Tensor;
  copy(a: Tensor): Tensor;
}

let kernels: GradientKernels | null = null;

export function registerGradientKernels(k: GradientKernels): void {
  kernels = k;
}

function gradientKernels(): GradientKernels {
  if (!kernels) throw new Error('autograd: no gradient kernels registered; import recordOp from kernels/record-op.ts, not from the engine');
  return kernels;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording a graph (evaluation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const was = gradEnabled;
  gradEnabled = false;
  try {
    const r = fn();
    if (r instanceof Promise) {
      return r.finally(() => (gradEnabled = was)) as T;
    }
    gradEnabled = was;
    return r;
  } catch (e) {
    gradEnabled = was;
    throw e;
  }
}

export type BackwardRule = (gradOut: Tensor, saved: Tensor[]) => Array<Tensor | null>;

interface Edge {
  node: GradNode | null;
  /** a leaf that requires grad: its `.grad` receives the gradient */
  leaf: Tensor | null;
}

export class GradNode {
  refs = 1;
  freed = false;
  constructor(
    readonly op: string,
    readonly edges: Edge[],
    public saved: Tensor[],
    readonly rule: BackwardRule,
    readonly outShape: number[],
  ) {}

  freeSaved(): void {
    for (const t of this.saved) t.dispose();
    this.saved = [];
    this.freed = true;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const e of this.edges) e.node?.release();
  }
}

/** Attaches a backward rule to `out` when some input needs a gradient; returns `out`. */
export function recordOp(op: string, inputs: Tensor[], out: Tensor, saved: Tensor[], rule: BackwardRule): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  const edges: Edge[] = inputs.map((t) => {
    if (!t.requiresGrad) return { node: null, leaf: null };
    if (t.node) {
      t.node.refs++;
      return { node: t.node, leaf: null };
    }
    return { node: null, leaf: t };
  });
  // saved handles share storage with the originals and belong to the node, not to any tidy scope
  const keep = saved.map((t) => t.share().keep());
  out.node = new GradNode(op, edges, keep, rule, out.shape);
  out.requiresGrad = true;
  return out;
}

function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>();
  const stack: Array<[GradNode, number]> = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.edges.length) {
      top[1]++;
      const next = node.edges[i]!.node;
      if (next && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }
  return order.reverse(); // root first
}

function accumulate(into: Tensor | null, g: Tensor): Tensor {
  if (!into) return g;
  const sum = gradientKernels().add(into, g);
  into.dispose();
  g.dispose();
  return sum;
}

export interface BackwardOptions {
  /** d(output)/d(...) seed; default ones (a scalar loss) */
  gradient?: Tensor;
  /** keep saved tensors so backward can run again over the same graph */
  retainGraph?: boolean;
}

/** Accumulates d output / d leaf into every leaf's `.grad` (call `zeroGrad` between steps). */
export function backward(output: Tensor, opts: BackwardOptions = {}): void {
  const root = output.node;
  if (!root) {
    throw new Error(`backward: ${output.describe()} does not depend on any tensor with requiresGrad`);
  }
  if (opts.gradient && opts.gradient.shape.join() !== output.shape.join()) {
    throw new RangeError(`backward: gradient [${opts.gradient.shape}] does not match output [${output.shape}]`);
  }
  noGrad(() => {
    const order = topoOrder(root);
    const grads = new Map<GradNode, Tensor>();
    grads.set(root, opts.gradient ? opts.gradient.reshape(output.shape).keep() : gradientKernels().ones(output.shape).keep());
    for (const node of order) {
      const g = grads.get(node);
      grads.delete(node);
      if (!g) continue;
      if (node.freed) {
        g.dispose();
        throw new Error(`backward: the graph through '${node.op}' was already freed; pass retainGraph: true to run backward twice`);
      }
      const inGrads = node.rule(g, node.saved);
      // A rule may hand back its incoming gradient (given a handle of its own: `g` is disposed below), or
      // one buffer for two inputs (a + b): the second gets a copy, since gradients are later changed in
      // place (clipping) and two parameters' .grad must never share a buffer.
      const handed = new Set<Tensor>([g]);
      const buffers = new Set<Storage>();
      node.edges.forEach((e, i) => {
        let gi = inGrads[i];
        if (!gi) return;
        if (e.node || (e.leaf && !e.leaf.disposed)) {
          if (buffers.has(gi.storage)) gi = gradientKernels().copy(gi);
          else if (handed.has(gi)) gi = gi.share();
          buffers.add(gi.storage);
        } else if (handed.has(gi)) return;
        handed.add(gi);
        gi.keep();
        const target = e.node ? e.node.outShape : e.leaf?.shape;
        if (target && gi.shape.join() !== target.join()) {
          throw new Error(`backward of '${node.op}': gradient [${gi.shape}] for input ${i} does not match its shape [${target}]`);
        }
        if (e.node) grads.set(e.node, accumulate(grads.get(e.node) ?? null, gi).keep());
        else if (e.leaf && !e.leaf.disposed) e.leaf.grad = accumulate(e.leaf.grad, gi).keep();
        else gi.dispose();
      });
      for (const t of inGrads) if (t && !handed.has(t)) t.dispose();
      g.dispose();
      if (!opts.retainGraph) node.freeSaved();
    }
    for (const g of grads.values()) g.dispose();
  });
}

/** Runs `fn` recording a graph even inside `noGrad` (a checkpoint's recomputation runs inside backward). */
export function enableGrad<T>(fn: () => T): T {
  const was = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = was;
  }
}

/**
 * Activation checkpointing (torch.utils.checkpoint, Hugging Face's gradient_checkpointing): `fn` runs without
 * recording, so none of its intermediate tensors are kept; the backward runs it again, with a graph, on the
 * same inputs and back-propagates through that. `fn` must compute the same values both times (the model's
 * dropout is counter-based, so it replays its masks). Parameters `fn` reads are leaves: the inner backward
 * adds their gradients straight into `.grad`; the gradients of `inputs` flow on through the outer graph.
 */
export function checkpoint(op: string, inputs: Tensor[], fn: (inputs: Tensor[]) => Tensor): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return fn(inputs);
  const needsGrad = inputs.map((t) => t.requiresGrad);
  // tidy: fn's intermediates are freed as soon as it returns, not at the end of the whole forward
  const out = noGrad(() => tidy(() => fn(inputs)));
  return recordOp(op, inputs, out, inputs, (g, saved) =>
    tidy(() => {
      const detached = saved.map((t, i) => {
        const d = t.share();
        d.requiresGrad = needsGrad[i]!;
        return d;
      });
      backward(enableGrad(() => fn(detached)), { gradient: g });
      return detached.map((d) => {
        const grad = d.grad;
        d.grad = null;
        return grad;
      });
    }),
  );
}

/** Drops the accumulated gradients of the given tensors. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
