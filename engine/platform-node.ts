// Node's platform: Dawn's GPU objects from the `webgpu` package, settings from the environment, and the
// measured-results cache as files in ${T5_WEBGPU_CACHE_DIR:-~/.cache/t5-webgpu}, written atomically.
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { writeFileAtomic } from '../util/atomic-write.ts';
import type { Platform } from './platform.ts';

Object.assign(globalThis, globals);

// Dawn's GPU object must outlive every submit: once it is garbage-collected, the next large dispatch
// crashes the process (futex EINVAL or a segfault). Every `create()` result is kept here for good.
const keepAlive: GPU[] = [];

const cacheDir = (): string => process.env.T5_WEBGPU_CACHE_DIR || join(homedir(), '.cache', 't5-webgpu');

export const nodePlatform: Platform = {
  name: 'node',
  gpu(flags) {
    process.env.XDG_RUNTIME_DIR ??= '/tmp'; // lavapipe refuses to start without it
    const gpu = create([...flags]);
    keepAlive.push(gpu);
    return gpu;
  },
  choosesBackends: true,
  setting: (name) => process.env[name],
  readCache(name) {
    try {
      return readFileSync(join(cacheDir(), name), 'utf8');
    } catch {
      return null;
    }
  },
  async writeCache(name, text) {
    mkdirSync(cacheDir(), { recursive: true });
    await writeFileAtomic(join(cacheDir(), name), text);
  },
  cacheLocation: (name) => join(cacheDir(), name),
  hostCpu: cpus()[0]?.model.trim() || undefined,
};
