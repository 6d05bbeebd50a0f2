// Binding a run of a buffer's elements a range at a time: a tensor may be larger than maxStorageBufferBindingSize
// (128 MiB on lavapipe), and a range binding must start on a multiple of minStorageBufferOffsetAlignment.
// Used by the engine's fill and by elementwise kernels over whole tensors (AdamW, the gradient norm, matmul's
// combine pass).

/** WebGPU's largest minStorageBufferOffsetAlignment: range bindings of a tensor start on multiples of it. */
const OFFSET_ALIGN = 256;

export interface RangeChunk {
  /** byte offset of the binding (a multiple of 256) */
  offset: number;
  /** byte size of the binding */
  size: number;
  /** first element to process, in units of `width` elements, relative to the binding */
  start: number;
  /** elements to process, in units of `width` */
  count: number;
}

/** Splits elements [first, end) of a tensor into bindings no larger than `maxBindingBytes` (lavapipe: 128 MiB),
 * each starting on a 256-byte boundary. `width` (1 or 4) elements form one array element of the kernel; `first`
 * must be a multiple of it, and so must `end` unless the chunk ends the range at the tensor's end. */
export function bindingChunks(first: number, end: number, width: number, maxBindingBytes: number): RangeChunk[] {
  const maxBytes = Math.floor(maxBindingBytes / OFFSET_ALIGN) * OFFSET_ALIGN;
  if (maxBytes < OFFSET_ALIGN) throw new RangeError(`binding limit ${maxBindingBytes} bytes is below ${OFFSET_ALIGN}`);
  const out: RangeChunk[] = [];
  let e = first;
  while (e < end) {
    const offset = Math.floor((e * 4) / OFFSET_ALIGN) * OFFSET_ALIGN;
    const last = Math.min(end, (offset + maxBytes) / 4);
    out.push({ offset, size: last * 4 - offset, start: (e - offset / 4) / width, count: Math.ceil((last - e) / width) });
    e = last;
  }
  return out;
}
