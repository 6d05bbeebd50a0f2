// The web page (web/) and a model folder over HTTP, for answering and fine-tuning in a browser tab
// (`engine-cli serve`). Loopback only unless `host` says otherwise: the folder's files are served to whoever asks.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';

// From tasks/web-server.ts and from the bundled dist/engine-cli.js alike, web/ and dist/ are one folder up.
const WEB_DIR = fileURLToPath(new URL('../web/', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../dist/t5-webgpu.browser.js', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

/** The page's own files: name in the URL -> file on disk. */
const PAGE_FILES: Record<string, string> = {
  '/': `${WEB_DIR}index.html`,
  '/app.js': `${WEB_DIR}app.js`,
  '/t5-webgpu.browser.js': BUNDLE,
};

export interface ServeOptions {
  /** the model folder (already resolved) */
  dir: string;
  port?: number;
  host?: string;
}

/** Starts the server; resolves once it listens. `url` is where to point a browser. */
export async function startServer(o: ServeOptions): Promise<{ url: string; server: Server }> {
  if (!existsSync(BUNDLE)) throw new Error(`serve: ${BUNDLE} is missing: run \`npm run build\` first`);
  const server = createServer((req, res) => {
    void respond(o.dir, req.url ?? '/', res).catch((e: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`serve: ${e.message}`);
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => ok());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = (o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : (o.host ?? '127.0.0.1');
  return { url: `http://${host}:${port}/`, server };
}

async function respond(dir: string, url: string, res: import('node:http').ServerResponse): Promise<void> {
  const path = decodeURIComponent(url.split('?')[0]!);
  let file = PAGE_FILES[path];
  // /model/NAME: a plain file name in the folder, never a path out of it
  if (!file && path.startsWith('/model/')) {
    const name = path.slice('/model/'.length);
    if (/^[\w.-]+$/.test(name) && !name.startsWith('.')) file = `${dir}/${name}`;
  }
  const st = file ? await stat(file).catch(() => undefined) : undefined;
  if (!file || !st?.isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    return;
  }
  const ext = file.slice(file.lastIndexOf('.'));
  res.writeHead(200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'content-length': st.size, 'cache-control': 'no-store' });
  res.end(await readFile(file));
}
