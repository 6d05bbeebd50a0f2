// What score, predict and eval need from `--model`: a local folder or a Hub id (resolved by hub.ts, downloaded
// into the huggingface_hub cache), its config, weights, tokenizer, and the text cleaning it was trained with.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { loadT5Config, type T5Config } from '../model/config.ts';
import { SPIECE_FILE, loadT5WebgpuSettings, loadTokenizerConfig } from './hf-folder.ts';
import { resolveModel, type ResolveModelOptions } from './hub.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { T5Tokenizer } from './tokenizer.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';
import { fromPretrained } from './pretrained.ts';

export interface LoadedModel {
  /** The local folder (a Hub id resolves to its cache snapshot). */
  dir: string;
  config: T5Config;
  model: T5ForConditionalGeneration;
  tokenizer: T5Tokenizer;
  /** From t5_webgpu.json; undefined for a folder without one (any HF checkpoint): use text as given. */
  preprocess?: PreprocessConfig;
  /** tokenizer_config.json's model_max_length (null when absent or "unlimited"). */
  modelMaxLength: number | null;
}

export interface LoadModelOptions extends ResolveModelOptions {
  /** Parameters that record gradients (training); default false. */
  requiresGrad?: boolean;
}

/**
 * Resolve `idOrDir`, then read everything cheap and checkable before the weights: config.json, spiece.model
 * (a missing one is an error naming the folder), tokenizer_config.json, t5_webgpu.json. Weights last.
 * The caller disposes `model`.
 */
export async function loadModelForCli(idOrDir: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { requiresGrad, ...resolveOpts } = opts;
  const dir = await resolveModel(idOrDir, resolveOpts);
  const config = loadT5Config(dir);
  const spiece = join(dir, SPIECE_FILE);
  if (!isFile(spiece)) {
    throw new Error(`model folder ${dir} has no ${SPIECE_FILE} (the SentencePiece tokenizer); copy the one the model was trained with into it`);
  }
  const tokConfig = loadTokenizerConfig(dir);
  const tokenizer = await T5Tokenizer.load(spiece, {
    extraIds: tokConfig.extraIds, vocabSize: config.vocab_size, cleanUpTokenizationSpaces: tokConfig.cleanUpTokenizationSpaces,
  });
  const settings = loadT5WebgpuSettings(dir);
  const model = await fromPretrained(dir, { requiresGrad });
  return { dir, config, model, tokenizer, preprocess: settings.preprocess, modelMaxLength: tokConfig.modelMaxLength };
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
