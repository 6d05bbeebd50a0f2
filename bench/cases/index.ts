// Benchmark groups by the name `engine-cli bench <op>` takes. Each module exports `cases(sizes?)`.
import type { BenchCase } from '../types.ts';
import { cases as adamw } from './adamw.ts';
import { cases as copy } from './copy.ts';
import { cases as elementwise } from './elementwise.ts';

export type CaseFactory = (sizes?: string[]) => BenchCase[];

export async function benchCases(): Promise<Record<string, CaseFactory>> {
  return { copy, elementwise, adamw };
}
