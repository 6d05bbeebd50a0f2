// Hugging Face's from_pretrained rules for matching a checkpoint's tensor names and shapes against a config.
import type { T5Config } from '../model/config.ts';
import { expectedParameters } from '../model/parameters.ts';

/** HF's T5ForConditionalGeneration._keys_to_ignore_on_load_unexpected: old checkpoints (t5-small's) carry it. */
export const IGNORED_ON_LOAD = ['decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight'] as const;

export interface CheckpointMatch {
  ok: boolean;
  /** Parameters no tensor provides (a tie group counts as provided when any of its names is present). */
  missing: string[];
  /** Tensors the model has no place for. */
  unexpected: string[];
  misshaped: { name: string; expected: number[]; got: number[] }[];
  /** Tied names present in the file (encoder/decoder.embed_tokens.weight; lm_head.weight when tied): HF loads
   * them into shared.weight. */
  aliasesPresent: string[];
  /** Present, and skipped as HF skips them (IGNORED_ON_LOAD). */
  ignored: string[];
}

/**
 * HF's from_pretrained rules for a checkpoint's tensor names and shapes against `cfg`: every stored parameter
 * must be present with its shape; shared.weight is satisfied by any name tied to it (HF drops a missing key whose
 * storage another loaded key filled); with tied embeddings lm_head.weight may be present (it is shared.weight);
 * IGNORED_ON_LOAD is skipped; anything else is unexpected.
 */
export function matchCheckpoint(
  tensors: Map<string, readonly number[]> | Iterable<readonly [string, readonly number[]]>,
  cfg: T5Config,
): CheckpointMatch {
  const present = new Map<string, readonly number[]>(tensors);
  const specs = expectedParameters(cfg);
  const byName = new Map(specs.map((s) => [s.name, s]));
  const sharedShape = [cfg.vocab_size, cfg.d_model];
  if (cfg.tie_word_embeddings) byName.set('lm_head.weight', { name: 'lm_head.weight', shape: sharedShape, kind: 'lm_head', tiedTo: 'shared.weight' });
  const sharedGroup = [...byName.values()].filter((s) => s.name === 'shared.weight' || s.tiedTo === 'shared.weight').map((s) => s.name);

  const m: CheckpointMatch = { ok: true, missing: [], unexpected: [], misshaped: [], aliasesPresent: [], ignored: [] };
  for (const s of specs) {
    if (s.tiedTo) continue;
    const satisfied = s.name === 'shared.weight' ? sharedGroup.some((n) => present.has(n)) : present.has(s.name);
    if (!satisfied) m.missing.push(s.name);
  }
  for (const [name, shape] of present) {
    const s = byName.get(name);
    if (!s) {
      ((IGNORED_ON_LOAD as readonly string[]).includes(name) ? m.ignored : m.unexpected).push(name);
      continue;
    }
    if (s.tiedTo) m.aliasesPresent.push(name);
    if (shape.length !== s.shape.length || shape.some((d, i) => d !== s.shape[i])) {
      m.misshaped.push({ name, expected: [...s.shape], got: [...shape] });
    }
  }
  m.ok = m.missing.length === 0 && m.unexpected.length === 0 && m.misshaped.length === 0;
  return m;
}

/** One line for an error message; lists at most `limit` names per category. */
export function describeCheckpointMismatch(m: CheckpointMatch, where: string, limit = 5): string {
  const list = (names: string[]): string =>
    names.slice(0, limit).join(', ') + (names.length > limit ? ` and ${names.length - limit} more` : '');
  const parts: string[] = [];
  if (m.missing.length) parts.push(`missing ${list(m.missing)}`);
  if (m.unexpected.length) parts.push(`unexpected ${list(m.unexpected)}`);
  if (m.misshaped.length) {
    const shown = m.misshaped.slice(0, limit).map((x) => `${x.name} is [${x.got.join(', ')}], expected [${x.expected.join(', ')}]`);
    parts.push(`wrong shape: ${shown.join(', ')}${m.misshaped.length > limit ? ` and ${m.misshaped.length - limit} more` : ''}`);
  }
  return parts.length ? `${where}: checkpoint does not match the config: ${parts.join('; ')}` : `${where}: checkpoint matches the config`;
}
