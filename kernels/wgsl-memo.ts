// WGSL generators memoized by their arguments. The runtime caches pipelines by the source string: a generator
// that builds its source anew for every dispatch costs the building (up to 0.15 ms for an attention kernel),
// then hashing and comparing kilobytes in that cache, where a string seen before is found by its kept hash.
// Measured on t5-small greedy decoding: the cross-attention's source alone was rebuilt 6 times a step.
import { gpu } from '../engine/gpu.ts';

/**
 * `gen` with its result kept per (device, arguments): each wrapped generator has its own cache, per device (a
 * generator may read its limits, e.g. the subgroup size), then per JSON of the arguments. The arguments must be
 * plain data that JSON writes out whole, and `gen` must depend on nothing else that changes (or pass it as an
 * argument).
 */
export function memoWgsl<A extends unknown[]>(gen: (...args: A) => string): (...args: A) => string {
  const byDevice = new WeakMap<object, Map<string, string>>();
  return (...args: A): string => {
    const device = gpu();
    let cache = byDevice.get(device);
    if (!cache) byDevice.set(device, (cache = new Map()));
    const key = JSON.stringify(args);
    let code = cache.get(key);
    if (code === undefined) cache.set(key, (code = gen(...args)));
    return code;
  };
}
