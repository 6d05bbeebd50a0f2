// pytorch_model.bin without Python: torch.save's zip read by hf/torch-checkpoint.ts's restricted unpickler,
// against files torch itself wrote (fixtures/torch/make-torch-files.py, torch 2.13): dtypes, views with offsets
// and strides, shared storages, a whole HF model folder, and the refusals (a pickle that calls os.system, the
// format before PyTorch 1.6, a truncated file).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { fromPretrained } from '../hf/pretrained.ts';
import { readSafetensors } from '../hf/safetensors.ts';
import { readSafetensorsFolder } from '../hf/safetensors-folder.ts';
import { parseTorchCheckpoint, parseTorchObject } from '../hf/torch-checkpoint.ts';
import { PyFloat, pyTuple, torchSaveBytes, torchTensor, type PyValue } from '../hf/torch-save.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';

const fixture = (rel: string): string => fileURLToPath(new URL(`./fixtures/${rel}`, import.meta.url));
const bytes = (rel: string): Uint8Array => readFileSync(fixture(rel));

describe('parseTorchCheckpoint', () => {
  it('reads float16, bfloat16, float64 and float32 views (offsets, strides, 0-d, shared storage) as torch holds them', () => {
    const got = parseTorchCheckpoint(bytes('torch/mixed.bin'), 'mixed.bin');
    const want = JSON.parse(readFileSync(fixture('torch/mixed.json'), 'utf8')) as Record<string, unknown>;
    // integer tensors are not weights and are left out
    expect([...got.keys()].sort()).toEqual(Object.keys(want).sort());
    expect(got.get('f16')!.dtype).toBe('F16');
    expect(got.get('bf16')!.dtype).toBe('BF16');
    for (const [name, value] of Object.entries(want)) {
      const flat = [value].flat(3) as number[];
      const t = got.get(name)!;
      expect(t.shape.reduce((a, b) => a * b, 1), name).toBe(flat.length);
      // float16/bfloat16/float32 values are exact in float32; float64 ones round once
      expect(Array.from(t.data), name).toEqual(flat.map((x) => Math.fround(x)));
    }
    expect(got.get('transposed')!.shape).toEqual([6, 4]);
    expect(got.get('scalar')!.shape).toEqual([]);
  });

  it('refuses a pickle that calls anything but the state dict rebuilders, without running it', () => {
    expect(() => parseTorchCheckpoint(bytes('torch/evil.bin'), 'evil.bin'))
      .toThrow(/evil\.bin: the pickle refers to posix\.system, which a weights file does not need; not loading it/);
  });

  it('refuses the format before PyTorch 1.6 and a truncated file, naming the file', () => {
    expect(() => parseTorchCheckpoint(bytes('torch/legacy.bin'), 'legacy.bin')).toThrow(/legacy\.bin: a PyTorch file in the format before PyTorch 1\.6/);
    const whole = bytes('torch/mixed.bin');
    expect(() => parseTorchCheckpoint(whole.slice(0, whole.length - 100), 'cut.bin')).toThrow(/cut\.bin: not a readable PyTorch zip \(no end of central directory: a truncated download\?\)/);
  });
});

describe('a Hugging Face folder with only pytorch_model.bin', () => {
  let model: T5ForConditionalGeneration;
  beforeAll(async () => {
    await initGpu();
    model = await fromPretrained(fixture('torch/t5-v11-tiny-bin'));
  });
  afterAll(() => model?.dispose());

  it('loads the same weights, bit for bit, as the model.safetensors HF saved of the same model', async () => {
    const ref = await readSafetensors(fixture('golden/t5-v11-tiny/model.safetensors'));
    // HF's .bin also holds the tied aliases encoder/decoder.embed_tokens.weight, which load into shared.weight
    const raw = parseTorchCheckpoint(bytes('torch/t5-v11-tiny-bin/pytorch_model.bin'), 'pytorch_model.bin');
    expect([...raw.keys()].filter((k) => !ref.has(k)).sort()).toEqual(['decoder.embed_tokens.weight', 'encoder.embed_tokens.weight']);
    expect(model.params.size).toBe(ref.size);
    for (const [name, p] of model.params) {
      const got = await p.toFloat32();
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(ref.get(name)!.data.buffer, ref.get(name)!.data.byteOffset, ref.get(name)!.data.byteLength)), name).toBe(true);
    }
  });
});

describe('PyTorch shards (pytorch_model.bin.index.json)', () => {
  it('reads every shard the index names, the same tensors as the single file', async () => {
    const sharded = await readSafetensorsFolder(fixture('torch/t5-v11-tiny-bin-sharded'));
    const single = parseTorchCheckpoint(bytes('torch/t5-v11-tiny-bin/pytorch_model.bin'), 'pytorch_model.bin');
    const index = JSON.parse(readFileSync(fixture('torch/t5-v11-tiny-bin-sharded/pytorch_model.bin.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    expect(new Set(Object.values(index.weight_map)).size).toBe(3);
    expect([...sharded.keys()].sort()).toEqual(Object.keys(index.weight_map).sort());
    for (const [name, t] of sharded) expect(Array.from(t.data), name).toEqual(Array.from(single.get(name)!.data));
  });
});

describe('torchSaveBytes (HF Trainer optimizer.pt and scheduler.pt)', () => {
  it('writes what the reader reads back: nested dicts with int keys, tuples, floats, None, 0-d and 2-d tensors', () => {
    const obj = new Map<string | number, PyValue>([
      ['state', new Map<number, PyValue>([[0, new Map<string, PyValue>([['step', torchTensor(Float32Array.of(3), [])], ['exp_avg', torchTensor(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3])]])]])],
      ['param_groups', [new Map<string, PyValue>([['lr', 1e-4], ['betas', pyTuple(0.9, 0.999)], ['weight_decay', new PyFloat(0)], ['fused', null], ['amsgrad', false], ['params', [0, 1, 70000, -5, 2 ** 40]]])]],
    ]);
    const bytes = torchSaveBytes(obj);
    // every entry's data starts on a multiple of 64 bytes, as torch.save aligns its records (local headers in order)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const starts: number[] = [];
    for (let at = 0; view.getUint32(at, true) === 0x04034b50;) {
      const start = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
      starts.push(start);
      at = start + view.getUint32(at + 18, true);
    }
    expect(starts.length).toBe(7); // data.pkl, .format_version, .storage_alignment, byteorder, 2 storages, version
    expect(starts.filter((x) => x % 64 !== 0)).toEqual([]);
    const back = parseTorchObject(bytes, 'round-trip.pt') as Map<string, unknown>;
    const state = (back.get('state') as Map<number, Map<string, { shape: number[]; data: Float32Array }>>).get(0)!;
    expect(state.get('step')).toMatchObject({ shape: [], data: Float32Array.of(3) });
    expect(state.get('exp_avg')).toMatchObject({ shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) });
    const group = (back.get('param_groups') as Array<Map<string, unknown>>)[0]!;
    expect(Object.fromEntries(group)).toEqual({ lr: 1e-4, betas: [0.9, 0.999], weight_decay: 0, fused: null, amsgrad: false, params: [0, 1, 70000, -5, 2 ** 40] });
  });
});
