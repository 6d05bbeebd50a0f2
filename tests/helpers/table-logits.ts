// Fake decoder logits for the search tests: a pure function of the input index and the row's tokens, so that a
// search and a reference written independently see the same numbers.
import { mulberry32 } from './random-data.ts';

/** Next-token logits as a pure function of the input index and the row's tokens (decoder start included). */
export type LogitsFn = (input: number, history: readonly number[]) => Float32Array;

/**
 * A table lookup by (input, second-to-last token, last token): random logits in [-spread, spread], `eosBias`
 * added to the eos tokens so that hypotheses finish at different lengths.
 */
export function tableLogits(seed: number, inputs: number, vocab: number, opts: { spread?: number; eosBias?: number; eos?: number[] } = {}): LogitsFn {
  const rand = mulberry32(seed);
  const spread = opts.spread ?? 2;
  const contexts = (vocab + 1) * vocab;
  const table = new Float32Array(inputs * contexts * vocab).map(() => (rand() * 2 - 1) * spread);
  for (const e of opts.eos ?? [1]) for (let i = e; i < table.length; i += vocab) table[i]! += opts.eosBias ?? 0;
  return (input, history) => {
    const last = history[history.length - 1]!;
    const prev = history.length >= 2 ? history[history.length - 2]! : vocab;
    const at = ((input * (vocab + 1) + prev) * vocab + last) * vocab;
    return table.slice(at, at + vocab);
  };
}
