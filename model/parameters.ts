// Hugging Face's parameter names and shapes of T5ForConditionalGeneration for a config: every checkpoint key maps
// to one entry here, and to one line of t5.ts.
import type { T5Config } from './config.ts';


export type ParamKind =
  | 'embedding' | 'lm_head' | 'layer_norm'
  | 'q' | 'k' | 'v' | 'o' | 'relative_attention_bias'
  | 'wi' | 'wi_0' | 'wi_1' | 'wo';

export interface ParamSpec {
  name: string;
  /** PyTorch layout: nn.Linear weights are [out_features, in_features]. */
  shape: number[];
  kind: ParamKind;
  /** Set on the names HF ties to another parameter (the stack embeddings are always shared.weight). */
  tiedTo?: string;
}

/**
 * Every parameter name of HF's T5ForConditionalGeneration for `cfg`, with shape, in state_dict() order:
 * shared, the encoder embedding alias, encoder blocks, final norm, the decoder likewise, then lm_head.weight
 * when embeddings are untied. Aliases carry `tiedTo`; the others are what save_pretrained stores.
 * Per block, layer.0 is self-attention (relative_attention_bias in block 0 only), the decoder's layer.1 is
 * cross-attention (no bias of its own: it uses none), the last layer is the feed-forward.
 */
export function expectedParameters(cfg: T5Config): ParamSpec[] {
  const inner = cfg.num_heads * cfg.d_kv;
  const out: ParamSpec[] = [{ name: 'shared.weight', shape: [cfg.vocab_size, cfg.d_model], kind: 'embedding' }];
  const attention = (prefix: string, withBias: boolean): void => {
    out.push(
      { name: `${prefix}.q.weight`, shape: [inner, cfg.d_model], kind: 'q' },
      { name: `${prefix}.k.weight`, shape: [inner, cfg.d_model], kind: 'k' },
      { name: `${prefix}.v.weight`, shape: [inner, cfg.d_model], kind: 'v' },
      { name: `${prefix}.o.weight`, shape: [cfg.d_model, inner], kind: 'o' },
    );
    if (withBias) {
      out.push({ name: `${prefix}.relative_attention_bias.weight`, shape: [cfg.relative_attention_num_buckets, cfg.num_heads], kind: 'relative_attention_bias' });
    }
  };
  const norm = (name: string): void => {
    out.push({ name, shape: [cfg.d_model], kind: 'layer_norm' });
  };
  const feedForward = (prefix: string): void => {
    if (cfg.is_gated_act) {
      out.push(
        { name: `${prefix}.wi_0.weight`, shape: [cfg.d_ff, cfg.d_model], kind: 'wi_0' },
        { name: `${prefix}.wi_1.weight`, shape: [cfg.d_ff, cfg.d_model], kind: 'wi_1' },
      );
    } else {
      out.push({ name: `${prefix}.wi.weight`, shape: [cfg.d_ff, cfg.d_model], kind: 'wi' });
    }
    out.push({ name: `${prefix}.wo.weight`, shape: [cfg.d_model, cfg.d_ff], kind: 'wo' });
  };
  for (const stack of ['encoder', 'decoder'] as const) {
    out.push({ name: `${stack}.embed_tokens.weight`, shape: [cfg.vocab_size, cfg.d_model], kind: 'embedding', tiedTo: 'shared.weight' });
    const layers = stack === 'encoder' ? cfg.num_layers : cfg.num_decoder_layers;
    for (let i = 0; i < layers; i++) {
      const b = `${stack}.block.${i}.layer`;
      attention(`${b}.0.SelfAttention`, i === 0);
      norm(`${b}.0.layer_norm.weight`);
      if (stack === 'decoder') {
        attention(`${b}.1.EncDecAttention`, false);
        norm(`${b}.1.layer_norm.weight`);
      }
      const ff = stack === 'encoder' ? 1 : 2;
      feedForward(`${b}.${ff}.DenseReluDense`);
      norm(`${b}.${ff}.layer_norm.weight`);
    }
    norm(`${stack}.final_layer_norm.weight`);
  }
  if (!cfg.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [cfg.vocab_size, cfg.d_model], kind: 'lm_head' });
  return out;
}

/** The parameters save_pretrained stores (expectedParameters without the aliases). */
export function storedParameters(cfg: T5Config): ParamSpec[] {
  return expectedParameters(cfg).filter((p) => !p.tiedTo);
}

export function parameterCount(cfg: T5Config): number {
  return storedParameters(cfg).reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
}
