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
import { parseArgs } from 'node:util';
import {
  CONFIG_FILE,
  PRESET_NAMES,
  loadT5Config,
  presetConfig,
  t5VocabSize,
  type PresetName,
  type T5Config,
} from '../model/config.ts';
import { checkTokenizerFits, writeHfFolderFiles } from '../hf/hf-folder.ts';
import { parameterCount } from '../model/parameters.ts';
import { initT5Tensors } from '../model/init-weights.ts';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, writeSafetensors } from '../hf/safetensors.ts';
import { T5Tokenizer } from '../hf/tokenizer.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';

import { initModelFolder } from '../hf/init-model.ts';

export async function initCommand(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        tokenizer: { type: 'string' },
        out: { type: 'string' },
        seed: { type: 'string', default: '0' },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    // node:util's messages span lines; the CLI prints one.
    throw new Error(`init: ${(err as Error).message.replace(/\s*\n\s*/g, ' ')}`);
  }
  if (values.help) {
    process.stdout.write(
      `usage: engine-cli init --config ${PRESET_NAMES.join('|')}|<config.json> --tokenizer <spiece.model> --out DIR [--seed N] [--force]\n`,
    );
    return;
  }
  for (const flag of ['config', 'tokenizer', 'out'] as const) {
    if (!values[flag]) throw new Error(`init: --${flag} is required (engine-cli init --help)`);
  }
  const seedText = values.seed!;
  const seed = Number(seedText);
  if (!/^\d+$/.test(seedText) || !Number.isSafeInteger(seed)) throw new Error(`init: --seed must be a non-negative integer, got '${seedText}'`);
  const configArg = values.config!;
  const config: PresetName | T5Config = (PRESET_NAMES as readonly string[]).includes(configArg)
    ? (configArg as PresetName)
    : existsSync(configArg) ? loadT5Config(configArg)
    : failUnknownConfig(configArg);
  const r = await initModelFolder({ config, tokenizer: values.tokenizer!, out: values.out!, seed, overwrite: values.force });
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
