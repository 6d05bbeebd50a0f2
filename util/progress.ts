// The one progress bar: a status line redrawn in place on stderr, only when stderr is a terminal and not --quiet
// (a log file or a pipe gets no carriage returns). Downloads, file predictions, training and evaluation draw it.

/** Cells in the [####....] part. */
const BAR_WIDTH = 24;
/** Redraws closer together than this are skipped (a download calls update per network chunk). */
const MIN_REDRAW_MS = 100;

export interface ProgressLine {
  label: string;
  done: number;
  /** Unknown (a download without Content-Length): no bar, no percent. */
  total?: number;
  /** Printed after the counts (train's loss, lr and its own ETA). */
  extra?: string;
}

export interface ProgressBarOptions extends Partial<ProgressLine> {
  /** Draw nothing (--quiet). */
  quiet?: boolean;
  /** How done and total are printed; default the number itself. */
  count?: (n: number) => string;
  /** How the measured rate is printed ("3.2 MB/s"); with it the line also shows an ETA. Default: no rate. */
  rate?: (perSecond: number) => string;
  /** Default process.stderr; a stand-in for tests. */
  stream?: { isTTY?: boolean; write(text: string): unknown };
}

/** `label [######..........] 12/50 24% extra`: the bar and percent only when the total is known. */
export function progressText(line: ProgressLine, count: (n: number) => string = String, rateText = ''): string {
  const parts = [line.label];
  if (line.total) {
    const frac = Math.min(1, Math.max(0, line.done / line.total));
    const full = Math.round(frac * BAR_WIDTH);
    parts.push(`[${'#'.repeat(full)}${'.'.repeat(BAR_WIDTH - full)}]`, `${count(line.done)}/${count(line.total)}`, `${Math.floor(100 * frac)}%`);
  } else {
    parts.push(count(line.done));
  }
  if (rateText) parts.push(rateText);
  if (line.extra) parts.push(line.extra);
  return parts.join(' ');
}

export function formatSeconds(s: number): string {
  const t = Math.max(0, Math.round(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
}

export class ProgressBar {
  /** False when nothing is drawn: not a terminal, or quiet. */
  readonly enabled: boolean;
  private readonly stream: NonNullable<ProgressBarOptions['stream']>;
  private readonly line: ProgressLine;
  private shown = false;
  /** The latest update was skipped by the redraw interval; done() draws it. */
  private stale = false;
  private lastDraw = -Infinity;
  /** The rate counts from the first update (a resumed download's bytes already on disk do not count). */
  private first: { done: number; at: number } | undefined;

  constructor(private readonly opts: ProgressBarOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.enabled = !opts.quiet && this.stream.isTTY === true;
    this.line = { label: opts.label ?? '', done: opts.done ?? 0, total: opts.total, extra: opts.extra };
  }

  /** Set the count (and, when given, a new label, total or extra text) and redraw. */
  update(done: number, change: Partial<Omit<ProgressLine, 'done'>> = {}): void {
    if (!this.enabled) return;
    const now = performance.now();
    this.first ??= { done, at: now };
    const relabelled = change.label !== undefined && change.label !== this.line.label;
    Object.assign(this.line, change, { done });
    const finished = this.line.total !== undefined && done >= this.line.total;
    if (!relabelled && !finished && now - this.lastDraw < MIN_REDRAW_MS) {
      this.stale = true;
      return;
    }
    this.draw(now);
  }

  /** Remove the line (before a log line, or at the end when it should not stay). */
  clear(): void {
    if (this.shown) this.stream.write('\r\x1b[K');
    this.shown = false;
  }

  /** Leave the final state on screen and move to the next line. */
  done(): void {
    if (this.stale) this.draw(performance.now());
    if (this.shown) this.stream.write('\n');
    this.shown = false;
  }

  private draw(now: number): void {
    this.lastDraw = now;
    this.stale = false;
    this.shown = true;
    let rateText = '';
    if (this.opts.rate && this.first) {
      const perSecond = (this.line.done - this.first.done) / Math.max(1e-3, (now - this.first.at) / 1000);
      rateText = this.opts.rate(perSecond);
      const left = this.line.total !== undefined ? this.line.total - this.line.done : 0;
      if (left > 0 && perSecond > 0) rateText += ` ETA ${formatSeconds(left / perSecond)}`;
    }
    this.stream.write(`\r\x1b[K${progressText(this.line, this.opts.count, rateText)}`);
  }
}
