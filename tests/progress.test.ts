// util/progress.ts: the one progress bar (downloads, file predictions, training, evaluation), on a stand-in stream.
import { describe, expect, it } from 'vitest';
import { ProgressBar, progressText } from '../util/progress.ts';

describe('ProgressBar', () => {
  const fake = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, stream: { isTTY, write: (t: string) => out.push(t) } };
  };

  it('draws only on a terminal and never when quiet', () => {
    const pipe = fake(false);
    new ProgressBar({ stream: pipe.stream, label: 'x', total: 3 }).update(1);
    expect(pipe.out).toEqual([]);
    const quiet = fake(true);
    const q = new ProgressBar({ stream: quiet.stream, quiet: true, label: 'x', total: 3 });
    q.update(1);
    q.done();
    expect(quiet.out).toEqual([]);
  });

  it('redraws in place, skips redraws closer than 100 ms, draws the last state at done()', () => {
    const tty = fake(true);
    const bar = new ProgressBar({ stream: tty.stream, label: 'rows', total: 4 });
    bar.update(1);
    bar.update(2); // skipped: too soon
    expect(tty.out).toEqual([`\r\x1b[K${progressText({ label: 'rows', done: 1, total: 4 })}`]);
    bar.done();
    expect(tty.out.slice(1)).toEqual([`\r\x1b[K${progressText({ label: 'rows', done: 2, total: 4 })}`, '\n']);
    bar.update(4); // a finished count is always drawn
    bar.clear();
    expect(tty.out.slice(3)).toEqual([`\r\x1b[K${progressText({ label: 'rows', done: 4, total: 4 })}`, '\r\x1b[K']);
  });

  it('progressText: bar and percent with a total, the count alone without', () => {
    expect(progressText({ label: 'epoch 1/2', done: 6, total: 24, extra: 'loss 1.0' }))
      .toBe(`epoch 1/2 [${'#'.repeat(6)}${'.'.repeat(18)}] 6/24 25% loss 1.0`);
    expect(progressText({ label: 'file', done: 2e6 }, (n) => `${(n / 1e6).toFixed(1)} MB`, '1.0 MB/s')).toBe('file 2.0 MB 1.0 MB/s');
  });
});
