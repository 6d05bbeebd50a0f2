// T5ForConditionalGeneration: parameters on the GPU under Hugging Face's names, loaded from and saved to
// Hugging Face model folders.
import { tensor, type Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import { loadT5Config, type T5Config } from './config.ts';
import { describeCheckpointMismatch, matchCheckpoint, storedParameters } from '../hf/hf-folder.ts';
import { readSafetensorsFolder, writeSafetensors } from '../hf/safetensors.ts';
import { DropoutState, t5Forward, type ForwardContext, type ParamMap, type Seq2SeqBatch, type Seq2SeqOutput } from './t5.ts';

export interface ForwardOptions {
  /** dropout on (model.train()); default false (model.eval()) */
  training?: boolean;
  /** overrides config.dropout_rate */
  dropoutRate?: number;
  /** seed of the counter-based dropout masks */
  dropoutSeed?: number;
}

/** Names Hugging Face ties to `shared.weight` (the tied lm_head too). */
const TIED_ALIASES = ['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight'];

export class T5ForConditionalGeneration {
  constructor(readonly config: T5Config, readonly params: ParamMap) {}

  /** Loads `config.json` and safetensors weights (F32, F16 or BF16; sharded or not) from a folder. */
  static async fromPretrained(dir: string, opts: { requiresGrad?: boolean } = {}): Promise<T5ForConditionalGeneration> {
    const config = loadT5Config(dir);
    const stored = await readSafetensorsFolder(dir);
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

  /** Trainable parameters, each once (the tied embedding appears as `shared.weight` only). */
  parameters(): Array<[string, Tensor]> {
    return [...this.params];
  }

  setRequiresGrad(on: boolean): void {
    for (const p of this.params.values()) p.requiresGrad = on;
  }

  context(opts: ForwardOptions = {}): ForwardContext {
    const rate = opts.dropoutRate ?? this.config.dropout_rate;
    return { config: this.config, params: this.params, dropout: new DropoutState(rate, opts.dropoutSeed ?? 0, opts.training ?? false) };
  }

  forward(batch: Seq2SeqBatch, opts: ForwardOptions = {}): Seq2SeqOutput {
    return t5Forward(this.context(opts), batch);
  }

  /** Host copies of every parameter under Hugging Face's names. */
  async stateDict(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, p] of this.params) out.set(name, { shape: p.shape, data: await p.toFloat32() });
    return out;
  }

  /** Writes `model.safetensors` the way `save_pretrained` does: tied aliases are not stored. */
  async saveWeights(file: string): Promise<void> {
    await writeSafetensors(file, await noGrad(() => this.stateDict()));
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
  }
}
