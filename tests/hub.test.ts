// A fake Hub on 127.0.0.1 serving {endpoint}/{repo}/resolve/{revision}/{file} the way huggingface.co does: small
// files answered directly with a git-sha1 ETag, "LFS" files redirected to a CDN on another origin with
// X-Linked-Etag (sha256) and X-Linked-Size on the redirect. Tests never touch the real network.
import { describe, expect, it, beforeAll, afterAll, afterEach } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hubCacheDir, isHubRepoId, repoFolderName, resolveModel } from '../hf/hub.ts';
import { encodeSafetensors } from '../hf/safetensors.ts';
import { readSafetensorsFolder } from '../hf/safetensors-folder.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));
const TORCH_BIN = fileURLToPath(new URL('./fixtures/torch/t5-v11-tiny-bin/pytorch_model.bin', import.meta.url));
const TORCH_LEGACY = fileURLToPath(new URL('./fixtures/torch/legacy.bin', import.meta.url));
const COMMIT = 'a'.repeat(40);

interface FakeRepo {
  commit: string;
  files: Record<string, Buffer>;
  lfs: Set<string>;
  /** Without a matching Bearer token: 401 GatedRepo. */
  token?: string;
}

interface Logged { server: 'hub' | 'cdn'; method: string; path: string; range?: string; auth?: string }

interface FakeHub {
  url: string;
  log: Logged[];
  /** GETs of these files send half the body, then drop the connection (once each). */
  cut: Set<string>;
  /** Answer like a bare static mirror: no ETag, no X-Repo-Commit. */
  plain: boolean;
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    ok({ server, url: `http://127.0.0.1:${addr.port}` });
  }));
}

/** Serve `body` honouring "Range: bytes=N-", or cut it in half when asked. */
function sendBody(req: IncomingMessage, res: ServerResponse, body: Buffer, headers: Record<string, string>, cut: boolean): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  if (start > body.length) {
    res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
    return;
  }
  const part = body.subarray(start);
  const status = m ? 206 : 200;
  res.writeHead(status, {
    ...headers,
    'Content-Length': String(part.length),
    ...(m ? { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  if (req.method === 'HEAD') {
    res.end();
  } else if (cut) {
    // The pause lets the client consume what was sent: fetch drops chunks still queued when the stream errors.
    res.write(part.subarray(0, Math.floor(part.length / 2)), () => setTimeout(() => res.socket?.destroy(), 100));
  } else {
    res.end(part);
  }
}

async function startHub(repos: Record<string, FakeRepo>): Promise<FakeHub> {
  const log: Logged[] = [];
  const cut = new Set<string>();
  const state = { plain: false };
  const blobs = new Map<string, Buffer>();
  for (const repo of Object.values(repos)) {
    for (const [name, body] of Object.entries(repo.files)) if (repo.lfs.has(name)) blobs.set(sha256(body), body);
  }
  const note = (server: 'hub' | 'cdn', req: IncomingMessage) =>
    log.push({ server, method: req.method!, path: req.url!, range: req.headers.range, auth: req.headers.authorization });

  const cdn = await listen((req, res) => {
    note('cdn', req);
    const hash = req.url!.slice(1);
    const body = blobs.get(hash);
    if (!body) return void res.writeHead(404).end();
    const key = `cdn:${hash}`;
    const doCut = req.method === 'GET' && cut.has(key);
    if (doCut) cut.delete(key);
    sendBody(req, res, body, {}, doCut);
  });

  const hub = await listen((req, res) => {
    note('hub', req);
    const path = new URL(req.url!, 'http://x').pathname;
    const at = path.indexOf('/resolve/');
    const repoId = path.slice(1, at);
    const [rev, ...rest] = path.slice(at + '/resolve/'.length).split('/');
    const file = rest.map(decodeURIComponent).join('/');
    const repo = repos[repoId];
    if (at < 0 || !repo) return void res.writeHead(401, { 'X-Error-Code': 'RepoNotFound' }).end();
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      return void res.writeHead(401, { 'X-Error-Code': 'GatedRepo' }).end();
    }
    const revision = decodeURIComponent(rev);
    if (revision !== 'main' && revision !== repo.commit) {
      return void res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end();
    }
    const body = repo.files[file];
    const common: Record<string, string> = state.plain ? {} : { 'X-Repo-Commit': repo.commit };
    if (!body) return void res.writeHead(404, { ...common, 'X-Error-Code': 'EntryNotFound' }).end();
    if (repo.lfs.has(file)) {
      const hash = sha256(body);
      if (cut.has(file)) {
        cut.delete(file);
        cut.add(`cdn:${hash}`);
      }
      return void res.writeHead(302, {
        ...common,
        Location: `${cdn.url}/${hash}`,
        ...(state.plain ? {} : { 'X-Linked-Etag': `"${hash}"`, 'X-Linked-Size': String(body.length) }),
      }).end();
    }
    const doCut = req.method === 'GET' && cut.has(file);
    if (doCut) cut.delete(file);
    sendBody(req, res, body, { ...common, ...(state.plain ? {} : { ETag: `"${gitSha1(body)}"` }) }, doCut);
  });

  return {
    url: hub.url,
    log,
    cut,
    get plain() { return state.plain; },
    set plain(v: boolean) { state.plain = v; },
    close: async () => {
      for (const s of [hub.server, cdn.server]) {
        s.closeAllConnections();
        await new Promise((ok) => s.close(ok));
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------

let tmp: string;
let golden: Record<string, Buffer>;
let hub: FakeHub;

function t5Repo(extra: Partial<FakeRepo> = {}): FakeRepo {
  return {
    commit: COMMIT,
    files: {
      'config.json': golden['config.json'],
      'generation_config.json': golden['generation_config.json'],
      'model.safetensors': golden['model.safetensors'],
      'spiece.model': golden['spiece.model'],
    },
    lfs: new Set(['model.safetensors', 'spiece.model']),
    ...extra,
  };
}

function shardedRepo(withSecondShard: boolean): FakeRepo {
  const shard = (name: string, v: number) => Buffer.concat(encodeSafetensors({ [name]: { shape: [2], data: Float32Array.from([v, v]) } }));
  const files: Record<string, Buffer> = {
    'config.json': golden['config.json'],
    'spiece.model': golden['spiece.model'],
    'model.safetensors.index.json': Buffer.from(JSON.stringify({
      metadata: { total_size: 16 },
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
    })),
    'model-00001-of-00002.safetensors': shard('a', 1),
  };
  if (withSecondShard) files['model-00002-of-00002.safetensors'] = shard('b', 2);
  return { commit: 'b'.repeat(40), files, lfs: new Set(Object.keys(files).filter((f) => f.endsWith('.safetensors'))) };
}

beforeAll(async () => {
  golden = {};
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'spiece.model']) {
    golden[f] = await readFile(join(GOLDEN, f));
  }
  hub = await startHub({
    'google-t5/t5-tiny': t5Repo(),
    't5-bare': t5Repo(),
    'org/gated': t5Repo({ token: 'hf_secret' }),
    'org/sharded': shardedRepo(true),
    'org/broken-shards': shardedRepo(false),
    // PyTorch weights only: a torch.save zip (read), and the format before PyTorch 1.6 (refused when loaded)
    'org/pt-only': t5Repo({ files: { 'config.json': golden['config.json'], 'spiece.model': golden['spiece.model'], 'pytorch_model.bin': await readFile(TORCH_BIN) }, lfs: new Set(['pytorch_model.bin']) }),
    'org/pt-legacy': t5Repo({ files: { 'config.json': golden['config.json'], 'spiece.model': golden['spiece.model'], 'pytorch_model.bin': await readFile(TORCH_LEGACY) }, lfs: new Set() }),
  });
});

afterAll(async () => {
  await hub.close();
});

let home: string;
const envFor = (extra: Record<string, string> = {}) => ({ HF_HOME: home, HF_ENDPOINT: hub.url, ...extra });

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'hub-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function freshHome(): Promise<string> {
  home = join(tmp, `home-${n++}`);
  await mkdir(home);
  hub.log.length = 0;
  return home;
}
afterEach(() => {
  hub.cut.clear();
  hub.plain = false;
});

describe('resolveModel with a local folder or a bad value', () => {
  it('returns a local folder as is', async () => {
    await freshHome();
    expect(await resolveModel(GOLDEN, { env: envFor() })).toBe(resolve(GOLDEN));
    expect(hub.log).toHaveLength(0);
  });

  it('explains a missing path and a file', async () => {
    await freshHome();
    await expect(resolveModel('./no/such/folder', { env: envFor() })).rejects.toThrow(/no such folder, and not a Hub model id/);
    await expect(resolveModel(join(GOLDEN, 'config.json'), { env: envFor() })).rejects.toThrow(/is a file/);
  });

  it('knows Hub ids and cache names', () => {
    expect(isHubRepoId('google-t5/t5-small')).toBe(true);
    expect(isHubRepoId('t5-small')).toBe(true);
    expect(isHubRepoId('a/b/c')).toBe(false);
    expect(isHubRepoId('bad--name')).toBe(false);
    expect(repoFolderName('google-t5/t5-small')).toBe('models--google-t5--t5-small');
    expect(hubCacheDir({ HF_HOME: '/x/hf' })).toBe(join('/x/hf', 'hub'));
    expect(hubCacheDir({ HF_HOME: '/x/hf', HF_HUB_CACHE: '/y' })).toBe('/y');
  });
});

describe('downloading from the Hub', () => {
  it('fills the huggingface_hub cache layout', async () => {
    await freshHome();
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    const repoDir = join(home, 'hub', 'models--google-t5--t5-tiny');
    expect(snap).toBe(join(repoDir, 'snapshots', COMMIT));
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'spiece.model']) {
      expect(Buffer.compare(await readFile(join(snap, f)), golden[f])).toBe(0);
    }
    expect(await readlink(join(snap, 'config.json'))).toBe(join('..', '..', 'blobs', gitSha1(golden['config.json'])));
    expect(await readlink(join(snap, 'model.safetensors'))).toBe(join('..', '..', 'blobs', sha256(golden['model.safetensors'])));
    expect((await readFile(join(repoDir, 'refs', 'main'), 'utf8')).trim()).toBe(COMMIT);
    // Optional files the repo lacks (404) are fine, and remembered as absent.
    expect((await readdir(join(repoDir, '.no_exist', COMMIT))).sort()).toEqual(['special_tokens_map.json', 'tokenizer_config.json']);
    expect((await readdir(join(repoDir, 'blobs'))).some((f) => f.endsWith('.incomplete'))).toBe(false);
    expect((await readSafetensorsFolder(snap)).get('shared.weight')!.shape).toEqual([1128, 64]);
    // Files after config.json are asked for by commit, so the snapshot cannot mix commits.
    expect(hub.log.filter((l) => l.server === 'hub').slice(1).every((l) => l.path.includes(`/resolve/${COMMIT}/`))).toBe(true);
  });

  it('works with a legacy id without a namespace', async () => {
    await freshHome();
    const snap = await resolveModel('t5-bare', { env: envFor(), quiet: true });
    expect(snap).toBe(join(home, 'hub', 'models--t5-bare', 'snapshots', COMMIT));
  });

  it('resumes an interrupted download with a Range request', async () => {
    await freshHome();
    hub.cut.add('model.safetensors');
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    expect(Buffer.compare(await readFile(join(snap, 'model.safetensors')), golden['model.safetensors'])).toBe(0);
    const gets = hub.log.filter((l) => l.server === 'cdn' && l.method === 'GET' && l.path === `/${sha256(golden['model.safetensors'])}`);
    expect(gets).toHaveLength(2);
    expect(gets[0].range).toBeUndefined();
    const m = /^bytes=(\d+)-$/.exec(gets[1].range ?? '');
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBeLessThan(golden['model.safetensors'].length);
  });

  it('resumes a small file served directly too', async () => {
    await freshHome();
    hub.cut.add('config.json');
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    expect(Buffer.compare(await readFile(join(snap, 'config.json')), golden['config.json'])).toBe(0);
    expect(hub.log.filter((l) => l.method === 'GET' && l.path.endsWith('/config.json'))).toHaveLength(2);
  });

  it('continues a .incomplete left by an earlier run', async () => {
    await freshHome();
    const blobs = join(home, 'hub', 'models--google-t5--t5-tiny', 'blobs');
    await mkdir(blobs, { recursive: true });
    const hash = sha256(golden['model.safetensors']);
    await writeFile(join(blobs, `${hash}.incomplete`), golden['model.safetensors'].subarray(0, 1000));
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    expect(Buffer.compare(await readFile(join(snap, 'model.safetensors')), golden['model.safetensors'])).toBe(0);
    expect(hub.log.find((l) => l.server === 'cdn' && l.path === `/${hash}` && l.method === 'GET')?.range).toBe('bytes=1000-');
  });

  it('throws away a partial file that does not match the etag', async () => {
    await freshHome();
    const blobs = join(home, 'hub', 'models--google-t5--t5-tiny', 'blobs');
    await mkdir(blobs, { recursive: true });
    const hash = sha256(golden['model.safetensors']);
    await writeFile(join(blobs, `${hash}.incomplete`), Buffer.alloc(1000, 7));
    await expect(resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true })).rejects.toThrow(/does not match its etag/);
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    expect(Buffer.compare(await readFile(join(snap, 'model.safetensors')), golden['model.safetensors'])).toBe(0);
  });

  it('sends HF_TOKEN to the Hub but not to the CDN, and explains gated repos', async () => {
    await freshHome();
    await expect(resolveModel('org/gated', { env: envFor(), quiet: true })).rejects.toThrow(/org\/gated is gated.*HF_TOKEN/);
    const snap = await resolveModel('org/gated', { env: envFor({ HF_TOKEN: 'hf_secret' }), quiet: true });
    expect(await readFile(join(snap, 'config.json'))).toEqual(golden['config.json']);
    expect(hub.log.filter((l) => l.server === 'hub').every((l) => l.auth === undefined || l.auth === 'Bearer hf_secret')).toBe(true);
    expect(hub.log.some((l) => l.server === 'hub' && l.auth === 'Bearer hf_secret')).toBe(true);
    expect(hub.log.filter((l) => l.server === 'cdn').every((l) => l.auth === undefined)).toBe(true);
  });

  it('says when the repo or revision does not exist', async () => {
    await freshHome();
    await expect(resolveModel('org/nope', { env: envFor(), quiet: true })).rejects.toThrow(/Hub model org\/nope not found/);
    await expect(resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true, revision: 'v9' }))
      .rejects.toThrow(/has no revision "v9"/);
  });

  it('names the URL when the network fails', async () => {
    await freshHome();
    const { server, url } = await listen(() => {});
    await new Promise((ok) => server.close(ok));
    await expect(resolveModel('google-t5/t5-tiny', { env: { HF_HOME: home, HF_ENDPOINT: url }, quiet: true }))
      .rejects.toThrow(new RegExp(`cannot reach ${url.replace(/\./g, '\\.')}/google-t5/t5-tiny/resolve/main/config\\.json`));
  });

  it('downloads sharded checkpoints and names a missing shard', async () => {
    await freshHome();
    const snap = await resolveModel('org/sharded', { env: envFor(), quiet: true });
    const all = await readSafetensorsFolder(snap);
    expect([...all.get('b')!.data]).toEqual([2, 2]);
    await expect(resolveModel('org/broken-shards', { env: envFor(), quiet: true }))
      .rejects.toThrow(/lists shard model-00002-of-00002\.safetensors, but the Hub has no such file/);
  });

  it('downloads a PyTorch-only repo\'s pytorch_model.bin, and reads it; the pre-1.6 format is refused with the conversion command', async () => {
    await freshHome();
    const snap = await resolveModel('org/pt-only', { env: envFor(), quiet: true });
    expect((await readdir(snap)).sort()).toContain('pytorch_model.bin');
    const weights = await readSafetensorsFolder(snap);
    expect(weights.get('lm_head.weight')!.shape).toEqual([97, 40]);
    // cached now: offline resolves to the same snapshot
    expect(await resolveModel('org/pt-only', { env: envFor({ HF_HUB_OFFLINE: '1' }), quiet: true })).toBe(snap);
    const legacy = await resolveModel('org/pt-legacy', { env: envFor(), quiet: true });
    await expect(readSafetensorsFolder(legacy)).rejects.toThrow(/pytorch_model\.bin in PyTorch's format before 1\.6.*save_pretrained\(.*safe_serialization=True\)/);
  });

  it('works with a bare mirror that sends no ETag or X-Repo-Commit', async () => {
    await freshHome();
    hub.plain = true;
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    expect(snap).toBe(join(home, 'hub', 'models--google-t5--t5-tiny', 'snapshots', 'main'));
    expect(Buffer.compare(await readFile(join(snap, 'model.safetensors')), golden['model.safetensors'])).toBe(0);
    expect(await resolveModel('google-t5/t5-tiny', { env: envFor({ HF_HUB_OFFLINE: '1' }), quiet: true })).toBe(snap);
  });

  it('repairs a snapshot whose blob was deleted', async () => {
    await freshHome();
    const snap = await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true });
    await rm(join(home, 'hub', 'models--google-t5--t5-tiny', 'blobs', sha256(golden['model.safetensors'])));
    expect(await resolveModel('google-t5/t5-tiny', { env: envFor(), quiet: true })).toBe(snap);
    expect(Buffer.compare(await readFile(join(snap, 'model.safetensors')), golden['model.safetensors'])).toBe(0);
  });
});

describe('offline use', () => {
  it('uses the cached snapshot without the network, and HF_HUB_OFFLINE without asking', async () => {
    const offlineHub = await startHub({ 'google-t5/t5-tiny': t5Repo() });
    await freshHome();
    const env = { HF_HOME: home, HF_ENDPOINT: offlineHub.url };
    const first = await resolveModel('google-t5/t5-tiny', { env, quiet: true });
    expect(offlineHub.log.length).toBeGreaterThan(0);
    await offlineHub.close();
    expect(await resolveModel('google-t5/t5-tiny', { env, quiet: true })).toBe(first);
    expect(await resolveModel('google-t5/t5-tiny', { env: { ...env, HF_HUB_OFFLINE: '1' }, quiet: true })).toBe(first);
    expect(await resolveModel('google-t5/t5-tiny', { env, quiet: true, revision: COMMIT })).toBe(first);
    // Asking the Hub for a newer commit needs the network, and says so.
    await expect(resolveModel('google-t5/t5-tiny', { env, quiet: true, refresh: true })).rejects.toThrow(/cannot reach/);
  });

  it('explains HF_HUB_OFFLINE with an empty cache', async () => {
    await freshHome();
    await expect(resolveModel('google-t5/t5-tiny', { env: envFor({ HF_HUB_OFFLINE: '1' }), quiet: true }))
      .rejects.toThrow(/not fully cached .* HF_HUB_OFFLINE is set/);
    expect(hub.log).toHaveLength(0);
  });
});
