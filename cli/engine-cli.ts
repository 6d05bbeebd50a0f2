// engine-cli: parses flags, calls the package's functions, prints. User mistakes end in one line on stderr
// and exit code 1 (a stack trace only with T5_WEBGPU_DEBUG=1).
import { benchCommand } from './bench.ts';
import { evalCommand } from './eval.ts';
import { infoCommand } from './info.ts';
import { initCommand } from './init.ts';
import { predictCommand } from './predict.ts';
import { reportCommand } from './report.ts';
import { scoreCommand } from './score.ts';
import { serveCommand } from './serve.ts';
import { trainCommand } from './train.ts';

// One line per command; its flags are in its own table (`engine-cli <command> --help`).
const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  train: { run: trainCommand, help: 'fine-tune on a QA CSV, or --resume a run' },
  eval: { run: evalCommand, help: 'validation loss, exact match and F1 of a model on a QA CSV' },
  predict: { run: predictCommand, help: 'answers for one input or a whole CSV file' },
  report: { run: reportCommand, help: 'redraw OUT/loss.svg from metrics.jsonl and list the evaluations' },
  info: { run: infoCommand, help: 'adapter, driver, limits, features and measured ceilings' },
  init: { run: initCommand, help: 'a new T5 model folder with from-scratch weights' },
  score: { run: scoreCommand, help: 'mean cross-entropy of a target given a source' },
  serve: { run: serveCommand, help: 'the web page (answer, fine-tune, download) for a model folder' },
  bench: { run: benchCommand, help: 'kernel benchmarks against the measured ceilings' },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.help}`);
  return `usage: engine-cli <command> [options]\n\ncommands:\n${rows.join('\n')}\n\n` +
    'engine-cli <command> --help lists its options. Every GPU command takes --backend and --adapter\n' +
    '(or T5_WEBGPU_BACKEND, T5_WEBGPU_ADAPTER).\n';
}

/** Levenshtein distance: a typo of one or two letters ('trian', 'evl') names the command meant. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function nearestCommand(name: string): string | undefined {
  const MAX_TYPO = 2;
  let best: { name: string; d: number } | undefined;
  for (const c of Object.keys(COMMANDS)) {
    const d = editDistance(name.toLowerCase(), c);
    if (d <= MAX_TYPO && d < name.length && (!best || d < best.d)) best = { name: c, d };
  }
  return best?.name;
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    // one line, as every other user mistake: the nearest command name, then where the full list is
    const near = nearestCommand(name);
    process.stderr.write(`engine-cli: unknown command '${name}'${near ? ` (did you mean '${near}'?)` : ''}; ` +
      `commands: ${Object.keys(COMMANDS).join(', ')} (engine-cli --help)\n`);
    process.exitCode = 1;
    return;
  }
  await cmd.run(rest);
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`engine-cli: ${err.message ?? String(e)}\n`);
    if (process.env.T5_WEBGPU_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  },
);
