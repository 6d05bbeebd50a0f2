// Training and validation loss against optimizer steps as a standalone SVG (opens in any browser), written by
// hand: a frame, "nice" ticks on both axes, one polyline per series, a legend. Read from metrics.jsonl.
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../util/atomic-write.ts';

export interface MetricsLine {
  type: 'train' | 'eval';
  step: number;
  epoch: number;
  loss: number;
  [k: string]: unknown;
}

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

/** Parses metrics.jsonl; unparsable lines (a torn last line after a kill) are skipped. */
export function parseMetrics(text: string): MetricsLine[] {
  const out: MetricsLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const o = JSON.parse(line) as MetricsLine;
      if ((o.type === 'train' || o.type === 'eval') && typeof o.step === 'number') out.push(o);
    } catch {
      // skipped
    }
  }
  return out;
}

/** 1, 2 or 5 times a power of ten, so that about `count` ticks cover [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi <= lo) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4))));

export function lossPlotSvg(series: readonly Series[], opts: { title?: string; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 420;
  const m = { left: 64, right: 24, top: 40, bottom: 52 };
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(1, ...xs);
  const y0 = ys.length ? Math.min(...ys) : 0;
  const y1 = ys.length ? Math.max(...ys) : 1;
  const xt = niceTicks(x0, x1);
  const yt = niceTicks(y0, y1);
  const xlo = Math.min(x0, xt[0] ?? x0);
  const xhi = Math.max(x1, xt.at(-1) ?? x1);
  const ylo = Math.min(y0, yt[0] ?? y0);
  const yhi = Math.max(y1 === y0 ? y0 + 1 : y1, yt.at(-1) ?? y1);
  const px = (x: number) => m.left + ((x - xlo) / (xhi - xlo || 1)) * (W - m.left - m.right);
  const py = (y: number) => H - m.bottom - ((y - ylo) / (yhi - ylo || 1)) * (H - m.top - m.bottom);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title ?? 'loss')}</text>`);
  for (const t of yt) {
    const y = py(t).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of xt) {
    const x = px(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${H - m.bottom}" y2="${H - m.bottom + 5}" stroke="black"/>`);
    parts.push(`<text x="${x}" y="${H - m.bottom + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<polyline fill="none" stroke="black" points="${m.left},${m.top} ${m.left},${H - m.bottom} ${W - m.right},${H - m.bottom}"/>`);
  parts.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">step</text>`);
  parts.push(`<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">loss</text>`);
  series.forEach((s, i) => {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (p.length > 0) {
      parts.push(`<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${s.color}" stroke-width="1.5" points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
      if (p.length === 1) parts.push(`<circle cx="${px(p[0]![0]).toFixed(1)}" cy="${py(p[0]![1]).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    const ly = m.top + 8 + i * 18;
    parts.push(`<line x1="${W - m.right - 150}" x2="${W - m.right - 126}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${W - m.right - 120}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** The two series of a run: training loss per logged step, validation loss per evaluation. */
export function lossSeries(lines: readonly MetricsLine[]): Series[] {
  return [
    { name: 'training loss', color: '#1f77b4', points: lines.filter((l) => l.type === 'train').map((l) => [l.step, l.loss]) },
    { name: 'validation loss', color: '#d62728', points: lines.filter((l) => l.type === 'eval').map((l) => [l.step, l.loss]) },
  ];
}

/** Reads metrics.jsonl and writes the SVG; returns the number of train and eval points. */
export async function writeLossPlot(metricsFile: string, svgFile: string, title?: string): Promise<{ train: number; eval: number }> {
  // a run stopped before its first step has written no metrics yet: an empty plot
  const lines = parseMetrics(await readFile(metricsFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return '';
    throw e;
  }));
  const series = lossSeries(lines);
  await writeFileAtomic(svgFile, lossPlotSvg(series, { title }));
  return { train: series[0]!.points.length, eval: series[1]!.points.length };
}
