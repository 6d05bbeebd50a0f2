// T5ForConditionalGeneration.from_pretrained and the weights half of save_pretrained: config.json and safetensors
// weights (F32, F16 or BF16; sharded or not) in, model.safetensors out.
import { tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import { loadT5Config, type T5Config } from '../model/config.ts';
import { storedParameters } from '../model/parameters.ts';
import type { ParamMap } from '../model/t5.ts';
import { T5ForConditionalGeneration } from '../model/t5-model.ts';
import { describeCheckpointMismatch, matchCheckpoint } from './checkpoint-match.ts';
import { writeSafetensors, type SafeTensor } from './safetensors.ts';
import { readSafetensorsFolder } from './safetensors-folder.ts';

/** Names Hugging Face ties to `shared.weight` (the tied lm_head too). */
const TIED_ALIASES = ['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight'];

/** Loads a model folder's config and weights onto the GPU. */
export async function fromPretrained(dir: string, opts: { requiresGrad?: boolean } = {}): Promise<T5ForConditionalGeneration> {
  return modelFromTensors(loadT5Config(dir), await readSafetensorsFolder(dir), dir, opts);
}

/** A model from its config and stored tensors (read from a folder, or fetched by a web page); `dir` names them in errors. */
export function modelFromTensors(
  config: T5Config, stored: ReadonlyMap<string, SafeTensor>, dir: string, opts: { requiresGrad?: boolean } = {},
): T5ForConditionalGeneration {
  const report = matchCheckpoint(new Map([...stored].map(([name, t]) => [name, t.shape])), config);
  if (!report.ok) throw new Error(describeCheckpointMismatch(report, dir));
  const params: ParamMap = new Map();
  for (const { name, shape } of storedParameters(config)) {
    // a tied checkpoint may store the embedding under any name of its tie group
    const t = stored.get(name) ?? (name === 'shared.weight' ? TIED_ALIASES.map((a) => stored.get(a)).find(Boolean) : undefined);
    if (!t) throw new Error(`${dir}: tensor '${name}' is missing`);
    params.set(name, tensor(t.data, shape, { name, requiresGrad: opts.requiresGrad ?? false }).keep());
  }
  return new T5ForConditionalGeneration(config, params);
}

/** Writes `model.safetensors` the way `save_pretrained` does: tied aliases are not stored. */
export async function saveWeights(model: T5ForConditionalGeneration, file: string): Promise<void> {
  await writeSafetensors(file, await noGrad(() => model.stateDict()));
}
