// torch.save's file format written without Python: a zip (util/zip-store.ts: entries stored, data records
// aligned to 64 bytes as torch aligns them) of `archive/data.pkl`, a protocol-2 pickle of the object, and
// `archive/data/<key>`, one float32 storage per tensor. The pickle uses only what torch.load(weights_only=True) accepts: dicts, lists,
// tuples, numbers, strings, booleans, None, and tensors rebuilt by torch._utils._rebuild_tensor_v2 from a
// FloatStorage. For HF Trainer's optimizer.pt and scheduler.pt (train/hf-trainer-state.ts); torch-checkpoint.ts
// reads the format.
import { concatBytes, zipStoreParts } from '../util/zip-store.ts';

/** A float32 tensor to save: its elements in row-major order and its shape ([] for a 0-d tensor). */
export interface TorchTensor {
  kind: 'tensor';
  data: Float32Array;
  shape: number[];
}
/** Python's tuple (a JS array is a list). */
export interface PyTuple {
  kind: 'tuple';
  items: PyValue[];
}
export type PyValue = null | boolean | number | string | PyFloat | PyValue[] | PyTuple | TorchTensor | Map<string | number, PyValue>;

export const pyTuple = (...items: PyValue[]): PyTuple => ({ kind: 'tuple', items });
export const torchTensor = (data: Float32Array, shape: number[]): TorchTensor => ({ kind: 'tensor', data, shape });
/** A Python float for a value that is integral in JS (torch's 0-d step tensors are float32; an lr of 1 is 1.0). */
export class PyFloat {
  constructor(readonly value: number) {}
}

const ALIGN = 64;
const enc = new TextEncoder();

/** The pickle's bytes as they are written. */
class Bytes {
  private chunks: Uint8Array[] = [];
  push(...b: number[]): void {
    this.raw(Uint8Array.from(b));
  }
  raw(b: Uint8Array): void {
    this.chunks.push(b);
  }
  u16(v: number): void {
    this.push(v & 0xff, (v >>> 8) & 0xff);
  }
  u32(v: number): void {
    this.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  concat(): Uint8Array {
    return concatBytes(this.chunks);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// pickle, protocol 2

function pickle(obj: PyValue, storages: TorchTensor[]): Uint8Array {
  const out = new Bytes();
  const str = (s: string): void => {
    const b = enc.encode(s);
    out.push(0x58); // BINUNICODE
    out.u32(b.length);
    out.raw(b);
  };
  const global = (module: string, name: string): void => {
    out.push(0x63); // GLOBAL
    out.raw(enc.encode(`${module}\n${name}\n`));
  };
  const int = (v: number): void => {
    if (v >= 0 && v < 256) out.push(0x4b, v); // BININT1
    else if (v >= 0 && v < 65536) { out.push(0x4d); out.u16(v); } // BININT2
    else if (v >= -(2 ** 31) && v < 2 ** 31) { out.push(0x4a); out.u32(v >>> 0); } // BININT
    else {
      // LONG1: little-endian two's complement
      let x = BigInt(v);
      const bytes: number[] = [];
      do {
        bytes.push(Number(x & 0xffn));
        x >>= 8n;
      } while (!(x === 0n && (bytes.at(-1)! & 0x80) === 0) && !(x === -1n && (bytes.at(-1)! & 0x80) !== 0));
      out.push(0x8a, bytes.length, ...bytes);
    }
  };
  const float = (v: number): void => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    out.push(0x47); // BINFLOAT, big-endian
    out.raw(b);
  };
  const tuple = (items: Array<() => void>): void => {
    if (items.length === 0) return void out.push(0x29); // EMPTY_TUPLE
    out.push(0x28); // MARK
    for (const write of items) write();
    out.push(0x74); // TUPLE
  };
  const value = (v: PyValue): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (v instanceof PyFloat) float(v.value);
    else if (typeof v === 'number') (Number.isInteger(v) ? int(v) : float(v));
    else if (typeof v === 'string') str(v);
    else if (Array.isArray(v)) {
      out.push(0x5d); // EMPTY_LIST
      if (v.length) {
        out.push(0x28);
        for (const x of v) value(x);
        out.push(0x65); // APPENDS
      }
    } else if (v instanceof Map) {
      out.push(0x7d); // EMPTY_DICT
      if (v.size) {
        out.push(0x28);
        for (const [k, x] of v) {
          value(k);
          value(x);
        }
        out.push(0x75); // SETITEMS
      }
    } else if (v.kind === 'tuple') tuple(v.items.map((x) => () => value(x)));
    else {
      // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
      const key = storages.length;
      storages.push(v);
      const strides = v.shape.map((_, i) => v.shape.slice(i + 1).reduce((a, b) => a * b, 1));
      global('torch._utils', '_rebuild_tensor_v2');
      tuple([
        () => {
          tuple([() => str('storage'), () => global('torch', 'FloatStorage'), () => str(String(key)), () => str('cpu'), () => int(v.data.length)]);
          out.push(0x51); // BINPERSID
        },
        () => int(0),
        () => tuple(v.shape.map((d) => () => int(d))),
        () => tuple(strides.map((s) => () => int(s))),
        () => out.push(0x89),
        () => {
          global('collections', 'OrderedDict');
          out.push(0x29, 0x52); // EMPTY_TUPLE, REDUCE
        },
      ]);
      out.push(0x52); // REDUCE
    }
  };
  out.push(0x80, 2); // PROTO 2
  value(obj);
  out.push(0x2e); // STOP
  return out.concat();
}

/** The bytes torch.save(obj) would write, as one array (small objects, tests). */
export function torchSaveBytes(obj: PyValue): Uint8Array {
  return concatBytes(torchSaveParts(obj));
}

/** torch.save(obj)'s bytes as pieces to write one after the other (archive name `archive`, as torch names it for a
 * file): tensor data is not copied, so a file of gigabytes needs no buffer of its size. At most 4 GiB (no zip64). */
export function torchSaveParts(obj: PyValue): Uint8Array[] {
  const storages: TorchTensor[] = [];
  const pkl = pickle(obj, storages);
  const entries = new Map<string, Uint8Array>([
    ['archive/data.pkl', pkl],
    ['archive/.format_version', enc.encode('1')],
    ['archive/.storage_alignment', enc.encode(String(ALIGN))],
    ['archive/byteorder', enc.encode('little')],
    ...storages.map((t, i): [string, Uint8Array] => [`archive/data/${i}`, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)]),
    ['archive/version', enc.encode('3\n')],
  ]);
  const parts = zipStoreParts(entries, { align: ALIGN });
  if (parts.reduce((n, p) => n + p.length, 0) > 0xffffffff || entries.size > 0xffff) {
    throw new RangeError('torch-save: over 4 GiB or 65,535 entries needs zip64, which is not written here');
  }
  return parts;
}
