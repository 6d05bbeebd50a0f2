// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}, then the
// data section. The reader validates the header as strictly as the reference Rust crate before it trusts any
// number in it (offsets sorted, contiguous from 0, ending exactly at the end of the file; byte length equal to
// product(shape) * dtype size), so a corrupt or hostile file fails with a message naming the file and the tensor
// instead of reading out of bounds or allocating gigabytes. Tensors are read one by one by file position, so a
// 900 MB checkpoint never has to sit in one Buffer.
//
// Dtypes: F32, F16, BF16 and F64 are returned as Float32Array (F64 rounded). Integer, bool and 8-bit float
// tensors are refused by read()/readSafetensors() with a clear error; SafetensorsFile.readRaw() still gives their
// little-endian bytes for callers that want them. A model folder's single or sharded weights: safetensors-folder.ts.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { writeFileAtomic } from '../util/atomic-write.ts';

export type Dtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'C64' | 'I64' | 'U64';

export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, C64: 8, I64: 8, U64: 8,
};

/** The reference crate's limit; a real header (t5-11b) is a few hundred KB. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  fileName: string;
  /** Length of the JSON header (N). */
  headerBytes: number;
  /** Absolute file position of the data section: 8 + N. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In data-offset order. */
  tensors: Map<string, TensorInfo>;
}

export interface SafeTensor {
  /** The dtype stored in the file; data is always float32. */
  dtype: Dtype;
  shape: number[];
  data: Float32Array;
}

export interface TensorToWrite {
  shape: readonly number[];
  data: Float32Array;
}

// Byte order of this host, asked of a typed array rather than node:os so that a web page can read checkpoints too.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------------------------
// Header

/**
 * Validate and parse a safetensors header. `source` is either the file's bytes (at least the first 8 + N) or an
 * open file descriptor; `fileSize` is the size of the whole file; `fileName` goes into every error message.
 */
export function parseSafetensorsHeader(
  source: Uint8Array | number,
  fileSize: number,
  fileName: string,
): SafetensorsHeader {
  const fail = (what: string): never => {
    throw new Error(`${fileName}: ${what}`);
  };
  const readAt = (position: number, length: number): Uint8Array => {
    if (typeof source !== 'number') {
      if (position + length > source.byteLength) {
        fail(`only ${source.byteLength} bytes given, the header needs ${position + length}`);
      }
      return source.subarray(position, position + length);
    }
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(source, out, done, length - done, position + done);
      if (n === 0) fail(`file ended after ${position + done} bytes while reading the header`);
      done += n;
    }
    return out;
  };

  if (!Number.isSafeInteger(fileSize) || fileSize < 8) {
    fail(`file is ${fileSize} bytes, too small to be safetensors (the header length alone takes 8)`);
  }
  const lenBytes = readAt(0, 8);
  const n64 = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt, or not a safetensors file)`);
  }
  const n = Number(n64);
  if (8 + n > fileSize) fail(`header length ${n} runs past the end of the ${fileSize}-byte file (truncated or corrupt)`);

  const headerBytes = readAt(8, n);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail('header does not start with "{" (corrupt, or not a safetensors file)');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json)) return fail('header is not a JSON object');

  const dataSize = fileSize - 8 - n;
  const metadata: Record<string, string> = {};
  const entries: [string, TensorInfo][] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (value === null) continue;
      if (!isPlainObject(value)) fail('__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(value as object)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] is ${describe(v)}, must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    entries.push([name, parseTensorInfo(name, value, dataSize, fail)]);
  }

  // As the reference reader: sorted by offsets, the tensors must tile [0, dataSize) exactly.
  entries.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let end = 0;
  let prev = '';
  for (const [name, info] of entries) {
    const [s, e] = info.dataOffsets;
    if (s < end) fail(`tensor "${name}": data_offsets [${s}, ${e}] overlap tensor "${prev}" (which ends at ${end})`);
    if (s > end) {
      fail(`tensor "${name}": data_offsets start at ${s}, leaving ${s - end} unused bytes after ${prev ? `tensor "${prev}"` : 'the header'} (tensors must cover the data section contiguously)`);
    }
    end = e;
    prev = name;
  }
  if (end !== dataSize) {
    fail(`tensors cover ${end} bytes but the data section holds ${dataSize} (truncated, padded or corrupt file)`);
  }
  return { fileName, headerBytes: n, dataStart: 8 + n, metadata, tensors: new Map(entries) };
}

function parseTensorInfo(
  name: string,
  value: unknown,
  dataSize: number,
  fail: (what: string) => never,
): TensorInfo {
  const bad = (what: string): never => fail(`tensor "${name}": ${what}`);
  if (!isPlainObject(value)) return bad(`entry is ${describe(value)}, expected {dtype, shape, data_offsets}`);
  const v = value as Record<string, unknown>;
  const dtype = v.dtype;
  if (typeof dtype !== 'string') return bad(`dtype is ${describe(dtype)}, expected a string`);
  if (!Object.hasOwn(DTYPE_SIZE, dtype)) {
    return bad(`unknown or unsupported dtype "${dtype}" (known: ${Object.keys(DTYPE_SIZE).join(', ')})`);
  }
  const shape = v.shape;
  if (!Array.isArray(shape)) return bad(`shape is ${describe(shape)}, expected a list of non-negative integers`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || (d as number) < 0) {
      bad(`shape ${JSON.stringify(shape)} has dimension ${JSON.stringify(d)}, expected non-negative integers`);
    }
  }
  const offsets = v.data_offsets;
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
  ) {
    return bad(`data_offsets ${JSON.stringify(offsets)} must be [begin, end], two non-negative integers`);
  }
  const [s, e] = offsets as [number, number];
  if (e < s) bad(`data_offsets [${s}, ${e}] end before they begin`);
  if (e > dataSize) bad(`data_offsets [${s}, ${e}] run past the end of the ${dataSize}-byte data section`);
  // Past 2^53 the product is inexact, but it is then far above e - s (at most the file size) anyway.
  const count = (shape as number[]).reduce((a, d) => a * d, 1);
  const need = count * DTYPE_SIZE[dtype as Dtype];
  if (need !== e - s) {
    bad(`shape ${JSON.stringify(shape)} of ${dtype} needs ${need} bytes but data_offsets [${s}, ${e}] hold ${e - s}`);
  }
  return { dtype: dtype as Dtype, shape: [...(shape as number[])], dataOffsets: [s, e] };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Parse only the header of a file on disk (reads 8 + N bytes). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    return parseSafetensorsHeader(fd, fstatSync(fd).size, path);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** A safetensors file opened for reading tensors one at a time. Call close() when done. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly fh: Awaited<ReturnType<typeof open>>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      const header = parseSafetensorsHeader(fh.fd, size, path);
      return new SafetensorsFile(path, header, fh);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) throw new Error(`${this.path}: no tensor named "${name}"`);
    return info;
  }

  /** The tensor's bytes as stored (little-endian), in a fresh 8-byte-aligned buffer. */
  async readRaw(name: string): Promise<Uint8Array> {
    const [s, e] = this.info(name).dataOffsets;
    const out = new Uint8Array(new ArrayBuffer(e - s));
    let done = 0;
    while (done < out.byteLength) {
      const { bytesRead } = await this.fh.read(out, done, out.byteLength - done, this.header.dataStart + s + done);
      if (bytesRead === 0) throw new Error(`${this.path}: tensor "${name}": file shrank while reading`);
      done += bytesRead;
    }
    return out;
  }

  async read(name: string): Promise<SafeTensor> {
    const info = this.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new Error(`${this.path}: tensor "${name}" has dtype ${info.dtype}; only F32, F16, BF16 and F64 can be loaded as float32`);
    }
    const data = toFloat32(info.dtype, await this.readRaw(name));
    return { dtype: info.dtype, shape: [...info.shape], data };
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export const openSafetensors = (path: string): Promise<SafetensorsFile> => SafetensorsFile.open(path);

/** Read every tensor of one file (or only `names`), converted to float32. */
export async function readSafetensors(
  path: string,
  options: { names?: Iterable<string> } = {},
): Promise<Map<string, SafeTensor>> {
  const file = await SafetensorsFile.open(path);
  try {
    const out = new Map<string, SafeTensor>();
    for (const name of options.names ?? file.names()) out.set(name, await file.read(name));
    return out;
  } finally {
    await file.close();
  }
}

const FLOAT_DTYPES = new Set<Dtype>(['F32', 'F16', 'BF16', 'F64']);

/** Every tensor of a whole safetensors file held in memory (a web page's fetch), converted to float32. */
export function parseSafetensorsBytes(bytes: Uint8Array, fileName: string): Map<string, SafeTensor> {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, fileName);
  const out = new Map<string, SafeTensor>();
  for (const [name, info] of header.tensors) {
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new Error(`${fileName}: tensor "${name}" has dtype ${info.dtype}; only F32, F16, BF16 and F64 can be loaded as float32`);
    }
    const [s, e] = info.dataOffsets;
    // slice: a fresh 8-byte-aligned copy, as toFloat32 wants, and no view that pins the whole file
    const raw = bytes.slice(header.dataStart + s, header.dataStart + e);
    out.set(name, { dtype: info.dtype, shape: [...info.shape], data: toFloat32(info.dtype, raw) });
  }
  return out;
}

/**
 * Little-endian F32/F16/BF16/F64 bytes to a Float32Array. `bytes` must start 8-byte aligned in its buffer (as
 * readRaw's are); F32 on a little-endian host is then a view, not a copy.
 */
export function toFloat32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteLength % size !== 0) throw new Error(`${bytes.byteLength} bytes is not a whole number of ${dtype}`);
  if (bytes.byteOffset % 8 !== 0) bytes = bytes.slice();
  if (!LITTLE_ENDIAN_HOST && size > 1) bytes = swapBytes(bytes.slice(), size);
  const count = bytes.byteLength / size;
  switch (dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer, bytes.byteOffset, count);
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, count));
    case 'F16': {
      const table = f16Table();
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]];
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of a float32: shifting the bits up is exact, NaN payloads included.
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    default:
      throw new Error(`cannot convert ${dtype} to float32`);
  }
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function bf16BitsToNumber(b: number): number {
  const u = new Uint32Array([(b & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0];
}

let F16_TABLE: Float32Array | undefined;
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToNumber(h);
  }
  return F16_TABLE;
}

function swapBytes(bytes: Uint8Array, size: number): Uint8Array {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (size === 2) b.swap16();
  else if (size === 4) b.swap32();
  else if (size === 8) b.swap64();
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/**
 * The file as chunks (length, header, tensor data), laid out as the reference writer does: F32 tensors sorted by
 * name (byte order of UTF-8, as Rust compares strings), header JSON padded with spaces to a multiple of 8.
 */
export function encodeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> | null = { format: 'pt' },
): Uint8Array[] {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const utf8 = new TextEncoder();
  const keyed = entries.map(([name, t]) => ({ name, t, key: utf8.encode(name) }));
  keyed.sort((a, b) => compareBytes(a.key, b.key));

  // Built by hand: a JS object would move integer-like keys ("0", "12") to the front.
  const parts: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors metadata "${k}" must be a string, got ${describe(v)}`);
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  const data: Uint8Array[] = [];
  for (let i = 0; i < keyed.length; i++) {
    const { name, t } = keyed[i];
    if (i > 0 && keyed[i - 1].name === name) throw new Error(`tensor "${name}" given twice`);
    if (name === '__metadata__') throw new Error('"__metadata__" is reserved and cannot name a tensor');
    if (!(t.data instanceof Float32Array)) throw new Error(`tensor "${name}": data must be a Float32Array`);
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new Error(`tensor "${name}": shape ${JSON.stringify(t.shape)} must hold non-negative integers`);
      }
    }
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) {
      throw new Error(`tensor "${name}": shape ${JSON.stringify(t.shape)} has ${count} elements but data has ${t.data.length}`);
    }
    const bytes = t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"F32","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${offset + bytes}]}`);
    offset += bytes;
    let view = new Uint8Array(t.data.buffer, t.data.byteOffset, bytes);
    if (!LITTLE_ENDIAN_HOST) view = swapBytes(view.slice(), 4);
    data.push(view);
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const padded = new Uint8Array(Math.ceil(json.byteLength / 8) * 8).fill(0x20);
  padded.set(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(padded.byteLength), true);
  return [len, padded, ...data];
}

/** Buffer.compare without Buffer (a web page has none): bytewise, a prefix first. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Write F32 tensors as safetensors, atomically (a crash leaves the old file or none, never half of one). */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> | null = { format: 'pt' },
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
