// Model folders' weights as Hugging Face lays them out, in from_pretrained's order of preference: one
// model.safetensors, shards named by model.safetensors.index.json (tensor name -> shard file), then PyTorch's
// pytorch_model.bin or its shards by pytorch_model.bin.index.json (read without running the pickle:
// hf/torch-checkpoint.ts). The safetensors format itself is hf/safetensors.ts.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { isPlainObject, readSafetensors, SafetensorsFile, type SafeTensor } from './safetensors.ts';
import { isTorchZip, parseTorchCheckpoint } from './torch-checkpoint.ts';

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
export const TORCH_FILE = 'pytorch_model.bin';
export const TORCH_INDEX_FILE = 'pytorch_model.bin.index.json';

/**
 * The one-line refusal for PyTorch weights in the format before PyTorch 1.6 (not a zip), with the command that
 * converts them. `source` is what from_pretrained should load (a folder or a Hub id), `target` the folder to write.
 */
export function pytorchOnlyMessage(where: string, source: string, target: string, pytorchFile = TORCH_FILE): string {
  return `${where} has ${pytorchFile} in PyTorch's format before 1.6 (not a zip), which this engine does not read; ` +
    `convert it once to model.safetensors with: python -c "from transformers import AutoModelForSeq2SeqLM as M; ` +
    `M.from_pretrained('${source}').save_pretrained('${target}', safe_serialization=True)"`;
}

/** Parse a model.safetensors.index.json: tensor name -> shard file name (checked to stay inside the folder). */
export function parseSafetensorsIndex(text: string, fileName: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${fileName}: not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json) || !isPlainObject(json.weight_map)) {
    throw new Error(`${fileName}: expected an object with a "weight_map" object`);
  }
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== 'string' || !isSafeRelativePath(shard)) {
      throw new Error(`${fileName}: tensor "${name}" maps to ${JSON.stringify(shard)}, expected a file name inside the folder`);
    }
    map.set(name, shard);
  }
  return map;
}

export function isSafeRelativePath(p: string): boolean {
  if (p === '' || isAbsolute(p) || p.includes('\\') || p.includes('\0')) return false;
  return !normalize(p).split(sep).includes('..') && !p.split('/').includes('..');
}

/**
 * The files a model folder's weights live in, as from_pretrained looks for them: [model.safetensors], the shards
 * model.safetensors.index.json names (with the tensor -> shard map), then the same for pytorch_model.bin.
 */
export async function findSafetensorsWeights(
  dir: string,
): Promise<{ files: string[]; weightMap?: Map<string, string>; format: 'safetensors' | 'torch' }> {
  for (const [single, index, format] of [[SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, 'safetensors'], [TORCH_FILE, TORCH_INDEX_FILE, 'torch']] as const) {
    if (await isFile(join(dir, single))) return { files: [join(dir, single)], format };
    const indexPath = join(dir, index);
    if (await isFile(indexPath)) {
      const weightMap = parseSafetensorsIndex(await readFile(indexPath, 'utf8'), indexPath);
      const shards = [...new Set(weightMap.values())];
      for (const shard of shards) {
        if (!(await isFile(join(dir, shard)))) {
          const example = [...weightMap].find(([, s]) => s === shard)?.[0];
          throw new Error(`${indexPath} lists shard ${shard} (holding "${example}" and others), but ${join(dir, shard)} is missing`);
        }
      }
      return { files: shards.map((s) => join(dir, s)), weightMap, format };
    }
  }
  if (!(await isDirectory(dir))) throw new Error(`model folder ${dir} does not exist`);
  throw new Error(`${dir} has no weights: neither ${SAFETENSORS_FILE}, ${SAFETENSORS_INDEX_FILE}, ${TORCH_FILE} nor ${TORCH_INDEX_FILE}`);
}

/** A pytorch_model.bin (or shard) as float32 tensors; the format before PyTorch 1.6 is refused with a conversion hint. */
async function readTorchFile(file: string, dir: string): Promise<Map<string, SafeTensor>> {
  const bytes = await readFile(file);
  if (!isTorchZip(bytes)) throw new Error(pytorchOnlyMessage(dir, dir, dir, file.slice(dir.length + 1)));
  return parseTorchCheckpoint(bytes, file);
}

/** Load every weight of a model folder (safetensors or PyTorch, single file or sharded) as float32. */
export async function readSafetensorsFolder(dir: string): Promise<Map<string, SafeTensor>> {
  const { files, weightMap, format } = await findSafetensorsWeights(dir);
  if (format === 'torch') {
    if (!weightMap) return readTorchFile(files[0]!, dir);
    const out = new Map<string, SafeTensor>();
    for (const file of files) {
      const shard = await readTorchFile(file, dir);
      const shardName = file.slice(dir.length + 1);
      for (const [name, where] of weightMap) {
        if (where !== shardName) continue;
        const t = shard.get(name);
        if (!t) throw new Error(`${join(dir, TORCH_INDEX_FILE)} puts tensor "${name}" in ${where}, but ${file} has no such tensor`);
        out.set(name, t);
      }
    }
    return out;
  }
  if (!weightMap) return readSafetensors(files[0]!);
  const out = new Map<string, SafeTensor>();
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of weightMap) {
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  for (const [shard, names] of byShard) {
    const file = await SafetensorsFile.open(join(dir, shard));
    try {
      for (const name of names) {
        if (!file.header.tensors.has(name)) {
          throw new Error(`${join(dir, SAFETENSORS_INDEX_FILE)} puts tensor "${name}" in ${shard}, but ${file.path} has no such tensor`);
        }
        out.set(name, await file.read(name));
      }
    } finally {
      await file.close();
    }
  }
  return out;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}
