// What RMSNorm and LayerNorm share before their kernels: argument checks naming the op, and the row geometry
// over x's last axis (row length D, row count, row layout, vector width).
import type { Tensor } from '../engine/tensor.ts';
import { defaultRowImpl, vecWidth, type RowImpl } from './row-kernel.ts';

export interface NormOptions {
  /** row-kernel layout; default by adapter and row width (tests and benchmarks force one) */
  impl?: RowImpl;
}

interface NormRows {
  /** row length: x's last axis */
  D: number;
  rows: number;
  impl: RowImpl;
  w: 1 | 4;
}

/** Checks x, the per-column parameters ([D], D = x's last axis) and eps; returns the row geometry. */
export function normRows(op: string, x: Tensor, params: Array<[Tensor, string]>, eps: number, opts: NormOptions): NormRows {
  return geometry(x, checkNormArgs(op, x, params, eps), opts);
}

/** A backward's checks (x and weight as in the forward, dy shaped as x); returns the row geometry. */
export function normGradRows(op: string, dy: Tensor, x: Tensor, weight: Tensor, opts: NormOptions): NormRows {
  const D = checkNormArgs(op, x, [[weight, 'weight']], 0);
  if (dy.shape.join() !== x.shape.join()) {
    throw new RangeError(`${op}: dy [${dy.shape.join(', ')}] and x [${x.shape.join(', ')}] differ`);
  }
  return geometry(x, D, opts);
}

function checkNormArgs(op: string, x: Tensor, params: Array<[Tensor, string]>, eps: number): number {
  for (const [t, what] of [[x, 'x'] as [Tensor, string], ...params]) {
    if (t.disposed) throw new Error(`${op}: ${what} is a disposed tensor [${t.shape.join(', ')}]`);
    if (t.dtype !== 'f32') throw new TypeError(`${op}: ${what} must be f32, got ${t.dtype}[${t.shape.join(', ')}]`);
  }
  if (x.rank === 0) throw new RangeError(`${op}: x must have at least one axis, got a scalar`);
  const D = x.shape[x.rank - 1]!;
  for (const [t, what] of params) {
    if (t.rank !== 1 || t.shape[0] !== D) {
      throw new RangeError(`${op}: ${what} [${t.shape.join(', ')}] must be [${D}] to match x [${x.shape.join(', ')}]`);
    }
  }
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`${op}: eps must be a finite number >= 0, got ${eps}`);
  return D;
}

function geometry(x: Tensor, D: number, opts: NormOptions): NormRows {
  return { D, rows: D === 0 ? 0 : x.size / D, impl: opts.impl ?? defaultRowImpl(D), w: vecWidth(D) };
}
