// PyTorch weight files (`pytorch_model.bin`, torch.save's zip format, PyTorch >= 1.6) read without Python and
// without running a pickle: what torch.load(weights_only=True) allows, written out. The zip's entries are stored
// uncompressed: `<name>/data.pkl` (a pickle of the state dict) and `<name>/data/<key>` (each storage's raw bytes).
// The pickle is run on a small machine that knows only the opcodes a state dict uses and only these globals:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, and torch's typed storages.
// Anything else (a class, a function, os.system) is refused by name: the file is then not a plain weights file.
// Tensors come out as float32 (F32, F16, BF16, F64 storages; views with any offset and strides).
import { DTYPE_SIZE, toFloat32, type Dtype, type SafeTensor } from './safetensors.ts';

const STORAGE_DTYPES: Readonly<Record<string, Dtype>> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const FLOAT_DTYPES = new Set<Dtype>(['F32', 'F16', 'BF16', 'F64']);

/** Whether the bytes are a zip (torch.save's format since PyTorch 1.6) rather than the older raw-pickle format. */
export function isTorchZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

// ---------------------------------------------------------------------------------------------------------------
// zip: the central directory, zip64 included (files over 4 GiB); stored entries only

interface ZipEntry {
  name: string;
  /** absolute offset of the entry's bytes and their length */
  start: number;
  size: number;
}

function readZip(bytes: Uint8Array, fileName: string): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (what: string): never => {
    throw new Error(`${fileName}: not a readable PyTorch zip (${what})`);
  };
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => Number(view.getBigUint64(at, true));
  // end of central directory: 22 bytes plus a comment of at most 65,535
  let eocd = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 0xffff); at--) {
    if (u32(at) === 0x06054b50) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) fail('no end of central directory: a truncated download?');
  let count = u16(eocd + 10);
  let cdOffset = u32(eocd + 16);
  if ((count === 0xffff || cdOffset === 0xffffffff) && eocd >= 20 && u32(eocd - 20) === 0x07064b50) {
    const rec = u64(eocd - 20 + 8);
    if (u32(rec) !== 0x06064b50) fail('bad zip64 end record');
    count = u64(rec + 32);
    cdOffset = u64(rec + 48);
  }
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > bytes.length || u32(at) !== 0x02014b50) fail(`central directory entry ${i} is damaged`);
    const method = u16(at + 10);
    let size = u32(at + 24);
    const nameLen = u16(at + 28);
    const extraLen = u16(at + 30);
    const commentLen = u16(at + 32);
    let local = u32(at + 42);
    const name = decoder.decode(bytes.subarray(at + 46, at + 46 + nameLen));
    // zip64 extended information: the 64-bit values of the fields that hold 0xffffffff, in this order
    let x = at + 46 + nameLen;
    const extraEnd = x + extraLen;
    while (x + 4 <= extraEnd) {
      const id = u16(x);
      const len = u16(x + 2);
      if (id === 0x0001) {
        let p = x + 4;
        if (size === 0xffffffff) { size = u64(p); p += 8; }
        if (u32(at + 20) === 0xffffffff) p += 8;
        if (local === 0xffffffff) local = u64(p);
      }
      x += 4 + len;
    }
    if (method !== 0) fail(`entry ${name} is compressed (method ${method}); torch.save stores entries uncompressed`);
    if (u32(local) !== 0x04034b50) fail(`entry ${name} has no local header`);
    const start = local + 30 + u16(local + 26) + u16(local + 28);
    if (start + size > bytes.length) fail(`entry ${name} runs past the end of the file: a truncated download?`);
    entries.set(name, { name, start, size });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------------------------
// the restricted unpickler

interface StorageRef { kind: 'storage'; dtype: Dtype; key: string; numel: number }
interface TensorRef { kind: 'tensor'; storage: StorageRef; offset: number; size: number[]; stride: number[] }
interface Global { kind: 'global'; name: string }
class PyDict { readonly items = new Map<unknown, unknown>(); }
const MARK = Symbol('mark');

/** What a REDUCE of `fn` with `args` builds, for the globals a state dict uses. */
function reduce(fn: unknown, args: unknown, where: string): unknown {
  const name = (fn as Global)?.kind === 'global' ? (fn as Global).name : '?';
  const a = args as unknown[];
  switch (name) {
    case 'collections.OrderedDict':
      return new PyDict();
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride] = a as [StorageRef, number, number[], number[]];
      if ((storage as StorageRef)?.kind !== 'storage') throw new Error(`${where}: _rebuild_tensor_v2 without a storage`);
      return { kind: 'tensor', storage, offset, size: [...size], stride: [...stride] } satisfies TensorRef;
    }
    case 'torch._utils._rebuild_parameter':
      return a[0];
    default:
      throw new Error(`${where}: the pickle calls ${name}, which a weights file does not need; not running it`);
  }
}

const ALLOWED_GLOBALS = new Set(['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter']);

function lookupGlobal(module: string, name: string, where: string): Global {
  const full = `${module}.${name}`;
  if (ALLOWED_GLOBALS.has(full) || (module === 'torch' && name in STORAGE_DTYPES)) return { kind: 'global', name: full };
  throw new Error(`${where}: the pickle refers to ${full}, which a weights file does not need; not loading it (torch.load(weights_only=True) refuses it too)`);
}

function persistentLoad(pid: unknown, where: string): StorageRef {
  const t = pid as unknown[];
  const type = t?.[1] as Global | undefined;
  const dtype = type?.kind === 'global' ? STORAGE_DTYPES[type.name.replace(/^torch\./, '')] : undefined;
  if (!Array.isArray(t) || t[0] !== 'storage' || !dtype) throw new Error(`${where}: unexpected persistent id ${JSON.stringify(t?.[0])}`);
  return { kind: 'storage', dtype, key: String(t[2]), numel: Number(t[4]) };
}

/** Runs the pickle's opcodes (protocols 2-5, the subset state dicts use) and returns the top object. */
function unpickle(data: Uint8Array, where: string): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const decoder = new TextDecoder();
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  const popMark = (): unknown[] => {
    let i = stack.length - 1;
    while (i >= 0 && stack[i] !== MARK) i--;
    if (i < 0) throw new Error(`${where}: pickle has no MARK`);
    const items = stack.splice(i + 1);
    stack.pop();
    return items;
  };
  const str = (n: number): string => {
    const s = decoder.decode(data.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    const s = decoder.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const setItems = (target: unknown, kv: unknown[]): void => {
    if (!(target instanceof PyDict)) throw new Error(`${where}: SETITEMS on something not a dict`);
    for (let i = 0; i + 1 < kv.length; i += 2) target.items.set(kv[i], kv[i + 1]);
  };
  while (pos < data.length) {
    const op = data[pos++]!;
    switch (op) {
      case 0x80: pos++; break; // PROTO
      case 0x95: pos += 8; break; // FRAME
      case 0x2e: return stack.pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new PyDict()); break; // EMPTY_DICT
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(data[pos++]); break; // BININT1
      case 0x4d: stack.push(view.getUint16(pos, true)); pos += 2; break; // BININT2
      case 0x4a: stack.push(view.getInt32(pos, true)); pos += 4; break; // BININT
      case 0x8a: { // LONG1
        const n = data[pos++]!;
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[pos + i]!);
        if (n > 0 && data[pos + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        stack.push(Number(v));
        break;
      }
      case 0x47: stack.push(view.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x58: { const n = view.getUint32(pos, true); pos += 4; stack.push(str(n)); break; } // BINUNICODE
      case 0x8c: { const n = data[pos++]!; stack.push(str(n)); break; } // SHORT_BINUNICODE
      case 0x54: { const n = view.getInt32(pos, true); pos += 4; stack.push(str(n)); break; } // BINSTRING
      case 0x55: { const n = data[pos++]!; stack.push(str(n)); break; } // SHORT_BINSTRING
      case 0x42: { const n = view.getUint32(pos, true); pos += 4; stack.push(data.slice(pos, pos + n)); pos += n; break; } // BINBYTES
      case 0x43: { const n = data[pos++]!; stack.push(data.slice(pos, pos + n)); pos += n; break; } // SHORT_BINBYTES
      case 0x71: memo.set(data[pos++]!, stack.at(-1)); break; // BINPUT
      case 0x72: memo.set(view.getUint32(pos, true), stack.at(-1)); pos += 4; break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack.at(-1)); break; // MEMOIZE
      case 0x68: stack.push(memo.get(data[pos++]!)); break; // BINGET
      case 0x6a: stack.push(memo.get(view.getUint32(pos, true))); pos += 4; break; // LONG_BINGET
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([stack.pop()]); break; // TUPLE1
      case 0x86: { const b = stack.pop(); const a = stack.pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = stack.pop(); const b = stack.pop(); const a = stack.pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { const v = stack.pop(); (stack.at(-1) as unknown[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); (stack.at(-1) as unknown[]).push(...items); break; } // APPENDS
      case 0x64: { const d = new PyDict(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x73: { const v = stack.pop(); const k = stack.pop(); setItems(stack.at(-1), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(stack.at(-1), kv); break; } // SETITEMS
      case 0x63: { const module = line(); const name = line(); stack.push(lookupGlobal(module, name, where)); break; } // GLOBAL
      case 0x93: { const name = stack.pop() as string; const module = stack.pop() as string; stack.push(lookupGlobal(module, name, where)); break; } // STACK_GLOBAL
      case 0x51: stack.push(persistentLoad(stack.pop(), where)); break; // BINPERSID
      case 0x52: { const args = stack.pop(); const fn = stack.pop(); stack.push(reduce(fn, args, where)); break; } // REDUCE
      case 0x62: stack.pop(); break; // BUILD: a state (an OrderedDict's _metadata) we do not need
      case 0x30: stack.pop(); break; // POP
      case 0x32: stack.push(stack.at(-1)); break; // DUP
      case 0x31: popMark(); break; // POP_MARK
      default:
        throw new Error(`${where}: pickle opcode 0x${op.toString(16)} at byte ${pos - 1} is not one a state dict uses; not loading it`);
    }
  }
  throw new Error(`${where}: the pickle ends without STOP: a truncated file?`);
}

// ---------------------------------------------------------------------------------------------------------------

/** A tensor's elements from its storage bytes: `size` and `stride` (in elements) from `offset`, as float32. A
 * tensor that is its whole storage (every weight of a state dict) is the storage's own array, not a second copy;
 * tensors sharing that storage (tied embeddings) share the array. */
function materialize(t: TensorRef, storage: Float32Array): Float32Array {
  const n = t.size.reduce((a, b) => a * b, 1);
  const contiguous = t.stride.every((s, i) => s === t.size.slice(i + 1).reduce((a, b) => a * b, 1) || t.size[i] === 1);
  if (contiguous && t.offset === 0 && n === storage.length) return storage;
  if (contiguous) return storage.slice(t.offset, t.offset + n);
  const out = new Float32Array(n);
  const idx = new Array<number>(t.size.length).fill(0);
  for (let i = 0; i < n; i++) {
    let at = t.offset;
    for (let d = 0; d < idx.length; d++) at += idx[d]! * t.stride[d]!;
    out[i] = storage[at]!;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d]! < t.size[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** The zip's entries, its data.pkl run, and the prefix of its records. */
function openTorchZip(bytes: Uint8Array, fileName: string): { entries: Map<string, ZipEntry>; prefix: string; top: unknown } {
  if (!isTorchZip(bytes)) {
    throw new Error(`${fileName}: a PyTorch file in the format before PyTorch 1.6 (not a zip), which is not read here`);
  }
  const entries = readZip(bytes, fileName);
  const pkl = [...entries.values()].find((e) => e.name.endsWith('/data.pkl') && e.name.split('/').length === 2);
  if (!pkl) throw new Error(`${fileName}: no data.pkl in the zip: not a torch.save file`);
  const prefix = pkl.name.slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(bytes.subarray(order.start, order.start + order.size)) !== 'little') {
    throw new Error(`${fileName}: big-endian storages are not supported`);
  }
  return { entries, prefix, top: unpickle(bytes.subarray(pkl.start, pkl.start + pkl.size), fileName) };
}

/** The float32 elements of a floating-point tensor of the zip (its storage read once per `storages`). */
function readTensor(
  t: TensorRef, name: string, bytes: Uint8Array, entries: Map<string, ZipEntry>, prefix: string, storages: Map<string, Float32Array>, fileName: string,
): SafeTensor {
  let storage = storages.get(t.storage.key);
  if (!storage) {
    const e = entries.get(`${prefix}data/${t.storage.key}`);
    if (!e) throw new Error(`${fileName}: tensor '${name}' needs storage ${t.storage.key}, which the zip lacks`);
    const want = t.storage.numel * DTYPE_SIZE[t.storage.dtype];
    if (e.size < want) throw new Error(`${fileName}: storage ${t.storage.key} of '${name}' has ${e.size} bytes, ${want} expected`);
    storage = toFloat32(t.storage.dtype, bytes.slice(e.start, e.start + want));
    storages.set(t.storage.key, storage);
  }
  const n = t.size.reduce((a, b) => a * b, 1);
  const last = t.offset + t.size.reduce((a, s, i) => a + (s - 1) * t.stride[i]!, 0);
  if (n > 0 && (t.offset < 0 || last >= storage.length)) throw new Error(`${fileName}: tensor '${name}' reaches past its storage`);
  return { dtype: t.storage.dtype, shape: [...t.size], data: materialize(t, storage) };
}

/**
 * Any object a torch.save zip holds (an optimizer's or scheduler's state_dict): dicts as Maps, lists and tuples
 * as arrays, floating-point tensors as SafeTensors (float32). The same restricted unpickler as the state dicts'.
 */
export function parseTorchObject(bytes: Uint8Array, fileName: string): unknown {
  const { entries, prefix, top } = openTorchZip(bytes, fileName);
  const storages = new Map<string, Float32Array>();
  const convert = (v: unknown, path: string): unknown => {
    if (v instanceof PyDict) return new Map([...v.items].map(([k, x]) => [k, convert(x, `${path}.${String(k)}`)]));
    if (Array.isArray(v)) return v.map((x, i) => convert(x, `${path}[${i}]`));
    if ((v as TensorRef)?.kind === 'tensor') {
      const t = v as TensorRef;
      if (!FLOAT_DTYPES.has(t.storage.dtype)) throw new Error(`${fileName}: ${path} is a ${t.storage.dtype} tensor; only floating-point ones are read`);
      return readTensor(t, path, bytes, entries, prefix, storages, fileName);
    }
    return v;
  };
  return convert(top, 'object');
}

/** The state dict of a torch.save zip: every floating-point tensor as float32, under its name. */
export function parseTorchCheckpoint(bytes: Uint8Array, fileName: string): Map<string, SafeTensor> {
  const { entries, prefix, top } = openTorchZip(bytes, fileName);
  // HF saves the state dict itself; some training scripts wrap it as {"state_dict": ...} or {"model": ...}
  let dict = top instanceof PyDict ? top : null;
  for (const key of ['state_dict', 'model']) if (dict && !hasTensors(dict) && dict.items.get(key) instanceof PyDict) dict = dict.items.get(key) as PyDict;
  if (!dict) throw new Error(`${fileName}: the pickle holds no dictionary of tensors`);
  const storages = new Map<string, Float32Array>();
  const out = new Map<string, SafeTensor>();
  for (const [name, value] of dict.items) {
    const t = value as TensorRef;
    if (typeof name !== 'string' || t?.kind !== 'tensor') continue;
    if (!FLOAT_DTYPES.has(t.storage.dtype)) continue; // integer buffers (position ids): not weights
    out.set(name, readTensor(t, name, bytes, entries, prefix, storages, fileName));
  }
  return out;
}

function hasTensors(d: PyDict): boolean {
  for (const v of d.items.values()) if ((v as TensorRef)?.kind === 'tensor') return true;
  return false;
}
