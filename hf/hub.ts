// Resolve a --model value to a local folder: a folder is used as is; a Hub id (google-t5/t5-small) is downloaded
// into the huggingface_hub cache layout, so Python tools and this engine share one copy:
//   $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME default ~/.cache/huggingface)
//     models--{org}--{name}/blobs/{etag}                      file contents, named by the Hub's etag
//     models--{org}--{name}/snapshots/{commit}/{file}         symlink -> ../../blobs/{etag}
//     models--{org}--{name}/refs/{revision}                   commit hash the revision pointed to
//     models--{org}--{name}/.no_exist/{commit}/{file}         optional file known to be absent
// Unlike huggingface_hub, a snapshot that is already complete for the requested revision is used without asking
// the network (pass refresh: true to look for a newer commit of a branch); HF_HUB_OFFLINE=1 never asks.
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { ProgressBar } from '../util/progress.ts';
import {
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
  TORCH_FILE,
  TORCH_INDEX_FILE,
  isSafeRelativePath,
  parseSafetensorsIndex,
} from './safetensors-folder.ts';

/** from_pretrained's order: a single file, else an index and its shards; safetensors before PyTorch's. */
const WEIGHT_LAYOUTS = [[SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE], [TORCH_FILE, TORCH_INDEX_FILE]] as const;

export interface ResolveModelOptions {
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Cache root (the folder holding models--*); default $HF_HUB_CACHE or $HF_HOME/hub. */
  cacheDir?: string;
  /** Default $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, or the token file huggingface-cli login writes. */
  token?: string;
  /** Never use the network (also $HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Ask the Hub for the revision's current commit even when a complete snapshot is cached. */
  refresh?: boolean;
  /** No progress bar. */
  quiet?: boolean;
  /** Environment to read HF_* variables from; default process.env. */
  env?: Record<string, string | undefined>;
}

const REQUIRED_FILES = ['config.json', 'spiece.model'];
const OPTIONAL_FILES = ['generation_config.json', 'tokenizer_config.json', 'special_tokens_map.json'];
const TRUE_VALUES = new Set(['1', 'ON', 'YES', 'TRUE']);
const MAX_ATTEMPTS = 5;

export async function resolveModel(model: string, options: ResolveModelOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const path = expandHome(model);
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) return resolve(path);
  if (st) throw new Error(`--model ${model} is a file; pass the folder that holds config.json and model.safetensors`);
  if (looksLikePath(model) || !isHubRepoId(model)) {
    throw new Error(`--model ${model}: no such folder, and not a Hub model id such as google-t5/t5-small`);
  }
  const ctx = hubContext(model, options, env);
  return downloadSnapshot(ctx);
}

export function hubCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.HF_HUB_CACHE) return expandHome(env.HF_HUB_CACHE);
  return join(hfHome(env), 'hub');
}

/** models--org--name, as huggingface_hub names a model's cache folder. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}

/** huggingface_hub's rule: [namespace/]name of word characters, '-' and '.', no '--' or '..', at most 96. */
export function isHubRepoId(id: string): boolean {
  return /^(?:[\w][\w.-]*\/)?[\w][\w.-]{0,95}$/.test(id) && !id.includes('--') && !id.includes('..') &&
    !id.endsWith('.') && !id.endsWith('-') && !id.endsWith('.git');
}

// ---------------------------------------------------------------------------------------------------------------

interface HubContext {
  repoId: string;
  revision: string;
  repoDir: string;
  endpoint: string;
  token?: string;
  offline: boolean;
  refresh: boolean;
  progress: boolean;
  etagTimeoutMs: number;
}

function hubContext(repoId: string, options: ResolveModelOptions, env: Record<string, string | undefined>): HubContext {
  const cache = options.cacheDir ?? hubCacheDir(env);
  return {
    repoId,
    revision: options.revision ?? 'main',
    repoDir: join(cache, repoFolderName(repoId)),
    endpoint: (options.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token: options.token ?? readToken(env),
    offline: options.offline ?? isTrue(env.HF_HUB_OFFLINE),
    refresh: options.refresh ?? false,
    progress: !options.quiet && !isTrue(env.HF_HUB_DISABLE_PROGRESS_BARS) && process.stderr.isTTY === true,
    etagTimeoutMs: 1000 * (Number(env.HF_HUB_ETAG_TIMEOUT) || 10),
  };
}

async function downloadSnapshot(ctx: HubContext): Promise<string> {
  const { repoId, revision, repoDir } = ctx;
  if (ctx.offline || !ctx.refresh) {
    const cached = await cachedSnapshot(ctx, ctx.offline ? 'required' : 'all');
    if (typeof cached === 'string') return cached;
    if (ctx.offline) {
      throw new Error(`${repoId} (revision ${revision}) is not fully cached in ${repoDir} (${cached.missing}) and HF_HUB_OFFLINE is set; run once online or pass a local folder`);
    }
  }

  // Everything after config.json is fetched by commit, so one snapshot never mixes two commits.
  const config = await fetchFile(ctx, ctx.revision, 'config.json', false);
  const commit = config.commit;
  const snapshot = join(repoDir, 'snapshots', commit);

  await fetchWeights(ctx, commit, snapshot);
  for (const f of REQUIRED_FILES.slice(1)) await fetchFile(ctx, commit, f, false);
  for (const f of OPTIONAL_FILES) await fetchFile(ctx, commit, f, true);

  // A bare mirror gives no commit and the snapshot is named after the revision; the ref still marks it complete.
  if (!/^[0-9a-f]{40}$/.test(revision)) await writeRef(repoDir, revision, commit);
  return snapshot;
}

/** Downloads the revision's weights in from_pretrained's order (WEIGHT_LAYOUTS): the first layout the Hub has. */
async function fetchWeights(ctx: HubContext, commit: string, snapshot: string): Promise<void> {
  for (const [single, index] of WEIGHT_LAYOUTS) {
    if ((await fetchFile(ctx, commit, single, true)).status === 'ok') return;
    if ((await fetchFile(ctx, commit, index, true)).status === 'missing') continue;
    const indexPath = join(snapshot, index);
    const weightMap = parseSafetensorsIndex(await readFile(indexPath, 'utf8'), indexPath);
    for (const shard of new Set(weightMap.values())) {
      const got = await fetchFile(ctx, commit, shard, true);
      if (got.status === 'missing') throw new Error(`${ctx.repoId}: ${index} lists shard ${shard}, but the Hub has no such file`);
    }
    return;
  }
  throw new Error(`${ctx.repoId} (revision ${ctx.revision}) has no weights: no ${WEIGHT_LAYOUTS.flat().join(', ')}`);
}

/** Whether the snapshot holds a complete set of weights (one of WEIGHT_LAYOUTS), else the file that is missing. */
async function cachedWeights(snapshot: string): Promise<true | { missing: string }> {
  for (const [single, index] of WEIGHT_LAYOUTS) {
    if (await exists(join(snapshot, single))) return true;
    const indexPath = join(snapshot, index);
    let weightMap: Map<string, string>;
    try {
      weightMap = parseSafetensorsIndex(await readFile(indexPath, 'utf8'), indexPath);
    } catch {
      continue;
    }
    for (const shard of new Set(weightMap.values())) {
      if (!(await exists(join(snapshot, shard)))) return { missing: shard };
    }
    return true;
  }
  return { missing: SAFETENSORS_FILE };
}

/** The snapshot folder if everything needed is cached, else what is missing. */
async function cachedSnapshot(ctx: HubContext, need: 'required' | 'all'): Promise<string | { missing: string }> {
  const commit = /^[0-9a-f]{40}$/.test(ctx.revision)
    ? ctx.revision
    : (await readFile(join(ctx.repoDir, 'refs', ctx.revision), 'utf8').catch(() => '')).trim();
  if (!commit || !isSafeRelativePath(commit)) return { missing: `no refs/${ctx.revision}` };
  const snapshot = join(ctx.repoDir, 'snapshots', commit);
  for (const f of REQUIRED_FILES) {
    if (!(await exists(join(snapshot, f)))) return { missing: f };
  }
  const weights = await cachedWeights(snapshot);
  if (weights !== true) return weights;
  if (need === 'all') {
    for (const f of OPTIONAL_FILES) {
      if (!(await exists(join(snapshot, f))) && !(await exists(join(ctx.repoDir, '.no_exist', commit, f)))) {
        return { missing: f };
      }
    }
  }
  return snapshot;
}

type Fetched = { status: 'ok' | 'missing'; commit: string };

/** Make snapshots/{commit}/{file} exist (or mark it absent when optional), downloading its blob if needed. */
async function fetchFile(ctx: HubContext, revision: string, file: string, optional: boolean): Promise<Fetched> {
  if (!isSafeRelativePath(file)) throw new Error(`${ctx.repoId}: refusing file name ${JSON.stringify(file)}`);
  const url = resolveUrl(ctx, revision, file);
  const head = await request(ctx, url, 'HEAD');
  if (head.status === 404 && optional && !isRepoLevelError(head)) {
    const commit = head.headers.get('x-repo-commit') ?? folderForRevision(revision);
    const marker = join(ctx.repoDir, '.no_exist', commit, file);
    await mkdir(dirname(marker), { recursive: true });
    await writeFile(marker, '');
    return { status: 'missing', commit };
  }
  if (!head.ok && !(head.status >= 300 && head.status < 400)) throw httpError(ctx, url, head, file);

  const commit = head.headers.get('x-repo-commit') ?? folderForRevision(revision);
  if (!isSafeRelativePath(commit) || commit.includes('/')) throw new Error(`${url}: bad X-Repo-Commit ${JSON.stringify(commit)}`);
  const etag = normalizeEtag(head.headers.get('x-linked-etag') ?? head.headers.get('etag'));
  const sizeHeader = head.headers.get('x-linked-size') ?? (head.ok ? head.headers.get('content-length') : null);
  const size = sizeHeader !== null && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;

  const pointer = join(ctx.repoDir, 'snapshots', commit, file);
  await mkdir(dirname(pointer), { recursive: true });
  if (await exists(pointer)) return { status: 'ok', commit };

  // Fetch the body by commit too: a branch that moves between HEAD and GET must not mix content and etag.
  const bodyUrl = head.headers.has('x-repo-commit') ? resolveUrl(ctx, commit, file) : url;
  if (!etag) {
    // No content address (a plain mirror): keep the file itself in the snapshot, as huggingface_hub does on Windows.
    await download(ctx, bodyUrl, pointer, size, undefined, file);
    return { status: 'ok', commit };
  }
  const blob = join(ctx.repoDir, 'blobs', etag);
  await mkdir(dirname(blob), { recursive: true });
  if (!(await exists(blob))) await download(ctx, bodyUrl, blob, size, etag, file);
  await linkBlob(blob, pointer);
  return { status: 'ok', commit };
}

/**
 * Download url to dest via dest.incomplete, resuming what an earlier attempt (or run) left there with a Range
 * request, then check size and, when the etag is a content hash, the hash.
 */
async function download(
  ctx: HubContext,
  url: string,
  dest: string,
  size: number | undefined,
  etag: string | undefined,
  label: string,
): Promise<void> {
  const part = `${dest}.incomplete`;
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    let have = await fileSize(part);
    if (size !== undefined && have > size) {
      await truncate(part, 0);
      have = 0;
    }
    if (size !== undefined && have === size) break;
    if (attempt > 1) await sleep(250 * (attempt - 1));
    try {
      have = await downloadOnce(ctx, url, part, have, size, label);
      if (size === undefined || have === size) {
        lastError = undefined;
        break;
      }
      lastError = new Error(`got ${have} of ${size} bytes`);
    } catch (err) {
      // A connection cut mid-body is worth resuming; an unreachable host or an HTTP error is not.
      if (!(err instanceof BodyError)) throw err;
      lastError = err;
    }
  }
  if (lastError) {
    throw new Error(`download of ${url} failed (${lastError.message}); run again to resume from ${await fileSize(part)} bytes`);
  }
  const got = await fileSize(part);
  if (size !== undefined && got !== size) throw new Error(`download of ${url} gave ${got} bytes, expected ${size}`);
  if (etag && !(await matchesEtag(part, etag, got))) {
    await unlink(part).catch(() => {});
    throw new Error(`download of ${url} does not match its etag ${etag} (corrupt transfer); run again to retry`);
  }
  await rename(part, dest);
}

async function downloadOnce(
  ctx: HubContext,
  url: string,
  part: string,
  have: number,
  size: number | undefined,
  label: string,
): Promise<number> {
  const res = await request(ctx, url, 'GET', have > 0 ? { Range: `bytes=${have}-` } : {});
  if (res.status === 416 && have > 0) {
    // Our partial file does not fit what the server has now: start over.
    await res.body?.cancel();
    await truncate(part, 0);
    return downloadOnce(ctx, url, part, 0, size, label);
  }
  if (!res.ok) throw httpError(ctx, url, res, label);
  if (res.status === 206) {
    const range = res.headers.get('content-range') ?? '';
    if (!range.startsWith(`bytes ${have}-`)) {
      await res.body?.cancel();
      throw new Error(`server answered Range bytes=${have}- with Content-Range "${range}"`);
    }
  } else {
    have = 0; // a 200 is the whole file: the server ignored our Range
  }
  const fh = await open(part, have > 0 ? 'a' : 'w');
  // Small files (config, tokenizer) arrive at once; a bar for each would only be noise.
  const bar = ctx.progress && (size === undefined || size >= 1e6) ? new ProgressBar({ label: `${ctx.repoId}: ${label}`, total: size, count: mb, rate: (r) => `${mb(r)}/s` }) : undefined;
  try {
    bar?.update(have);
    if (res.body) {
      const reader = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await reader.next();
        } catch (err) {
          const cause = (err as { cause?: { message?: string } }).cause?.message;
          throw new BodyError(`${(err as Error).message}${cause ? `: ${cause}` : ''} after ${have} bytes`);
        }
        if (next.done) break;
        const chunk = next.value;
        let off = 0;
        while (off < chunk.byteLength) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
        have += chunk.byteLength;
        bar?.update(have);
      }
    }
    await fh.sync();
  } finally {
    bar?.done();
    await fh.close();
  }
  return have;
}

/** The connection broke while the body was arriving. */
class BodyError extends Error {}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

// ---------------------------------------------------------------------------------------------------------------
// HTTP

function resolveUrl(ctx: HubContext, revision: string, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * fetch with redirects followed by hand: HEAD follows only same-origin redirects (a cross-origin one is the CDN,
 * and the Hub's headers we need are on the redirect itself, as huggingface_hub reads them); GET follows all but
 * drops the token when leaving the endpoint's origin.
 */
async function request(
  ctx: HubContext,
  url: string,
  method: 'HEAD' | 'GET',
  extra: Record<string, string> = {},
): Promise<Response> {
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = {
      'User-Agent': 't5-webgpu/0.1 (node)',
      'Accept-Encoding': 'identity',
      ...extra,
    };
    if (ctx.token && new URL(current).origin === origin) headers.Authorization = `Bearer ${ctx.token}`;
    let res: Response;
    try {
      res = await fetch(current, {
        method,
        headers,
        redirect: 'manual',
        signal: method === 'HEAD' ? AbortSignal.timeout(ctx.etagTimeoutMs) : undefined,
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new Error(`cannot reach ${current} (${why}); check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache`);
    }
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) return res;
    const next = new URL(location, current);
    if (method === 'HEAD' && next.origin !== origin) return res;
    await res.body?.cancel();
    current = next.href;
  }
  throw new Error(`too many redirects from ${url}`);
}

function isRepoLevelError(res: Response): boolean {
  const code = res.headers.get('x-error-code');
  return code === 'RepoNotFound' || code === 'RevisionNotFound';
}

function httpError(ctx: HubContext, url: string, res: Response, file: string): Error {
  const code = res.headers.get('x-error-code');
  const { repoId, revision } = ctx;
  if (code === 'GatedRepo') {
    return new Error(`${repoId} is gated: accept its terms at ${ctx.endpoint}/${repoId} and set HF_TOKEN to a token of that account (${res.status} from ${url})`);
  }
  if (code === 'RepoNotFound' || (res.status === 404 && file === 'config.json' && code !== 'EntryNotFound' && code !== 'RevisionNotFound')) {
    return new Error(`Hub model ${repoId} not found (${res.status} from ${url}), and there is no local folder of that name; check the id or the path`);
  }
  if (code === 'RevisionNotFound') return new Error(`${repoId} has no revision "${revision}" (404 from ${url})`);
  if (res.status === 404) return new Error(`${repoId} (revision ${revision}) has no ${file} (404 from ${url})`);
  if (res.status === 401 || res.status === 403) {
    const hint = ctx.token
      ? 'the token in HF_TOKEN was refused or lacks access to it'
      : 'it is private or gated (or does not exist): set HF_TOKEN to an access token';
    return new Error(`access to ${repoId} denied (${res.status} from ${url}): ${hint}`);
  }
  return new Error(`HTTP ${res.status} ${res.statusText} from ${url}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Cache files

function normalizeEtag(raw: string | null): string | undefined {
  if (!raw) return undefined;
  const etag = raw.replace(/^W\//, '').replace(/^"|"$/g, '');
  // The etag becomes a file name: accept only what cannot escape blobs/.
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(etag) ? etag : undefined;
}

/** 64 hex = sha256 of the content (LFS files); 40 hex = git blob sha1. Other etags are not checkable. */
async function matchesEtag(path: string, etag: string, size: number): Promise<boolean> {
  let hash;
  if (/^[0-9a-f]{64}$/.test(etag)) hash = createHash('sha256');
  else if (/^[0-9a-f]{40}$/.test(etag)) hash = createHash('sha1').update(`blob ${size}\0`);
  else return true;
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex') === etag;
}

async function linkBlob(blob: string, pointer: string): Promise<void> {
  await unlink(pointer).catch(() => {}); // a dangling link left by a deleted blob
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    // No symlinks (Windows without developer mode): a copy, as huggingface_hub's degraded mode.
    await copyFile(blob, pointer);
  }
}

async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (!isSafeRelativePath(revision)) return;
  const ref = join(repoDir, 'refs', revision);
  await mkdir(dirname(ref), { recursive: true });
  await writeFileAtomic(ref, commit);
}

function folderForRevision(revision: string): string {
  return revision.split('/').join('--');
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function fileSize(p: string): Promise<number> {
  return stat(p).then((s) => s.size, () => 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Environment

function hfHome(env: Record<string, string | undefined>): string {
  if (env.HF_HOME) return expandHome(env.HF_HOME);
  return join(env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'huggingface');
}

function readToken(env: Record<string, string | undefined>): string | undefined {
  const fromEnv = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  if (fromEnv) return fromEnv.trim();
  const path = env.HF_TOKEN_PATH ? expandHome(env.HF_TOKEN_PATH) : join(hfHome(env), 'token');
  try {
    const text = readFileSync(path, 'utf8').trim();
    return text || undefined;
  } catch {
    return undefined;
  }
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && TRUE_VALUES.has(v.trim().toUpperCase());
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

function looksLikePath(s: string): boolean {
  return s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2;
}

// ---------------------------------------------------------------------------------------------------------------

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
