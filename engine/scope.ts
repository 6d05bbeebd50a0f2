// `tidy`: everything created inside the function is freed on return, except what it returns (as tfjs's
// `tf.tidy`). Synchronous only: a scope cannot know when an awaited function is done with its tensors.

export interface Disposable {
  dispose(): void;
  readonly kept: boolean;
}

const stack: Set<Disposable>[] = [];

export function track(t: Disposable): void {
  stack[stack.length - 1]?.add(t);
}

export function untrack(t: Disposable): void {
  for (const s of stack) s.delete(t);
}

function collect(value: unknown, into: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if (into.has(value)) return;
  into.add(value);
  if (Array.isArray(value)) for (const v of value) collect(v, into, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, into, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collect(v, into, depth + 1);
  }
}

export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new TypeError('tidy() takes a synchronous function; await outside it and tidy the synchronous parts');
  }
  const returned = new Set<unknown>();
  collect(result, returned);
  const parent = stack[stack.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
  return result;
}
