// The layers import only downward, and no files import each other in a circle. Every relative import of every
// source file is read (static, `export … from`, `import type`, dynamic `import()`), so the layering cannot
// decay unnoticed: an upward import or a cycle fails here with the file and the line. Type-only imports count
// for the direction but not for cycles: they are erased before anything runs (a tensor and its graph node name
// each other's types).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Bottom first: a file may import from its own layer and from those before it, never from one after it. */
export const LAYERS = ['util', 'engine', 'kernels', 'optim', 'model', 'generate', 'hf', 'tasks', 'train', 'bench', 'index.ts', 'browser.ts', 'cli', 'demo'] as const;

function layerOf(file: string): number {
  const top = file.split('/')[0]!;
  return LAYERS.indexOf(top as (typeof LAYERS)[number]);
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(ROOT, dir))) {
      const rel = dir ? `${dir}/${name}` : name;
      if (statSync(join(ROOT, rel)).isDirectory()) walk(rel);
      else if (/\.ts$/.test(name) && !name.endsWith('.d.ts')) out.push(rel);
    }
  };
  for (const layer of LAYERS) {
    if (layer.endsWith('.ts')) out.push(layer);
    else walk(layer);
  }
  return out;
}

interface ImportEdge {
  from: string;
  to: string;
  line: number;
  typeOnly: boolean;
}

// `import … from '…'`, `export … from '…'` (the statement starts at a line start), `import '…'`, `import('…')`
const IMPORT = /^(import|export)(\s+type\b)?[^;]*?\sfrom\s+(['"])(\.{1,2}\/[^'"]+)\3|^import\s+(['"])(\.{1,2}\/[^'"]+)\5|\bimport\s*\(\s*(['"])(\.{1,2}\/[^'"]+)\7/gms;

function importsOf(file: string): ImportEdge[] {
  const src = readFileSync(join(ROOT, file), 'utf8');
  const edges: ImportEdge[] = [];
  for (const m of src.matchAll(IMPORT)) {
    const spec = m[4] ?? m[6] ?? m[8]!;
    const to = normalize(join(dirname(file), spec));
    edges.push({ from: file, to, line: src.slice(0, m.index).split('\n').length, typeOnly: m[2] !== undefined });
  }
  return edges;
}

/** Strongly connected components of more than one file (Tarjan), each a list of files in a cycle. */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

const files = sourceFiles();
const edges = files.flatMap(importsOf);

describe('layering', () => {
  it('finds the source files and their imports', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(edges.length).toBeGreaterThan(100);
    for (const e of edges) {
      expect(layerOf(e.to), `${e.from}:${e.line} imports ${e.to}, which is in no layer`).toBeGreaterThanOrEqual(0);
    }
  });

  it('every import points to the same layer or one below', () => {
    const upward = edges
      .filter((e) => layerOf(e.to) > layerOf(e.from))
      .map((e) => `${e.from}:${e.line} (${LAYERS[layerOf(e.from)]}) imports ${e.to} (${LAYERS[layerOf(e.to)]})`);
    expect(upward).toEqual([]);
  });

  it('no files import each other in a circle', () => {
    const graph = new Map<string, string[]>(files.map((f) => [f, []]));
    for (const e of edges) if (!e.typeOnly) graph.get(e.from)!.push(e.to);
    expect(cycles(graph)).toEqual([]);
  });

  it('the layer graph (printed for the record)', () => {
    const counts = new Map<string, number>();
    for (const e of edges) {
      const a = LAYERS[layerOf(e.from)]!;
      const b = LAYERS[layerOf(e.to)]!;
      if (a !== b) counts.set(`${a} -> ${b}`, (counts.get(`${a} -> ${b}`) ?? 0) + 1);
    }
    const lines = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k}: ${n}`);
    console.log(`import graph (${files.length} files, ${edges.length} imports, edges between layers):\n${lines.join('\n')}`);
    expect(lines.length).toBeGreaterThan(0);
  });

  it('the checker itself flags an upward import and a cycle', () => {
    expect(layerOf('engine/tensor.ts')).toBeLessThan(layerOf('kernels/fill.ts'));
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(relative(ROOT, join(ROOT, 'x'))).toBe('x');
  });
});
