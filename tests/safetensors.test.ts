import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bf16BitsToNumber,
  encodeSafetensors,
  f16BitsToNumber,
  openSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from '../hf/safetensors.ts';
import { readSafetensorsFolder } from '../hf/safetensors-folder.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/model.safetensors', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
/** A file with an arbitrary header (object → JSON, string or bytes → as is) and data bytes; `len` overrides N. */
async function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), len?: bigint): Promise<string> {
  const json = header instanceof Uint8Array
    ? Buffer.from(header)
    : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(len ?? BigInt(json.byteLength));
  const path = join(dir, `raw-${counter++}.safetensors`);
  await writeFile(path, Buffer.concat([n, json, data]));
  return path;
}

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

describe('round trip', () => {
  it('writes and reads back F32 tensors, sorted by name, header padded to 8', async () => {
    const path = join(dir, 'rt.safetensors');
    const tensors = {
      'b.weight': { shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, -0, 1e-30]) },
      'a.bias': { shape: [3], data: Float32Array.from([Infinity, -Infinity, NaN]) },
      scalar: { shape: [], data: Float32Array.from([42]) },
      empty: { shape: [0, 4], data: new Float32Array(0) },
      '10': { shape: [1], data: Float32Array.from([10]) },
    };
    await writeSafetensors(path, tensors);
    const header = readSafetensorsHeader(path);
    expect(header.headerBytes % 8).toBe(0);
    expect(header.metadata).toEqual({ format: 'pt' });
    // Offsets follow name order (UTF-8 bytes), as the reference writer lays them out.
    expect([...header.tensors.keys()]).toEqual(['10', 'a.bias', 'b.weight', 'empty', 'scalar']);
    const back = await readSafetensors(path);
    expect(back.size).toBe(5);
    for (const [name, t] of Object.entries(tensors)) {
      const got = back.get(name)!;
      expect(got.dtype).toBe('F32');
      expect(got.shape).toEqual(t.shape);
      expect([...got.data].map((x) => Object.is(x, -0) ? '-0' : String(x))).toEqual(
        [...t.data].map((x) => Object.is(x, -0) ? '-0' : String(x)),
      );
    }
  });

  it('matches the reference writer byte for byte', async () => {
    // safetensors' own test vector (tensor.rs test_serialization_forced_alignement): 7 spaces of padding.
    const data = Float32Array.from([0, 1, 2, 3, 4, 5]);
    const bytes = Buffer.concat(encodeSafetensors({ attn0: { shape: [1, 1, 2, 3], data } }, null));
    const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    expect(bytes.readBigUInt64LE(0)).toBe(72n);
    expect(bytes.subarray(8, 80).toString()).toBe(json + ' '.repeat(72 - json.length));
    expect(bytes.subarray(80)).toEqual(Buffer.from(data.buffer));
    // Empty, no metadata: "{}" + 6 spaces.
    expect(Buffer.concat(encodeSafetensors({}, null))).toEqual(
      Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
    );
  });

  it('rewrites the golden HF checkpoint identically', async () => {
    const tensors = await readSafetensors(FIXTURE);
    const out = join(dir, 'golden-copy.safetensors');
    await writeSafetensors(out, tensors);
    expect(Buffer.compare(await readFile(out), await readFile(FIXTURE))).toBe(0);
  });

  it('refuses inconsistent tensors when writing', async () => {
    await expect(writeSafetensors(join(dir, 'bad.safetensors'), { x: { shape: [2, 2], data: new Float32Array(3) } }))
      .rejects.toThrow(/tensor "x".*4 elements but data has 3/);
    await expect(writeSafetensors(join(dir, 'bad.safetensors'), { x: { shape: [-1], data: new Float32Array(1) } }))
      .rejects.toThrow(/non-negative integers/);
    expect((await readdir(dir)).some((f) => f.startsWith('.bad'))).toBe(false);
  });
});

describe('golden tiny T5 checkpoint', () => {
  it('has HF names and shapes', async () => {
    const t = await readSafetensors(FIXTURE);
    expect(t.size).toBe(47);
    expect(t.get('shared.weight')!.shape).toEqual([1128, 64]);
    expect(t.get('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight')!.shape).toEqual([8, 4]);
    expect(t.get('encoder.block.1.layer.1.DenseReluDense.wi.weight')!.shape).toEqual([128, 64]);
    expect(t.get('decoder.block.1.layer.2.DenseReluDense.wo.weight')!.shape).toEqual([64, 128]);
    expect(t.get('decoder.final_layer_norm.weight')!.shape).toEqual([64]);
    expect(t.has('lm_head.weight')).toBe(false);
    for (const v of t.values()) {
      expect(v.dtype).toBe('F32');
      expect(v.data.every(Number.isFinite)).toBe(true);
    }
  });

  it('reads single tensors lazily', async () => {
    const f = await openSafetensors(FIXTURE);
    try {
      expect(f.names()).toHaveLength(47);
      const ln = await f.read('encoder.final_layer_norm.weight');
      expect(ln.data.length).toBe(64);
      const all = await readSafetensors(FIXTURE, { names: ['encoder.final_layer_norm.weight'] });
      expect(all.get('encoder.final_layer_norm.weight')!.data).toEqual(ln.data);
      await expect(f.read('nope')).rejects.toThrow(/no tensor named "nope"/);
    } finally {
      await f.close();
    }
  });
});

describe('F16 and BF16', () => {
  // [bits, value] computed by hand from the IEEE layouts.
  const F16: [number, number][] = [
    [0x0000, 0], [0x8000, -0], [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x7bff, 65504],
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x7c00, Infinity], [0xfc00, -Infinity], [0x7e00, NaN], [0xfc01, NaN],
  ];
  const BF16: [number, number][] = [
    [0x0000, 0], [0x8000, -0], [0x3f80, 1], [0xc000, -2], [0x4049, 3.140625], [0x7f7f, 3.3895313892515355e38],
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal
    [0x007f, 127 * 2 ** -133],
    [0x7f80, Infinity], [0xff80, -Infinity], [0x7fc0, NaN], [0xffc1, NaN],
  ];

  it('converts bit patterns exactly', () => {
    for (const [bits, v] of F16) expect(Object.is(f16BitsToNumber(bits), v)).toBe(true);
    for (const [bits, v] of BF16) expect(Object.is(bf16BitsToNumber(bits), v)).toBe(true);
  });

  it('reads F16 and BF16 tensors as float32', async () => {
    const f16 = u16le(F16.map(([b]) => b));
    const bf16 = u16le(BF16.map(([b]) => b));
    const path = await rawFile({
      __metadata__: { format: 'pt' },
      h: { dtype: 'F16', shape: [F16.length], data_offsets: [0, f16.length] },
      b: { dtype: 'BF16', shape: [BF16.length], data_offsets: [f16.length, f16.length + bf16.length] },
    }, Buffer.concat([f16, bf16]));
    const t = await readSafetensors(path);
    expect(t.get('h')!.dtype).toBe('F16');
    expect(t.get('b')!.dtype).toBe('BF16');
    const same = (got: Float32Array, want: number[]) =>
      expect([...got].every((x, i) => Object.is(x, Math.fround(want[i])))).toBe(true);
    same(t.get('h')!.data, F16.map(([, v]) => v));
    same(t.get('b')!.data, BF16.map(([, v]) => v));
  });

  it('refuses integer tensors for float loading but gives their bytes', async () => {
    const data = Buffer.alloc(16);
    data.writeBigInt64LE(-5n, 0);
    data.writeBigInt64LE(7n, 8);
    const path = await rawFile({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, data);
    await expect(readSafetensors(path)).rejects.toThrow(/tensor "ids" has dtype I64; only F32, F16, BF16 and F64/);
    const f = await openSafetensors(path);
    try {
      const raw = await f.readRaw('ids');
      expect([...new BigInt64Array(raw.buffer)]).toEqual([-5n, 7n]);
    } finally {
      await f.close();
    }
  });
});

describe('corrupt and hostile files', () => {
  const f32 = (shape: number[], data_offsets: unknown) => ({ dtype: 'F32', shape, data_offsets });
  const cases: [string, () => Promise<string>, RegExp][] = [
    ['shorter than 8 bytes', async () => {
      const p = join(dir, `tiny-${counter++}.safetensors`);
      await writeFile(p, Buffer.from([1, 2, 3]));
      return p;
    }, /too small/],
    ['header length beyond the file', () => rawFile({}, undefined, 1000n), /header length 1000 runs past the end/],
    ['huge header length', () => rawFile({}, undefined, 2n ** 63n), /exceeds the 100000000-byte limit/],
    ['bad JSON', () => rawFile('{"a": {"dtype": '), /not valid JSON/],
    ['JSON not an object', () => rawFile('[1, 2]'), /does not start with "\{"/],
    ['JSON null', () => rawFile('{}null'), /not valid JSON/],
    ['invalid UTF-8', () => rawFile(Buffer.from([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/],
    ['metadata not strings', () => rawFile({ __metadata__: { format: 1 } }), /__metadata__\["format"\] is number 1/],
    ['tensor entry not an object', () => rawFile({ w: [1, 2] }), /tensor "w": entry is a list/],
    ['unknown dtype', () => rawFile({ w: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /tensor "w": unknown or unsupported dtype "F33"/],
    ['offsets outside the data', () => rawFile({ w: f32([100], [0, 400]) }, new Uint8Array(16)),
      /tensor "w": data_offsets \[0, 400\] run past the end of the 16-byte data section/],
    ['offsets beyond 2^53', () => rawFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}`),
      /tensor "w": data_offsets .* must be \[begin, end\]/],
    ['offsets reversed', () => rawFile({ w: f32([0], [8, 0]) }, new Uint8Array(8)), /tensor "w": data_offsets \[8, 0\] end before/],
    ['offsets malformed', () => rawFile({ w: f32([1], [0]) }, new Uint8Array(4)), /tensor "w": data_offsets \[0\] must be/],
    ['overlapping tensors', () => rawFile({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, new Uint8Array(12)),
      /tensor "b": data_offsets \[4, 12\] overlap tensor "a"/],
    ['gap between tensors', () => rawFile({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Uint8Array(12)),
      /tensor "b": .*4 unused bytes after tensor "a"/],
    ['data section longer than the tensors', () => rawFile({ a: f32([1], [0, 4]) }, new Uint8Array(8)),
      /tensors cover 4 bytes but the data section holds 8/],
    ['shape/size mismatch', () => rawFile({ w: f32([3], [0, 8]) }, new Uint8Array(8)),
      /tensor "w": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/],
    ['huge shape', () => rawFile({ w: f32([2 ** 40, 2 ** 40], [0, 8]) }, new Uint8Array(8)), /tensor "w": shape .* needs/],
    ['negative dimension', () => rawFile({ w: f32([-1, 2], [0, 8]) }, new Uint8Array(8)),
      /tensor "w": shape \[-1,2\] has dimension -1/],
    ['fractional dimension', () => rawFile({ w: f32([1.5], [0, 6]) }, new Uint8Array(8)),
      /tensor "w": shape \[1.5\] has dimension 1.5/],
    ['shape not a list', () => rawFile({ w: { dtype: 'F32', shape: 4, data_offsets: [0, 16] } }, new Uint8Array(16)),
      /tensor "w": shape is number 4/],
  ];

  for (const [what, make, message] of cases) {
    it(`rejects: ${what}`, async () => {
      const path = await make();
      const err = await readSafetensors(path).then(() => undefined, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toContain(path);
      expect(err!.message).toMatch(message);
    });
  }

  it('validates a header given as a buffer prefix', () => {
    const json = Buffer.from(JSON.stringify({ w: f32([1], [0, 4]) }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const h = parseSafetensorsHeader(Buffer.concat([len, json]), 8 + json.length + 4, 'mem.safetensors');
    expect(h.tensors.get('w')).toEqual({ dtype: 'F32', shape: [1], dataOffsets: [0, 4] });
    expect(() => parseSafetensorsHeader(len, 8 + json.length + 4, 'mem.safetensors')).toThrow(/mem\.safetensors: only 8 bytes given/);
  });
});

describe('model folders', () => {
  const t = (values: number[]) => ({ shape: [values.length], data: Float32Array.from(values) });

  async function shardedFolder(name: string, weightMap: Record<string, string>): Promise<string> {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    await writeSafetensors(join(d, 'model-00001-of-00002.safetensors'), { a: t([1, 2]), b: t([3]) });
    await writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), { c: t([4, 5, 6]) });
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 24 }, weight_map: weightMap }));
    return d;
  }

  it('loads a single-file folder', async () => {
    const d = join(dir, 'single');
    await mkdir(d);
    await writeSafetensors(join(d, 'model.safetensors'), { w: t([1, 2, 3]) });
    expect([...(await readSafetensorsFolder(d)).get('w')!.data]).toEqual([1, 2, 3]);
  });

  it('loads a sharded folder through its index', async () => {
    const d = await shardedFolder('sharded', {
      a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors',
    });
    const all = await readSafetensorsFolder(d);
    expect([...all.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect([...all.get('c')!.data]).toEqual([4, 5, 6]);
  });

  it('names a missing shard', async () => {
    const d = await shardedFolder('missing-shard', { a: 'model-00001-of-00002.safetensors', z: 'model-00003-of-00003.safetensors' });
    await expect(readSafetensorsFolder(d)).rejects.toThrow(/lists shard model-00003-of-00003\.safetensors.*missing/);
  });

  it('names a tensor missing from its shard', async () => {
    const d = await shardedFolder('missing-tensor', { a: 'model-00001-of-00002.safetensors', q: 'model-00002-of-00002.safetensors' });
    await expect(readSafetensorsFolder(d)).rejects.toThrow(/tensor "q" in model-00002-of-00002\.safetensors.*no such tensor/);
  });

  it('refuses shard paths that leave the folder', async () => {
    const d = await shardedFolder('escape', { a: '../outside.safetensors' });
    await expect(readSafetensorsFolder(d)).rejects.toThrow(/index\.json: tensor "a" maps to "\.\.\/outside\.safetensors"/);
  });

  it('refuses a pytorch_model.bin that is not a torch.save zip with the conversion command', async () => {
    const d = join(dir, 'pt-only');
    await mkdir(d);
    await writeFile(join(d, 'pytorch_model.bin'), 'not really a pickle');
    await expect(readSafetensorsFolder(d)).rejects.toThrow(/pytorch_model\.bin in PyTorch's format before 1\.6.*save_pretrained\(.*safe_serialization=True\)/);
  });

  it('says when the folder has no weights at all', async () => {
    await expect(readSafetensorsFolder(join(dir, 'does-not-exist'))).rejects.toThrow(/does not exist/);
    const d = join(dir, 'empty-folder');
    await mkdir(d);
    await expect(readSafetensorsFolder(d)).rejects.toThrow(/has no weights: neither model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin nor pytorch_model\.bin\.index\.json/);
  });
});

describe('atomic write', () => {
  it('leaves only the target file behind', async () => {
    const d = join(dir, 'atomic');
    await mkdir(d);
    await writeSafetensors(join(d, 'out.safetensors'), { w: { shape: [2], data: Float32Array.from([1, 2]) } });
    await writeFileAtomic(join(d, 'out.safetensors'), 'replaced');
    expect(await readdir(d)).toEqual(['out.safetensors']);
    expect(await readFile(join(d, 'out.safetensors'), 'utf8')).toBe('replaced');
  });

  it('keeps the old file and removes the temp file when writing fails midway', async () => {
    const d = join(dir, 'atomic-fail');
    await mkdir(d);
    const target = join(d, 'ckpt.safetensors');
    await writeFile(target, 'old');
    async function* chunks() {
      yield Buffer.from('new part 1');
      throw new Error('disk on fire');
    }
    await expect(writeFileAtomic(target, chunks())).rejects.toThrow('disk on fire');
    expect(await readdir(d)).toEqual(['ckpt.safetensors']);
    expect(await readFile(target, 'utf8')).toBe('old');
  });
});
