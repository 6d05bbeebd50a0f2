// engine-cli init: a new model folder with from-scratch weights, loadable by this engine and by Hugging Face
// (`T5ForConditionalGeneration.from_pretrained(DIR)`, `T5Tokenizer.from_pretrained(DIR)`).
//
//   engine-cli init --config t5-tiny|t5-small|t5-base|<config.json> --tokenizer <spiece.model> --out DIR
//                   [--seed N] [--force]
//
// vocab_size: t5-tiny takes it from the tokenizer: pieces + 100 <extra_id_N>, rounded up to a multiple of 128
// (the rule that gives t5-small's 32128 = 32000 + 100 + 28). t5-small and t5-base keep 32128 and a config.json
// keeps its own; both are checked to hold every piece and sentinel.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CONFIG_FILE,
  PRESET_NAMES,
  loadT5Config,
  presetConfig,
  t5VocabSize,
  type PresetName,
  type T5Config,
} from '../model/config.ts';
import {
  checkTokenizerFits,
  parameterCount,
  writeHfFolderFiles,
  type GenerationOptions,
} from '../hf/hf-folder.ts';
import { initT5Tensors } from '../model/init-weights.ts';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, writeSafetensors } from '../hf/safetensors.ts';
import { T5Tokenizer } from '../hf/tokenizer.ts';
import type { PreprocessConfig } from '../tasks/csv-data.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

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

const USAGE = 'usage: engine-cli init --config PRESET|FILE --tokenizer spiece.model --out DIR [options]\n';

const INIT_FLAGS = {
  config: { type: 'string', arg: `${PRESET_NAMES.join('|')}|FILE`, required: true, help: 'a preset, a config.json or a model folder' },
  tokenizer: { type: 'string', arg: 'spiece.model', required: true, help: 'SentencePiece model: 0 <pad>, 1 </s>, 2 <unk>', to: 'tokenizer' },
  out: { type: 'string', arg: 'DIR', required: true, help: 'the new model folder', to: 'out' },
  seed: { type: 'int', min: 0, default: 0, help: 'seed of the initial weights', to: 'seed' },
  force: { type: 'boolean', help: 'replace a model already in DIR', to: 'overwrite' },
} satisfies Flags<InitModelOptions>;

export async function initCommand(argv: string[]): Promise<void> {
  const parsed = parseFlags('init', USAGE, INIT_FLAGS, argv);
  if (!parsed) return;
  const { values } = parsed;
  const configArg = values.config;
  const config: PresetName | T5Config = (PRESET_NAMES as readonly string[]).includes(configArg)
    ? (configArg as PresetName)
    : existsSync(configArg) ? loadT5Config(configArg)
    : failUnknownConfig(configArg);
  const r = await initModelFolder({ ...flagOptions<InitModelOptions>(INIT_FLAGS, values), config, tokenizer: values.tokenizer, out: values.out });
  const c = r.config;
  process.stdout.write(
    `wrote ${r.dir}: ${typeof config === 'string' ? config : configArg}, ${(r.parameterCount / 1e6).toFixed(2)}M parameters ` +
      `(vocab ${c.vocab_size}, d_model ${c.d_model}, ${c.num_heads} heads x d_kv ${c.d_kv}, d_ff ${c.d_ff}, ` +
      `${c.num_layers}+${c.num_decoder_layers} layers, ${c.feed_forward_proj}), seed ${r.seed}\n`,
  );
}

function failUnknownConfig(name: string): never {
  throw new Error(`init: --config ${name} is neither a preset (${PRESET_NAMES.join(', ')}) nor an existing config.json or model folder`);
}
