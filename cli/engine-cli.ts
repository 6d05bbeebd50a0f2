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

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  train: {
    run: trainCommand,
    help: 'fine-tune on a QA CSV: train --data FILE.csv --model DIR|HUB_ID --out OUT [options] | train --resume OUT',
  },
  eval: { run: evalCommand, help: 'validation loss, exact match and F1: eval --model DIR --data FILE.csv [--num-beams N] [--json]' },
  predict: {
    run: predictCommand,
    help: 'answers: predict --model DIR|HUB_ID (--context TEXT --question TEXT | --input TEXT | --data FILE.csv --output FILE) [--num-beams N] [--json]',
  },
  report: { run: reportCommand, help: 'redraw OUT/loss.svg from metrics.jsonl and list the evaluations: report OUT [--json]' },
  info: { run: infoCommand, help: 'adapter, driver, limits, features and measured ceilings [--json] [--remeasure]' },
  init: {
    run: initCommand,
    help: 'a new T5 from scratch: init --config t5-tiny|t5-small|t5-base|config.json --tokenizer spiece.model --out DIR [--seed N]',
  },
  score: {
    run: scoreCommand,
    help: 'mean cross-entropy of a target: score --model DIR|HUB_ID (--input TEXT | --context TEXT --question TEXT) --target TEXT [--json]',
  },
  serve: { run: serveCommand, help: 'the web page (answer, fine-tune, download) and the model folder: serve --model DIR [--port 8080] [--host 127.0.0.1]' },
  bench: { run: benchCommand, help: 'kernel benchmarks: bench [op ...|all] [--sizes A,B] [--repeat N] [--json]' },
};

function usage(): string {
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.help}`);
  return `usage: engine-cli <command> [options]\n\ncommands:\n${rows.join('\n')}\n\n` +
    'global options: --backend vulkan|metal|d3d12 (or T5_WEBGPU_BACKEND), --adapter NAME (or T5_WEBGPU_ADAPTER)\n';
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`engine-cli: unknown command '${name}'\n${usage()}`);
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
