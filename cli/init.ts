// engine-cli init: a new model folder with from-scratch weights, loadable by this engine and by Hugging Face
// (`T5ForConditionalGeneration.from_pretrained(DIR)`, `T5Tokenizer.from_pretrained(DIR)`).
//
//   engine-cli init --config t5-tiny|t5-small|t5-base|<config.json> --tokenizer <spiece.model> --out DIR
//                   [--seed N] [--force]
//
// The work is hf/init-model.ts's (initModelFolder); this file parses flags and prints.
import { existsSync } from 'node:fs';
import { PRESET_NAMES, loadT5Config, type PresetName, type T5Config } from '../model/config.ts';
import { initModelFolder, type InitModelOptions } from '../hf/init-model.ts';
import { flagOptions, parseFlags, type Flags } from './flags.ts';

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
