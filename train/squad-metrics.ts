// SQuAD v1.1 exact match and token F1, written to give the same numbers as the official
// `evaluate-v1.1.py` (Rajpurkar et al.), including its quirks (see f1).

// Python's string.punctuation: the ASCII punctuation only, so "–" or "’" stay in the text.
const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

// Python 3's `\b` in a str pattern is Unicode-aware (a word character is a letter, a number or `_`),
// unlike JS `\b`, which is ASCII-only even with the u flag; the lookarounds rebuild Python's boundary.
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu;

// Python's str.split() whitespace, which differs from JS `\s`.
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((t) => t !== '');
}

/** Lowercase, drop ASCII punctuation, drop the articles a/an/the as whole words, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  let t = s.toLowerCase();
  let kept = '';
  for (const ch of t) if (!PUNCTUATION.has(ch)) kept += ch;
  t = kept.replace(ARTICLES, ' ');
  return pySplit(t).join(' ');
}

export function exactMatch(prediction: string, gold: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(gold) ? 1 : 0;
}

/**
 * Token F1 with multiset overlap. As in v1.1 (not v2.0), two answers that normalize to nothing
 * score F1 0 even though their exact match is 1.
 */
export function f1(prediction: string, gold: string): number {
  const predTokens = pySplit(normalizeAnswer(prediction));
  const goldTokens = pySplit(normalizeAnswer(gold));
  const goldCounts = new Map<string, number>();
  for (const t of goldTokens) goldCounts.set(t, (goldCounts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of predTokens) {
    const left = goldCounts.get(t) ?? 0;
    if (left > 0) {
      same++;
      goldCounts.set(t, left - 1);
    }
  }
  if (same === 0) return 0;
  // The same operations in the same order as the script, so the floats agree to the last bit.
  const precision = same / predTokens.length;
  const recall = same / goldTokens.length;
  return (2 * precision * recall) / (precision + recall);
}

/** The script's metric_max_over_ground_truths: the best score against any of the gold answers. */
export function maxOverGolds(metric: (prediction: string, gold: string) => number, prediction: string, golds: readonly string[]): number {
  if (golds.length === 0) throw new RangeError('maxOverGolds: a question needs at least one gold answer');
  let best = -Infinity;
  for (const g of golds) best = Math.max(best, metric(prediction, g));
  return best;
}

export interface SquadScores {
  /** Percent, 0..100, as the official script prints it. */
  exactMatch: number;
  /** Percent, 0..100. */
  f1: number;
  count: number;
}

/**
 * Scores predictions against gold answers (one string, or several as SQuAD dev has) and averages in percent.
 * An empty list scores 0 with count 0, where the script would divide by zero.
 */
export function squadScores(predictions: readonly string[], golds: readonly (string | readonly string[])[]): SquadScores {
  if (predictions.length !== golds.length) {
    throw new RangeError(`squadScores: ${predictions.length} predictions for ${golds.length} questions`);
  }
  let em = 0;
  let f = 0;
  for (let i = 0; i < predictions.length; i++) {
    const g = golds[i]!;
    const list = typeof g === 'string' ? [g] : g;
    em += maxOverGolds(exactMatch, predictions[i]!, list);
    f += maxOverGolds(f1, predictions[i]!, list);
  }
  const n = predictions.length;
  if (n === 0) return { exactMatch: 0, f1: 0, count: 0 };
  return { exactMatch: (100 * em) / n, f1: (100 * f) / n, count: n };
}
