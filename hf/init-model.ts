// A new model folder with from-scratch weights, loadable by this engine and by Hugging Face
// (`T5ForConditionalGeneration.from_pretrained(DIR)`, `T5Tokenizer.from_pretrained(DIR)`); `engine-cli init`.
//
// vocab_size: t5-tiny takes it from the tokenizer: pieces + 100 <extra_id_N>, rounded up to a multiple of 128
// (the rule that gives t5-small's 32128 = 32000 + 100 + 28). t5-small and t5-base keep 32128 and a config.json
// keeps its own; both are checked to hold every piece and sentinel.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CONFIG_FILE, presetConfig, t5VocabSize, type PresetName, type T5Config } from '../model/config.ts';
import { initT5Tensors } from '../model/init-weights.ts';
import { parameterCount } from '../model/parameters.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';
import { checkTokenizerFits, writeHfFolderFiles } from './hf-folder.ts';
import type { GenerationOptions } from '../generate/generation-config.ts';
import { writeSafetensors } from './safetensors.ts';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE } from './safetensors-folder.ts';
import { T5Tokenizer } from './tokenizer.ts';

export interface InitModelOptions {
  /** A preset name or a parsed config (loadT5Config). */
  config: PresetName | T5Config;
  /** SentencePiece model (T5 layout: 0 <pad>, 1 </s>, 2 <unk>). */
  tokenizer: string;
  out: string;
  /** Default 0; see model/init-weights.ts for the generator. */
  seed?: number;
  /** Replace a model already in `out` (default: refuse). */
  overwrite?: boolean;
  /** Written to generation_config.json. */
  generation?: GenerationOptions;
  /** Written to t5_webgpu.json. */
  preprocess?: PreprocessConfig;
  /** <extra_id_N> sentinels, default 100. */
  extraIds?: number;
}

export interface InitModelResult {
  dir: string;
  config: T5Config;
  /** Every file written, weights last. */
  files: string[];
  parameterCount: number;
  seed: number;
}

/** Build the config (vocab from the tokenizer for t5-tiny), initialise the weights, write the whole folder. */
export async function initModelFolder(opts: InitModelOptions): Promise<InitModelResult> {
  const extraIds = opts.extraIds ?? 100;
  const seed = opts.seed ?? 0;
  const tok = await T5Tokenizer.load(opts.tokenizer, { extraIds });
  let config: T5Config;
  if (typeof opts.config === 'string') {
    const vocabSize = opts.config === 't5-tiny' ? t5VocabSize(tok.pieceCount, extraIds) : undefined;
    config = presetConfig(opts.config, { vocabSize });
  } else {
    config = opts.config;
  }
  checkTokenizerFits(config, { pieceCount: tok.pieceCount, extraIds }, opts.tokenizer);
  await refuseToOverwrite(opts.out, opts.overwrite ?? false);

  // Weights are computed before anything is written: a bad seed or config leaves no half-made folder.
  const tensors = initT5Tensors(config, { seed });
  const files = await writeHfFolderFiles(opts.out, {
    config,
    spieceModel: opts.tokenizer,
    generation: opts.generation,
    preprocess: opts.preprocess,
    extraIds,
  });
  const weights = join(opts.out, SAFETENSORS_FILE);
  await writeSafetensors(weights, tensors);
  files.push(weights);
  return { dir: opts.out, config, files, parameterCount: parameterCount(config), seed };
}

async function refuseToOverwrite(dir: string, overwrite: boolean): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return;
    throw new Error(`--out ${dir}: ${e.code === 'ENOTDIR' ? 'is a file, expected a folder' : e.message}`);
  }
  const model = [CONFIG_FILE, SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE].find((n) => names.includes(n));
  if (model && !overwrite) throw new Error(`--out ${dir} already holds a model (${model}); pass --force to replace it`);
}
