// The sampling warpers against transformers' own (4.57.6) on random float32 scores from flat to peaked rows
// (tests/fixtures/golden/logits-warpers.py; each setting's removed tokens are the same in float64, so rounding
// does not decide them). The same tokens must be removed (-inf) and the kept scores must be the same float32
// values. tests/logits-warpers.test.ts checks our restatements on edge cases; this holds them to HF.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readSafetensors, readSafetensorsHeader } from '../hf/safetensors.ts';
import type { LogitsProcessor } from '../generate/logits-processors.ts';
import {
  epsilonWarper, etaWarper, minPWarper, temperatureWarper, topKWarper, topPWarper, typicalWarper,
} from '../generate/logits-warpers.ts';

const file = join(fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu', import.meta.url)), 'logits-warpers.safetensors');
const SETTINGS = JSON.parse(readSafetensorsHeader(file).metadata.settings!) as Record<string, Array<[string, Record<string, number>]>>;

/** HF's warper class and arguments to ours. */
function warper(name: string, a: Record<string, number>): LogitsProcessor {
  const keep = a.min_tokens_to_keep ?? 1;
  switch (name) {
    case 'TemperatureLogitsWarper': return temperatureWarper(a.temperature!);
    case 'TopKLogitsWarper': return topKWarper(a.top_k!, keep);
    case 'TopPLogitsWarper': return topPWarper(a.top_p!, keep);
    case 'MinPLogitsWarper': return minPWarper(a.min_p!, keep);
    case 'TypicalLogitsWarper': return typicalWarper(a.mass!, keep);
    case 'EpsilonLogitsWarper': return epsilonWarper(a.epsilon!, keep);
    case 'EtaLogitsWarper': return etaWarper(a.epsilon!, keep);
    default: throw new Error(`logits-warpers.safetensors: no warper for HF's ${name}`);
  }
}

describe("sampling warpers match transformers' warpers", async () => {
  const tensors = await readSafetensors(file);
  const scores = tensors.get('scores')!;
  const [rows, vocab] = scores.shape as [number, number];
  const ids = Array.from({ length: rows }, () => [0]);

  it('the fixture covers every warper', () => {
    const names = new Set(Object.values(SETTINGS).flatMap((chain) => chain.map(([n]) => n)));
    expect(names.size).toBe(7);
  });
  for (const [name, chain] of Object.entries(SETTINGS)) {
    it(`${name}: ${JSON.stringify(chain)}`, () => {
      const got = Float32Array.from(scores.data);
      for (const [cls, args] of chain) warper(cls, args)(ids, got, vocab);
      const want = tensors.get(name)!.data;
      let removed = 0;
      for (let i = 0; i < want.length; i++) {
        const at = `row ${Math.floor(i / vocab)} token ${i % vocab}`;
        if (want[i] === -Infinity) {
          removed++;
          expect(got[i], at).toBe(-Infinity);
        } else {
          expect(got[i], at).toBe(want[i]);
        }
      }
      // settings that remove nothing are only temperature and a top_k over the vocabulary
      if (!/^(temperature|top_k_300)/.test(name)) expect(removed).toBeGreaterThan(0);
    });
  }
});
