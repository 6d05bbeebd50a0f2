// engine-cli report OUT: redraws OUT/loss.svg from OUT/metrics.jsonl and prints the run's evaluations.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMetrics, writeLossPlot } from '../train/loss-plot.ts';
import { describeAnswerScores } from '../train/evaluate.ts';
import { parseFlags, type Flags } from './flags.ts';

const USAGE = 'usage: engine-cli report OUT [--json]\n';

const REPORT_FLAGS = {
  json: { type: 'boolean', help: 'one JSON object: plot, trainSteps, lastTrainLoss, evals' },
} satisfies Flags;

export async function reportCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('report', USAGE, REPORT_FLAGS, argv, { positionals: true });
  if (!parsed) return;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new Error('report: give one training output folder (engine-cli report OUT)');
  const out = positionals[0]!;
  const metrics = join(out, 'metrics.jsonl');
  if (!existsSync(metrics)) throw new Error(`report: ${metrics} not found (is ${out} a training output folder?)`);
  const plot = join(out, 'loss.svg');
  await writeLossPlot(metrics, plot, `t5-webgpu: ${out}`);
  const lines = parseMetrics(await readFile(metrics, 'utf8'));
  const trainLines = lines.filter((l) => l.type === 'train');
  const evals = lines.filter((l) => l.type === 'eval');
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ plot, trainSteps: trainLines.length, lastTrainLoss: trainLines.at(-1)?.loss ?? null, evals })}\n`);
    return;
  }
  const rows = evals.map((e) => `  step ${String(e.step).padStart(6)}  epoch ${e.epoch}  val_loss ${Number(e.loss).toFixed(4)}  ` +
    describeAnswerScores({ exactMatch: Number(e.exactMatch), f1: Number(e.f1), generated: Number(e.generated) }));
  process.stdout.write(
    `${trainLines.length} training steps logged, last loss ${trainLines.at(-1)?.loss?.toFixed?.(4) ?? '-'}\n` +
      (rows.length ? `evaluations:\n${rows.join('\n')}\n` : 'no evaluations\n') +
      `loss plot: ${plot}\n`,
  );
}
