// Expected values were computed with the official SQuAD evaluate-v1.1.py functions (Python 3.11).
import { describe, expect, it } from 'vitest';
import { exactMatch, f1, maxOverGolds, normalizeAnswer, squadScores } from '../train/squad-metrics.ts';
import { describeAnswerScores } from '../train/evaluate.ts';

describe('normalizeAnswer', () => {
  const cases: [string, string][] = [
    ['The Cat!', 'cat'],
    ['  A   an  THE  ', ''],
    ['theater and anthem', 'theater and anthem'],
    ['the_end', 'theend'],
    // Python's \b is Unicode-aware: "the" inside "éthe" is not a word of its own.
    ['éthe thé the', 'éthe thé'],
    ['Ωthe the1 1the', 'ωthe the1 1the'],
    // A combining mark is not a word character to Python, so "the" before it is removed.
    ['the\u0301 cat', '\u0301 cat'],
    ["Denver Broncos' (AFC)", 'denver broncos afc'],
    ['U.S.A.', 'usa'],
    ['a-b', 'ab'],
    // Only ASCII punctuation is removed.
    ['the–end “quoted” ’s', '–end “quoted” ’s'],
    ['x\u00a0the\u3000y\x1cz', 'x y z'],
  ];
  it.each(cases)('%j -> %j', (input, expected) => {
    expect(normalizeAnswer(input)).toBe(expected);
  });
});

describe('exactMatch and f1', () => {
  const cases: [string, string, number, number][] = [
    ['the cat sat', 'cat sat on the mat', 0, 0.6666666666666666],
    ['Denver Broncos', 'The Denver Broncos', 1, 1],
    ['a a b', 'a b b', 0, 0.6666666666666666],
    ['x x y', 'x y y z', 0, 0.5714285714285715],
    // v1.1 quirk: both normalize to nothing, so exact match 1 but F1 0.
    ['the', 'a', 1, 0],
    ['', '', 1, 0],
    ['paris', 'london', 0, 0],
    ['1,000 people', '1000 people', 1, 1],
    ['three', 'three three three', 0, 0.5],
  ];
  it.each(cases)('%j vs %j', (pred, gold, em, f) => {
    expect(exactMatch(pred, gold)).toBe(em);
    expect(f1(pred, gold)).toBe(f);
  });
});

describe('aggregate', () => {
  it('takes the best gold per question and averages in percent', () => {
    const preds = ['Denver Broncos', 'the cat', 'Santa Clara, California', 'nothing'];
    const golds = [
      ['Denver Broncos', 'The Denver Broncos'],
      ['a cat on the mat', 'dog'],
      ["Levi's Stadium in the San Francisco Bay Area at Santa Clara, California", 'Santa Clara'],
      'something',
    ];
    expect(squadScores(preds, golds)).toEqual({ exactMatch: 25, f1: 57.49999999999999, count: 4 });
  });

  it('handles empty and mismatched inputs', () => {
    expect(squadScores([], [])).toEqual({ exactMatch: 0, f1: 0, count: 0 });
    expect(() => squadScores(['a'], [])).toThrow('1 predictions for 0 questions');
    expect(() => maxOverGolds(f1, 'a', [])).toThrow(RangeError);
    expect(maxOverGolds(f1, 'big red dog', ['red', 'big red cat'])).toBeCloseTo(2 / 3, 15);
  });
});

describe('describeAnswerScores', () => {
  it('prints the scores, or says they were not computed when no answer was generated (--eval-limit 0)', () => {
    expect(describeAnswerScores({ exactMatch: 12.5, f1: 30.04, generated: 8 })).toBe('exact match 12.5%, F1 30.0%');
    const none = describeAnswerScores({ exactMatch: NaN, f1: NaN, generated: 0 });
    expect(none).toBe('exact match and F1 not computed (no answers generated)');
    expect(none).not.toContain('NaN');
  });
});
