import { beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { memoWgsl } from '../kernels/wgsl-memo.ts';

beforeAll(async () => {
  await initGpu();
});

describe('memoWgsl', () => {
  it('builds a source once per argument set', () => {
    const calls: string[] = [];
    const gen = memoWgsl((w: number, opts: { dropout: boolean }) => {
      calls.push(`${w} ${opts.dropout}`);
      return `// w ${w} dropout ${opts.dropout}`;
    });
    expect(gen(4, { dropout: false })).toBe('// w 4 dropout false');
    expect(gen(4, { dropout: false })).toBe('// w 4 dropout false');
    expect(gen(4, { dropout: true })).toBe('// w 4 dropout true');
    expect(gen(1, { dropout: false })).toBe('// w 1 dropout false');
    expect(gen(4, { dropout: true })).toBe('// w 4 dropout true');
    expect(calls).toEqual(['4 false', '4 true', '1 false']);
  });

  it('keeps generators apart', () => {
    const a = memoWgsl((n: number) => `a${n}`);
    const b = memoWgsl((n: number) => `b${n}`);
    expect([a(1), b(1), a(1)]).toEqual(['a1', 'b1', 'a1']);
  });
});
