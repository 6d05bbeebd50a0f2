// `npm run demo`: what the project can do end to end today on this machine. Until the training pipeline
// lands this is: build the CLI, describe the adapter, and run a short benchmark of the engine's kernels.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

function run(cmd, args) {
  process.stderr.write(`\n$ ${[cmd, ...args].join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

run('node', ['scripts/build.mjs']);
if (!existsSync('dist/engine-cli.js')) process.exit(1);
run('node', ['dist/engine-cli.js', 'info']);
run('node', ['dist/engine-cli.js', 'bench', '--repeat', '3', '--sizes', '1024x1024x1024,16384x256,4096x512,16777216']);
