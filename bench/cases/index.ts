// Benchmark groups by the name `engine-cli bench <op>` takes. Each module exports `cases(sizes?, opts?)`.
import type { BenchCase } from '../types.ts';
import { cases as adamw } from './adamw.ts';
import { cases as attention } from './attention.ts';
import { cases as copy } from './copy.ts';
import { cases as crossEntropy } from './cross-entropy.ts';
import { cases as embedding } from './embedding.ts';
import { cases as generate } from './generate.ts';
import { cases as layernorm } from './layernorm.ts';
import { cases as matmul } from './matmul.ts';
import { cases as rmsnorm } from './rmsnorm.ts';
import { cases as softmax } from './softmax.ts';
import { cases as t5 } from './t5.ts';
import { cases as elementwise } from './elementwise.ts';

/** `opts.batch`: the batch of the whole-model t5 rows (the other groups take their shapes from `sizes`). */
export type CaseFactory = (sizes?: string[], opts?: { batch?: number }) => BenchCase[];

export async function benchCases(): Promise<Record<string, CaseFactory>> {
  return { matmul, attention, copy, elementwise, softmax, rmsnorm, layernorm, 'cross-entropy': crossEntropy, embedding, adamw, t5, generate };
}
