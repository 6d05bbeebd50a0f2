// OUT/metrics.jsonl: one JSON object a line ({type: 'train' | 'eval', step, ...}), appended as the run goes; the
// loss plot and `engine-cli report` read it.
import { existsSync } from 'node:fs';
import { appendFile, readFile, truncate } from 'node:fs/promises';

export async function appendMetric(file: string, line: Record<string, unknown>): Promise<void> {
  await appendFile(file, `${JSON.stringify(line)}\n`);
}

/** Drops metrics lines after `step` (written after the checkpoint a resumed run starts from). */
export async function trimMetrics(file: string, step: number): Promise<void> {
  if (!existsSync(file)) return;
  const text = await readFile(file, 'utf8');
  const keep: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      if ((JSON.parse(line) as { step: number }).step <= step) keep.push(line);
    } catch {
      // a torn last line
    }
  }
  await truncate(file, 0);
  if (keep.length) await appendFile(file, `${keep.join('\n')}\n`);
}
