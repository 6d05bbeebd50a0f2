// Bundles the CLI into one file (dist/engine-cli.js) and the library into dist/index.js; the packages
// stay external (webgpu ships a native addon).
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' };
await build({ ...common, entryPoints: ['cli/engine-cli.ts'], outfile: 'dist/engine-cli.js', banner: { js: '#!/usr/bin/env node' } });
await build({ ...common, entryPoints: ['index.ts'], outfile: 'dist/index.js' });
