// A web page's platform: navigator.gpu, no settings (a page has no environment), and the measured-results cache
// in memory for the page's lifetime (a reload measures again: autotuning starts from the heuristic choice).
import type { Platform } from './platform.ts';

const cache = new Map<string, string>();

export const browserPlatform: Platform = {
  name: 'browser',
  gpu(): GPU {
    const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    if (!gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Firefox, over https or localhost');
    return gpu;
  },
  choosesBackends: false,
  setting: () => undefined,
  readCache: (name) => cache.get(name) ?? null,
  async writeCache(name, text) {
    cache.set(name, text);
  },
  cacheLocation: (name) => `memory:${name}`,
  gpuWait: (start) => start(),
};
