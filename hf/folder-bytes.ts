// savePretrained without a file system: every file of the Hugging Face folder as bytes (a web page offers them
// for download). The same serializers as save-model.ts, so the files are byte for byte what Node writes.
import { noGrad } from '../engine/autograd.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { GenerationOptions } from '../generate/generation-config.ts';
import { GENERATION_CONFIG_FILE } from '../generate/generation-config-file.ts';
import { SPIECE_FILE, hfFolderTextFiles, tokenizerFilesFromBytes } from './hf-folder.ts';
import { encodeSafetensors } from './safetensors.ts';
import { SAFETENSORS_FILE } from './safetensors-folder.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';

export interface FolderBytesOptions {
  generation?: GenerationOptions;
  /** the source folder's generation_config.json, copied as is (as train() copies it), else derived from config.json */
  generationConfigFile?: Uint8Array;
  preprocess?: PreprocessConfig;
  extraIds?: number;
  modelMaxLength?: number;
}

/** Name -> contents of config.json, generation_config.json, tokenizer files, spiece.model and model.safetensors. */
export async function hfFolderBytes(
  model: T5ForConditionalGeneration, spiece: Uint8Array, opts: FolderBytesOptions = {},
): Promise<Map<string, Uint8Array>> {
  const tok = tokenizerFilesFromBytes(spiece, SPIECE_FILE, { extraIds: opts.extraIds, modelMaxLength: opts.modelMaxLength });
  const utf8 = new TextEncoder();
  const out = new Map<string, Uint8Array>();
  for (const [name, text] of hfFolderTextFiles({ config: model.config, ...opts }, tok, SPIECE_FILE)) out.set(name, utf8.encode(text));
  if (opts.generationConfigFile) out.set(GENERATION_CONFIG_FILE, opts.generationConfigFile);
  out.set(SPIECE_FILE, spiece);
  const parts = encodeSafetensors(await noGrad(() => model.stateDict()));
  const weights = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    weights.set(p, at);
    at += p.byteLength;
  }
  out.set(SAFETENSORS_FILE, weights);
  return out;
}
