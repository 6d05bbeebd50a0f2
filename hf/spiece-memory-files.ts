// sentencepiece-js loads a model only through `fs.readFileSync(path)` (its Emscripten module is not exported).
// A web page has no files, so the browser bundle resolves that package's `fs` to this module: the tokenizer
// registers the model's bytes under its name just before loading, and readFileSync hands them over.
const files = new Map<string, Uint8Array>();

export function registerSpieceFile(name: string, bytes: Uint8Array): void {
  files.clear(); // one model at a time: the bytes are needed only during the load that follows
  files.set(name, bytes);
}

export function readFileSync(name: string): Uint8Array {
  const bytes = files.get(name);
  if (!bytes) throw new Error(`sentencepiece: no model registered under ${name}`);
  return bytes;
}
