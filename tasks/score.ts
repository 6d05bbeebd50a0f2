// Score a target given a source: the mean cross-entropy Hugging Face's T5ForConditionalGeneration returns as
// `loss` for `model(input_ids, labels=tokenizer(target).input_ids)` in eval mode (no dropout), and the number of
// target tokens it averages over (`</s>` included).
//
// Text cleaning: a folder's t5_webgpu.json records the cleaning training applied to the CSV columns (context,
// question, answer). When present, it is applied again to --context, --question and --target. A raw --input is
// the assembled encoder text and is tokenized exactly as given (HF's behaviour); without t5_webgpu.json (any
// HF checkpoint) nothing is cleaned.
import { noGrad } from '../engine/autograd.ts';
import { tidy } from '../engine/scope.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { T5Tokenizer } from '../hf/tokenizer.ts';
import { cleanText, type PreprocessConfig } from '../util/text-clean.ts';

/** Either `input` (raw source) or `context` + `question` (encoded as a pair), and the target. */
export type ScoreInput =
  | { input: string; target: string }
  | { context: string; question: string; target: string };

export interface ScoreOptions {
  /** Source length limit with only_first truncation (the context is cut); default 512, the tutorial's. */
  maxSourceLength?: number;
}

export interface ScoreResult {
  /** Mean cross-entropy (natural log) over the target tokens. */
  loss: number;
  /** Target tokens, `</s>` included. */
  tokens: number;
}

export interface ScoreModel {
  model: T5ForConditionalGeneration;
  tokenizer: T5Tokenizer;
  preprocess?: PreprocessConfig;
}

/** Token ids of the source and target, after the folder's cleaning. */
export function encodeScoreInput(m: Pick<ScoreModel, 'tokenizer' | 'preprocess'>, inp: ScoreInput, opts: ScoreOptions = {}): { source: number[]; target: number[] } {
  const maxLength = opts.maxSourceLength ?? 512;
  if (!Number.isSafeInteger(maxLength) || maxLength < 2) throw new Error(`score: maximum source length must be an integer >= 2, got ${maxLength}`);
  const clean = (s: string): string => (m.preprocess ? cleanText(s, m.preprocess) : s);
  let source: number[];
  if ('input' in inp) {
    if (inp.input === '') throw new Error('score: --input is empty');
    source = m.tokenizer.encode(inp.input, { maxLength });
  } else {
    if (inp.context === '') throw new Error('score: --context is empty');
    if (inp.question === '') throw new Error('score: --question is empty');
    if (maxLength < 3) throw new Error(`score: maximum source length must be >= 3 for a pair, got ${maxLength}`);
    source = m.tokenizer.encodePair(clean(inp.context), clean(inp.question), { maxLength });
  }
  const target = m.tokenizer.encodeTarget(clean(inp.target));
  return { source, target };
}

export async function scoreTarget(m: ScoreModel, inp: ScoreInput, opts: ScoreOptions = {}): Promise<ScoreResult> {
  const { source, target } = encodeScoreInput(m, inp, opts);
  const loss = noGrad(() =>
    tidy(() =>
      m.model.forward({
        batchSize: 1,
        sourceLength: source.length,
        targetLength: target.length,
        inputIds: Int32Array.from(source),
        attentionMask: new Int32Array(source.length).fill(1),
        labels: Int32Array.from(target),
      }, { training: false }).loss!,
    ),
  );
  try {
    return { loss: await loss.item(), tokens: target.length };
  } finally {
    loss.dispose();
  }
}
