// `npm run demo`: builds the CLI, then runs demo/demo.ts: a T5 created from scratch with the shipped tokenizer,
// fine-tuned for a few minutes on the shipped QA CSV, evaluated on held-out rows, saved, and asked a few
// questions (see demo/README.md). DEMO_SECONDS sets the training time (default 180), DEMO_OUT the output folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

function run(cmd, args) {
  process.stderr.write(`\n$ ${[cmd, ...args].join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

run('node', ['scripts/build.mjs']);
if (!existsSync('dist/engine-cli.js')) process.exit(1);
mkdirSync('.cache', { recursive: true });
await build({
  entryPoints: ['demo/demo.ts'], outfile: '.cache/demo.mjs', bundle: true, platform: 'node', format: 'esm',
  target: 'node20', packages: 'external', logLevel: 'warning',
});
run('node', ['.cache/demo.mjs']);
