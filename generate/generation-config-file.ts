// generation_config.json: read as HF's from_pretrained finds it (config.json's generation keys when it is
// missing), and written byte for byte as transformers 4.36's GenerationConfig.save_pretrained writes it. What the
// options mean and how they are checked is generation-config.ts's.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONFIG_FILE, TRANSFORMERS_VERSION, pyFloat, pythonJsonDumps, type T5Config } from '../model/config.ts';
import {
  isGenerationDefault,
  isGenerationKey,
  resolveGenerationConfig,
  SAMPLING_WARNED,
  type GenerationConfig,
  type GenerationOptions,
  type ResolvedGenerationConfig,
} from './generation-config.ts';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** Attributes HF annotates as Python floats: written 2.0, not 2, even when given as an integral number. */
const FLOAT_KEYS = new Set([
  'length_penalty', 'diversity_penalty', 'repetition_penalty', 'encoder_repetition_penalty', 'temperature', 'top_p',
  'min_p', 'typical_p', 'epsilon_cutoff', 'eta_cutoff', 'penalty_alpha', 'guidance_scale', 'max_time',
]);

/** HF's bookkeeping, recomputed on every write rather than carried over. */
const BOOKKEEPING_KEYS = new Set(['_from_model_config', 'transformers_version', '_commit_hash']);

/** The token ids from_model_config always takes from the model; other keys set make the file more than that. */
const MODEL_TOKEN_KEYS = new Set(['decoder_start_token_id', 'eos_token_id', 'pad_token_id']);

async function readJsonIfPresent(file: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`${file}: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}

/**
 * HF's GenerationConfig.from_model_config: a config.json is full of model keys and only the generation ones carry
 * over (HF drops the rest when `_from_model_config` is set), with HF's defaults for those it lacks.
 */
function fromModelConfig(modelConfig: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(modelConfig)) if (isGenerationKey(key)) config[key] = v;
  return config;
}

/**
 * A model folder's generation settings as HF's from_pretrained finds them: generation_config.json; when it is
 * missing, the generation keys of config.json (from_model_config); when both are missing, {} (HF's defaults).
 * `file` names what was read, for messages.
 */
export async function readGenerationConfigFile(dir: string): Promise<{ config: GenerationConfig; file: string }> {
  const genFile = join(dir, GENERATION_CONFIG_FILE);
  const gen = await readJsonIfPresent(genFile);
  if (gen) return { config: gen, file: genFile };
  const modelFile = join(dir, CONFIG_FILE);
  const model = await readJsonIfPresent(modelFile);
  if (!model) return { config: {}, file: genFile };
  return { config: fromModelConfig(model), file: modelFile };
}

/** readGenerationConfigFile + resolveGenerationConfig: folder defaults, then explicit options. */
export async function loadGenerationConfig(dir: string, options: Readonly<GenerationOptions> = {}): Promise<ResolvedGenerationConfig> {
  const { config, file } = await readGenerationConfigFile(dir);
  return resolveGenerationConfig(config, options, file);
}

/**
 * The generation config save_pretrained writes for a model: from_model_config (the token ids, and generation keys
 * an old-style config.json carries, e.g. "num_beams"), then `options`. Checked as generate() checks it, and
 * refused where HF's GenerationConfig.validate() warns, which makes save_pretrained refuse to write it: beam-only
 * options with num_beams 1.
 */
export function generationConfigFromModel(cfg: T5Config, options: Readonly<GenerationOptions> = {}): GenerationConfig {
  const fromModel = {
    ...fromModelConfig(cfg.extra),
    decoder_start_token_id: cfg.decoder_start_token_id,
    eos_token_id: cfg.eos_token_id,
    pad_token_id: cfg.pad_token_id,
  };
  const resolved = resolveGenerationConfig(fromModel, options, CONFIG_FILE);
  if (resolved.numBeams === 1) {
    const refuse = (key: string, value: unknown): never => {
      throw new Error(`generate: \`${key}\` is ${JSON.stringify(value)} but \`num_beams\` is 1: it only applies to beam search (HF warns and will not save it)`);
    };
    if (resolved.earlyStopping !== false) refuse('early_stopping', resolved.earlyStopping);
    if (resolved.lengthPenalty !== 1) refuse('length_penalty', resolved.lengthPenalty);
  }
  if (!resolved.doSample) {
    const all: Record<string, unknown> = { ...fromModel, ...options };
    for (const [key, off] of Object.entries(SAMPLING_WARNED)) {
      const v = all[key];
      if (v !== undefined && v !== null && v !== off) {
        throw new Error(`generate: \`${key}\` is ${JSON.stringify(v)} but \`do_sample\` is false: it only applies to sampling (HF warns and will not save it)`);
      }
    }
  }
  const gen: Record<string, unknown> = { ...fromModel };
  for (const [key, v] of Object.entries(options)) if (v !== undefined) gen[key] = v;
  return gen;
}

/**
 * generation_config.json as HF 4.36 writes it (GenerationConfig.to_json_string(use_diff=True)): the keys that
 * differ from GenerationConfig's defaults (keys HF does not define kept as they are), transformers_version, and
 * `_from_model_config: true` when nothing beyond the model's token ids is set (what save_pretrained writes for a
 * fresh model). With options we leave `_from_model_config` out: HF's generate() would otherwise rebuild the
 * config from config.json and drop them.
 */
export function serializeGenerationConfig(gen: GenerationConfig): string {
  const out: Record<string, unknown> = {};
  let beyondModel = false;
  for (const [key, v] of Object.entries(gen)) {
    if (v === undefined || BOOKKEEPING_KEYS.has(key)) continue;
    if (isGenerationKey(key) && isGenerationDefault(key, v)) continue;
    out[key] = FLOAT_KEYS.has(key) && typeof v === 'number' ? pyFloat(v) : v;
    if (!MODEL_TOKEN_KEYS.has(key)) beyondModel = true;
  }
  out.transformers_version = TRANSFORMERS_VERSION;
  if (!beyondModel) out._from_model_config = true;
  return pythonJsonDumps(out, { ensureAscii: true });
}
