// The loss plot: parsing metrics.jsonl (a torn last line is skipped), nice ticks, and an SVG with axes, ticks,
// both series as polylines whose points map the data linearly, and a legend.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lossPlotSvg, lossSeries, niceTicks, parseMetrics, writeLossPlot } from '../train/loss-plot.ts';

const dir = mkdtempSync(join(tmpdir(), 'loss-plot-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loss plot', () => {
  it('niceTicks gives 1/2/5 steps covering the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(1.13, 1.87, 4)).toEqual([1.2, 1.4, 1.6, 1.8]);
    // a flat series (one value) still gets an axis around it
    expect(niceTicks(3, 3)).toEqual([3, 3.1, 3.2, 3.3]);
  });

  it('parses metrics, skipping a torn line, and draws both series', async () => {
    const metrics = join(dir, 'metrics.jsonl');
    writeFileSync(metrics, [
      { type: 'train', step: 1, epoch: 1, loss: 4 }, { type: 'train', step: 2, epoch: 1, loss: 3 },
      { type: 'eval', step: 2, epoch: 1, loss: 3.5 }, { type: 'train', step: 3, epoch: 2, loss: 2 },
    ].map((l) => JSON.stringify(l)).join('\n') + '\n{"type":"tra');
    const lines = parseMetrics(readFileSync(metrics, 'utf8'));
    expect(lines.length).toBe(4);
    expect(lossSeries(lines).map((s) => s.points)).toEqual([[[1, 4], [2, 3], [3, 2]], [[2, 3.5]]]);
    const svg = join(dir, 'loss.svg');
    expect(await writeLossPlot(metrics, svg, 'run <1>')).toEqual({ train: 3, eval: 1 });
    const text = readFileSync(svg, 'utf8');
    expect(text.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(text).toContain('run &lt;1&gt;');
    expect(text).toContain('>training loss</text>');
    expect(text).toContain('>validation loss</text>');
    const polys = [...text.matchAll(/class="series" data-name="([^"]+)"[^>]*points="([^"]+)"/g)];
    expect(polys.map((p) => p[1])).toEqual(['training loss', 'validation loss']);
    // training points: x increases with the step, y decreases as the loss falls (SVG y grows downwards)
    const pts = polys[0]![2]!.split(' ').map((p) => p.split(',').map(Number));
    expect(pts[0]![0]).toBeLessThan(pts[1]![0]!);
    expect(pts[0]![1]).toBeLessThan(pts[2]![1]!);
    // equal step spacing maps to equal pixel spacing
    expect(Math.abs((pts[1]![0]! - pts[0]![0]!) - (pts[2]![0]! - pts[1]![0]!))).toBeLessThan(0.11);
  });

  it('an empty run still gives a valid SVG', () => {
    const s = lossPlotSvg(lossSeries([]));
    expect(s).toContain('</svg>');
    expect(s).not.toContain('NaN');
  });
});
