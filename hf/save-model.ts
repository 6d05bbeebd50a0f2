// Save a model as a Hugging Face folder that `T5ForConditionalGeneration.from_pretrained(dir)` and
// `T5Tokenizer.from_pretrained(dir)` load without warnings:
//   config.json, generation_config.json, tokenizer_config.json, special_tokens_map.json, spiece.model
//                       written by hf-folder.ts (writeHfFolderFiles) byte for byte as transformers 4.36 writes them
//   model.safetensors   saveWeights (pretrained.ts): F32, tensors sorted by name, tied weights stored as save_pretrained
//                       stores them (shared.weight only, no encoder/decoder.embed_tokens or tied lm_head aliases;
//                       lm_head.weight when untied)
//   t5_webgpu.json      only when `preprocess` is given: the text cleaning predict/score/eval must apply again
//
// Every file is written atomically into the target folder (temp file beside it, fsync, rename): a crash leaves
// each file either old or new, never torn. The folder as a whole is not one transaction: a crash between two
// renames can leave new config files beside old weights, which is why nothing is written until every input
// has been validated (tokenizer fits the vocabulary, generation options consistent).
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { T5_WEBGPU_FILE, checkTokenizerFits, tokenizerFilesFor, writeHfFolderFiles } from './hf-folder.ts';
import type { GenerationOptions } from '../generate/generation-config.ts';
import { generationConfigFromModel } from '../generate/generation-config-file.ts';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, isSafeRelativePath, parseSafetensorsIndex } from './safetensors-folder.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';
import { saveWeights } from './pretrained.ts';

export interface SaveOptions {
  /** The SentencePiece model (spiece.model) to copy into the folder. */
  tokenizerModel: string;
  /** generate() defaults written to generation_config.json (HF option names). */
  generation?: GenerationOptions;
  /** Text cleaning the model was trained with; written to t5_webgpu.json. */
  preprocess?: PreprocessConfig;
  /** <extra_id_N> sentinels, default 100. */
  extraIds?: number;
  /** tokenizer_config.json's model_max_length, default 512. */
  modelMaxLength?: number;
}

export interface SaveResult {
  dir: string;
  /** Every file written, weights last. */
  files: string[];
  /** Stale files removed (an old sharded checkpoint, an old t5_webgpu.json). */
  removed: string[];
}

export async function savePretrained(model: T5ForConditionalGeneration, dir: string, opts: SaveOptions): Promise<SaveResult> {
  // Validate before the first write (writeHfFolderFiles checks these too, but only after reading the tokenizer;
  // doing it here keeps a bad call from touching the folder at all).
  const tok = tokenizerFilesFor(opts.tokenizerModel, { extraIds: opts.extraIds, modelMaxLength: opts.modelMaxLength });
  checkTokenizerFits(model.config, tok, opts.tokenizerModel);
  generationConfigFromModel(model.config, opts.generation);

  const files = await writeHfFolderFiles(dir, {
    config: model.config,
    spieceModel: opts.tokenizerModel,
    generation: opts.generation,
    preprocess: opts.preprocess,
    extraIds: opts.extraIds,
    modelMaxLength: opts.modelMaxLength,
  });
  const weights = join(dir, SAFETENSORS_FILE);
  await saveWeights(model, weights);
  files.push(weights);
  const removed = await removeStaleFiles(dir, opts.preprocess !== undefined);
  return { dir, files, removed };
}

/**
 * After the new weights are in place: a sharded checkpoint left from an earlier save would only confuse readers
 * (model.safetensors wins in HF and here, but the shards waste space and an index contradicts the folder), so it
 * goes, as save_pretrained removes stale shards; and a t5_webgpu.json from an earlier model would make score and
 * predict clean text this model was not trained with.
 */
async function removeStaleFiles(dir: string, keepSettings: boolean): Promise<string[]> {
  const removed: string[] = [];
  const drop = async (path: string): Promise<void> => {
    try {
      await unlink(path);
      removed.push(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  };
  const index = join(dir, SAFETENSORS_INDEX_FILE);
  let text: string | undefined;
  try {
    text = await readFile(index, 'utf8');
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    let shards: string[] = [];
    try {
      shards = [...new Set(parseSafetensorsIndex(text, index).values())];
    } catch {
      shards = []; // a corrupt index: remove the index, leave unknown files alone
    }
    // Only names shaped like HF's shards (model-00001-of-00002.safetensors), never model.safetensors itself.
    for (const s of shards) {
      if (isSafeRelativePath(s) && !s.includes('/') && /^model-\d+-of-\d+\.safetensors$/.test(s)) await drop(join(dir, s));
    }
    await drop(index);
  }
  if (!keepSettings) await drop(join(dir, T5_WEBGPU_FILE));
  return removed;
}
