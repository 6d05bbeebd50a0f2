// A .zip of uncompressed entries (method 0, "stored"): how a web page hands over a whole model folder as one
// download. Weights barely compress, so deflate would only cost time. Layout per PKWARE's APPNOTE 4.3:
// local header + data per file, then the central directory and its end record; no ZIP64, so < 4 GiB.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The zip's bytes; names may contain '/' for folders. */
export function zipStore(files: ReadonlyMap<string, Uint8Array>): Uint8Array {
  return concatBytes(zipStoreParts(files));
}

/** Pieces joined into one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export interface ZipStoreOptions {
  /** start every entry's data on a multiple of this many bytes, padding the local header's extra field (an
   * "FB" block, as torch.save pads its records to 64) */
  align?: number;
}

/**
 * The zip as pieces to write one after the other, each entry's data the caller's own bytes (not copied): a file of
 * gigabytes (torch-save.ts's optimizer.pt) needs no buffer of its size.
 */
export function zipStoreParts(files: ReadonlyMap<string, Uint8Array>, opts: ZipStoreOptions = {}): Uint8Array[] {
  const utf8 = new TextEncoder();
  const local: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const nameBytes = utf8.encode(name);
    const crc = crc32(data);
    // the padding block's own 4-byte header, then zeros up to the alignment
    const extra = opts.align ? 4 + ((opts.align - ((offset + 30 + nameBytes.length + 4) % opts.align)) % opts.align) : 0;
    const head = new Uint8Array(30 + nameBytes.length + extra);
    const h = new DataView(head.buffer);
    h.setUint32(0, 0x04034b50, true); // local file header
    h.setUint16(4, 20, true); // version needed: 2.0
    h.setUint16(6, 0x0800, true); // names are UTF-8
    h.setUint32(14, crc, true);
    h.setUint32(18, data.length, true);
    h.setUint32(22, data.length, true);
    h.setUint16(26, nameBytes.length, true);
    h.setUint16(28, extra, true);
    head.set(nameBytes, 30);
    if (extra) {
      h.setUint16(30 + nameBytes.length, 0x4246, true); // "FB"
      h.setUint16(32 + nameBytes.length, extra - 4, true);
    }
    const dir = new Uint8Array(46 + nameBytes.length);
    const d = new DataView(dir.buffer);
    d.setUint32(0, 0x02014b50, true); // central directory header
    d.setUint16(4, 20, true);
    d.setUint16(6, 20, true);
    d.setUint16(8, 0x0800, true);
    d.setUint32(16, crc, true);
    d.setUint32(20, data.length, true);
    d.setUint32(24, data.length, true);
    d.setUint16(28, nameBytes.length, true);
    d.setUint32(42, offset, true);
    dir.set(nameBytes, 46);
    local.push(head, data);
    central.push(dir);
    offset += head.length + data.length;
  }
  const dirSize = central.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true); // end of central directory
  e.setUint16(8, files.size, true);
  e.setUint16(10, files.size, true);
  e.setUint32(12, dirSize, true);
  e.setUint32(16, offset, true);
  return [...local, ...central, end];
}
