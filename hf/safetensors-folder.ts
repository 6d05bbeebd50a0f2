// Model folders' weights as Hugging Face lays them out: one model.safetensors, or shards named by
// model.safetensors.index.json (tensor name -> shard file), and the refusal of PyTorch-only folders. The file
// format itself is hf/safetensors.ts.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { isPlainObject, readSafetensors, SafetensorsFile, type SafeTensor } from './safetensors.ts';

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

/**
 * The one-line refusal for weights that exist only as PyTorch pickles, with the command that converts them.
 * `source` is what from_pretrained should load (a folder or a Hub id), `target` the folder to write.
 */
export function pytorchOnlyMessage(where: string, source: string, target: string, pytorchFile = 'pytorch_model.bin'): string {
  return `${where} has only ${pytorchFile} (a pickle, which this engine does not load because it can run code); ` +
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
 * The safetensors files a model folder's weights live in: [model.safetensors], or the shards named by
 * model.safetensors.index.json (with the tensor -> shard map). Refuses PyTorch-only folders with a conversion hint.
 */
export async function findSafetensorsWeights(
  dir: string,
): Promise<{ files: string[]; weightMap?: Map<string, string> }> {
  if (await isFile(join(dir, SAFETENSORS_FILE))) return { files: [join(dir, SAFETENSORS_FILE)] };
  const indexPath = join(dir, SAFETENSORS_INDEX_FILE);
  if (await isFile(indexPath)) {
    const weightMap = parseSafetensorsIndex(await readFile(indexPath, 'utf8'), indexPath);
    const shards = [...new Set(weightMap.values())];
    for (const shard of shards) {
      if (!(await isFile(join(dir, shard)))) {
        const example = [...weightMap].find(([, s]) => s === shard)?.[0];
        throw new Error(`${indexPath} lists shard ${shard} (holding "${example}" and others), but ${join(dir, shard)} is missing`);
      }
    }
    return { files: shards.map((s) => join(dir, s)), weightMap };
  }
  for (const pt of ['pytorch_model.bin', 'pytorch_model.bin.index.json']) {
    if (await isFile(join(dir, pt))) throw new Error(pytorchOnlyMessage(dir, dir, dir, pt));
  }
  if (!(await isDirectory(dir))) throw new Error(`model folder ${dir} does not exist`);
  throw new Error(`${dir} has neither ${SAFETENSORS_FILE} nor ${SAFETENSORS_INDEX_FILE}`);
}

/** Load every weight of a model folder (single file or sharded) as float32. */
export async function readSafetensorsFolder(dir: string): Promise<Map<string, SafeTensor>> {
  const { files, weightMap } = await findSafetensorsWeights(dir);
  if (!weightMap) return readSafetensors(files[0]);
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
