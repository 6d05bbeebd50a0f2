// Bundles the CLI into one file (dist/engine-cli.js) and the library into dist/index.js; the packages
// stay external (webgpu ships a native addon). `--browser` (or `browser` as an argument) builds only the web
// page's bundle, dist/t5-webgpu.browser.js; with no argument all three are built.
import { build } from 'esbuild';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const onlyBrowser = process.argv.slice(2).some((a) => a === 'browser' || a === '--browser');

if (!onlyBrowser) {
  const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' };
  await build({ ...common, entryPoints: ['cli/engine-cli.ts'], outfile: 'dist/engine-cli.js', banner: { js: '#!/usr/bin/env node' } });
  await build({ ...common, entryPoints: ['index.ts'], outfile: 'dist/index.js' });
}

// The web page's bundle. Node's platform (Dawn, cache files) is replaced by nothing: engine/platform.ts loads it
// only where there is no navigator.gpu. The upper layers still keep their file readers beside their parsers
// (model/config.ts, hf/*.ts, tasks/*.ts); a page never calls those, so their `node:` imports resolve to a module
// whose every function throws, and any other node: import fails the build. sentencepiece-js reads its model
// with fs.readFileSync: its `fs` is hf/spiece-memory-files.ts. csv-parse's Node build needs Buffer; its own
// browser build does not (its streaming parser, only used on files, is left out too).
const require = createRequire(import.meta.url);
const csvParseBrowser = require.resolve('csv-parse/sync').replace(/lib[\\/]sync\.js$|dist[\\/]cjs[\\/]sync\.cjs$/, 'dist/esm/sync.js');
const NODE_ONLY_IMPORTERS = /[\\/](model|hf|generate|tasks|train|util)[\\/][^\\/]+\.ts$/;
const browserShims = {
  name: 'browser-shims',
  setup(b) {
    b.onResolve({ filter: /[\\/]platform-node\.ts$/ }, () => ({ path: 'platform-node', namespace: 'unavailable' }));
    b.onResolve({ filter: /^(fs|module|url)$/ }, (args) =>
      /sentencepiece-js/.test(args.importer)
        ? args.path === 'fs' ? { path: `${root}hf/spiece-memory-files.ts` } : { path: args.path, namespace: 'unavailable' }
        : undefined);
    // tasks/csv-data.ts streams files with csv-parse's Node build; a page parses text (tasks/qa-csv-text.ts)
    b.onResolve({ filter: /^csv-parse$/ }, (args) =>
      NODE_ONLY_IMPORTERS.test(args.importer) ? { path: args.path, namespace: 'unavailable' } : undefined);
    b.onResolve({ filter: /^node:/ }, (args) =>
      NODE_ONLY_IMPORTERS.test(args.importer) ? { path: args.path, namespace: 'unavailable' } : undefined);
    b.onResolve({ filter: /^csv-parse\/sync$/ }, () => ({ path: csvParseBrowser }));
    b.onLoad({ filter: /.*/, namespace: 'unavailable' }, (args) => ({
      loader: 'js',
      contents: `module.exports = new Proxy({}, { get: (_, k) => k === '__esModule' ? false : () => { throw new Error(${JSON.stringify(`${args.path}`)} + '.' + String(k) + ' is not available in a web page'); } });`,
    }));
  },
};
const result = await build({
  bundle: true, platform: 'browser', format: 'esm', target: 'es2022', logLevel: 'warning', metafile: true,
  entryPoints: ['browser.ts'], outfile: 'dist/t5-webgpu.browser.js', plugins: [browserShims],
});
const unavailable = Object.keys(result.metafile.inputs).filter((p) => p.startsWith('unavailable:'));
if (process.env.T5_WEBGPU_BUILD_VERBOSE) console.log(`browser bundle: stubbed ${unavailable.join(', ')}`);
