// Generation options: HF 4.36 defaults and names, folder file + explicit overrides, length resolution, one
// clear error per refused option, and generation_config.json written byte for byte as HF's save_pretrained
// writes it. No numerics here: every check is exact.
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERATION_DEFAULTS, resolveGenerationConfig, type GenerationOptions } from '../generate/generation-config.ts';
import {
  generationConfigFromModel, loadGenerationConfig, readGenerationConfigFile, serializeGenerationConfig,
} from '../generate/generation-config-file.ts';
import { loadT5Config } from '../model/config.ts';
import { generate } from '../generate/generate.ts';
import type { DecoderStepper } from '../generate/search-types.ts';

const GOLDEN = fileURLToPath(new URL('./fixtures/golden/t5-tiny-relu/', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'generation-config-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let folders = 0;
async function folder(files: Record<string, unknown>): Promise<string> {
  const d = join(dir, `m${folders++}`);
  await mkdir(d);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(d, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return d;
}

const T5 = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };

describe('generation config', () => {
  it('has HF 4.36 defaults', () => {
    const c = resolveGenerationConfig({}, { decoder_start_token_id: 0 });
    expect(c).toMatchObject({
      maxLength: 20, minLength: 0, minNewTokens: null, numBeams: 1, numReturnSequences: 1, noRepeatNgramSize: 0,
      lengthPenalty: 1, earlyStopping: false, eosTokenIds: [], padTokenId: null, decoderStartTokenId: 0, outputScores: false,
    });
    expect(GENERATION_DEFAULTS.max_length).toBe(20);
    expect(c.warnings).toEqual([expect.stringMatching(/model-agnostic default `max_length` \(=20\)/)]);
    expect(resolveGenerationConfig({}, { decoder_start_token_id: 0, max_length: 20 }).warnings).toEqual([]);
  });

  it('reads the golden folder (HF save_pretrained output) and applies explicit options over it', async () => {
    const c = await loadGenerationConfig(GOLDEN, { num_beams: 4, no_repeat_ngram_size: 2, early_stopping: true, max_length: 20 });
    expect(c).toMatchObject({ decoderStartTokenId: 0, eosTokenIds: [1], padTokenId: 0, numBeams: 4, noRepeatNgramSize: 2, earlyStopping: true, maxLength: 20 });
    expect(c.warnings).toEqual([]);
  });

  it('folder defaults, then explicit options; sampling knobs and unknown keys in a file are ignored as HF does', async () => {
    const d = await folder({
      'generation_config.json': {
        ...T5, num_beams: 4, early_stopping: true, length_penalty: 2.0, max_length: 50, no_repeat_ngram_size: 3,
        top_k: 10, temperature: 0.7, do_sample: false, my_own_key: 'x', transformers_version: '4.36.2', _from_model_config: false,
      },
    });
    const c = await loadGenerationConfig(d, { num_beams: 2, max_length: 30 });
    expect(c).toMatchObject({ numBeams: 2, earlyStopping: true, lengthPenalty: 2, maxLength: 30, noRepeatNgramSize: 3, eosTokenIds: [1] });
  });

  it('without generation_config.json takes the generation keys of config.json (from_model_config); without both, defaults', async () => {
    const d = await folder({ 'config.json': { ...T5, d_model: 512, num_beams: 3, vocab_size: 32128, task_specific_params: {} } });
    const read = await readGenerationConfigFile(d);
    expect(read.config).toEqual({ ...T5, num_beams: 3 });
    expect(read.file).toBe(join(d, 'config.json'));
    expect((await loadGenerationConfig(d)).numBeams).toBe(3);
    const empty = await folder({});
    expect((await readGenerationConfigFile(empty)).config).toEqual({});
    expect((await loadGenerationConfig(empty, { decoder_start_token_id: 5 })).decoderStartTokenId).toBe(5);
    await expect(loadGenerationConfig(empty)).rejects.toThrow(/`decoder_start_token_id` or `bos_token_id` has to be defined/);
  });

  it('refuses a file option that would change the result, naming the option and the file', async () => {
    const d = await folder({ 'generation_config.json': { ...T5, constraints: [[1, 5]] } });
    await expect(loadGenerationConfig(d)).rejects.toThrow(/`constraints` is not supported.*generation_config\.json/);
    // sampling reads typical_p from the file and checks it as HF's warper does; without do_sample HF ignores it
    const s = await folder({ 'generation_config.json': { ...T5, do_sample: true, typical_p: -0.5 } });
    await expect(loadGenerationConfig(s)).rejects.toThrow(/`typical_p` has to be a float > 0 and < 1, but is -0.5.*generation_config\.json/);
    const beamSample = await folder({ 'generation_config.json': { ...T5, do_sample: true, num_beams: 4 } });
    expect(await loadGenerationConfig(beamSample)).toMatchObject({ doSample: true, numBeams: 4 });
    const typicalOff = await folder({ 'generation_config.json': { ...T5, do_sample: false, typical_p: 0.9 } });
    expect((await loadGenerationConfig(typicalOff)).doSample).toBe(false);
    // a recent transformers' file: min_p is read (sampling) and stop strings are refused, not skipped
    const minP = await folder({ 'generation_config.json': { ...T5, do_sample: true, min_p: 0.05 } });
    expect((await loadGenerationConfig(minP)).minP).toBe(0.05);
    const stops = await folder({ 'generation_config.json': { ...T5, stop_strings: ['.'] } });
    await expect(loadGenerationConfig(stops)).rejects.toThrow(/`stop_strings` is not supported.*generation_config\.json/);
    const stopsOff = await folder({ 'generation_config.json': { ...T5, stop_strings: null, min_p: null, token_healing: false } });
    expect((await loadGenerationConfig(stopsOff)).minP).toBeNull();
    const bad = await folder({ 'generation_config.json': '{"eos_token_id": 1,' });
    await expect(loadGenerationConfig(bad)).rejects.toThrow(/generation_config\.json: not valid JSON/);
    const arr = await folder({ 'generation_config.json': '[1]' });
    await expect(loadGenerationConfig(arr)).rejects.toThrow(/expected a JSON object/);
    // the values that leave an unsupported option off are fine
    const off = await folder({ 'generation_config.json': { ...T5, repetition_penalty: 1.0, bad_words_ids: null, forced_eos_token_id: null } });
    expect((await loadGenerationConfig(off)).eosTokenIds).toEqual([1]);
  });

  it('resolves lengths as generate(): max_new_tokens n -> max_length n + 1, winning over max_length', () => {
    expect(resolveGenerationConfig(T5, { max_new_tokens: 7 }).maxLength).toBe(8);
    const both = resolveGenerationConfig(T5, { max_new_tokens: 7, max_length: 50 });
    expect(both.maxLength).toBe(8);
    expect(both.warnings.join('\n')).toMatch(/max_new_tokens.*take precedence/);
    expect(resolveGenerationConfig({ ...T5, max_new_tokens: 5 }, { max_length: 50 }).maxLength).toBe(6);
    expect(resolveGenerationConfig(T5, { min_new_tokens: 3 }).minNewTokens).toBe(3);
    expect(resolveGenerationConfig(T5, { min_length: 30 }).warnings.join('\n')).toMatch(/min_length.*larger than the maximum possible length \(20\)/);
  });

  it('token ids: eos as int or list, pad falls back to the first eos, decoder start to bos', () => {
    const c = resolveGenerationConfig({}, { eos_token_id: [3, 1], bos_token_id: 2 });
    expect(c).toMatchObject({ eosTokenIds: [3, 1], padTokenId: 3, decoderStartTokenId: 2 });
    expect(c.warnings.join('\n')).toMatch(/Setting `pad_token_id` to `eos_token_id`:3/);
    expect(resolveGenerationConfig({}, { decoder_start_token_id: 0, eos_token_id: null }).eosTokenIds).toEqual([]);
  });

  it('warns (as HF) about beam-only options with num_beams 1', () => {
    const c = resolveGenerationConfig(T5, { early_stopping: true, length_penalty: 2, max_length: 20 });
    expect(c.warnings.length).toBe(2);
    expect(c.warnings[0]).toMatch(/early_stopping/);
    expect(c.warnings[1]).toMatch(/length_penalty/);
  });

  it('sampling: HF defaults top_k 50, temperature 1, top_p 1; several sequences per input; no beams', () => {
    const c = resolveGenerationConfig(T5, { do_sample: true, num_return_sequences: 3, max_length: 20 });
    expect(c).toMatchObject({ doSample: true, numBeams: 1, numReturnSequences: 3, temperature: 1, topK: 50, topP: 1 });
    expect(c.warnings).toEqual([]);
    // null switches a warper off, as in HF
    expect(resolveGenerationConfig(T5, { do_sample: true, top_k: null, top_p: null, temperature: 0.5, max_length: 20 }))
      .toMatchObject({ topK: 0, topP: 1, temperature: 0.5 });
    // without do_sample the warpers are off whatever their values, and HF's validate() warns about two of them
    const off = resolveGenerationConfig(T5, { temperature: 0.7, top_p: 0.9, top_k: 5, min_p: 0, max_length: 20 });
    expect(off).toMatchObject({ doSample: false, temperature: 1, topK: 0, topP: 1, minP: null });
    expect(off.warnings).toEqual([
      expect.stringMatching(/^`do_sample` is false, but `temperature` is 0.7: it is only used when sampling/),
      expect.stringMatching(/^`do_sample` is false, but `top_p` is 0.9: it is only used when sampling/),
      // HF warns about any min_p that is set, 0 included
      expect.stringMatching(/^`do_sample` is false, but `min_p` is 0: it is only used when sampling/),
    ]);
  });

  it('resolves HF\'s optional processors: off by default; an eos id as int or list; from a file as saved', async () => {
    expect(resolveGenerationConfig(T5, { max_length: 20 })).toMatchObject({
      encoderRepetitionPenalty: 1, encoderNoRepeatNgramSize: 0, badWordsIds: null, sequenceBias: null, forcedBosTokenId: null, forcedEosTokenIds: null, removeInvalidValues: false,
      exponentialDecayLengthPenalty: null, suppressTokens: null, beginSuppressTokens: null, renormalizeLogits: false,
    });
    const options: GenerationOptions = {
      encoder_repetition_penalty: 1.5, encoder_no_repeat_ngram_size: 3, bad_words_ids: [[5], [6, 7]], sequence_bias: [[[8], -1.5]], forced_bos_token_id: 3, forced_eos_token_id: 1, remove_invalid_values: true,
      exponential_decay_length_penalty: [4, 1.2], suppress_tokens: [9], begin_suppress_tokens: [1], renormalize_logits: true,
    };
    const want = {
      encoderRepetitionPenalty: 1.5, encoderNoRepeatNgramSize: 3, badWordsIds: [[5], [6, 7]], sequenceBias: [[[8], -1.5]], forcedBosTokenId: 3, forcedEosTokenIds: [1], removeInvalidValues: true,
      exponentialDecayLengthPenalty: [4, 1.2], suppressTokens: [9], beginSuppressTokens: [1], renormalizeLogits: true,
    };
    expect(resolveGenerationConfig(T5, { ...options, max_length: 20 })).toMatchObject(want);
    expect(resolveGenerationConfig(T5, { forced_eos_token_id: [1, 2], max_length: 20 }).forcedEosTokenIds).toEqual([1, 2]);
    // save_pretrained writes them under HF's names (the pair lists as JSON lists) and they read back the same
    const d = await folder({ 'generation_config.json': JSON.parse(serializeGenerationConfig({ ...T5, ...options })) });
    expect(await loadGenerationConfig(d)).toMatchObject(want);
  });

  const refused: [GenerationOptions | Record<string, unknown>, RegExp][] = [
    [{ max_length: 0 }, /`max_length` must be an integer >= 1, got 0/],
    [{ max_length: 2.5 }, /`max_length`/],
    [{ max_new_tokens: 0 }, /`max_new_tokens` must be an integer >= 1, got 0/],
    [{ min_length: -1 }, /`min_length` must be an integer >= 0/],
    [{ min_new_tokens: -2 }, /`min_new_tokens`/],
    [{ num_beams: 0 }, /`num_beams`/],
    [{ num_beams: 2, num_return_sequences: 3 }, /`num_return_sequences` has to be smaller or equal to `num_beams` \(2\), but is 3/],
    [{ num_return_sequences: 2 }, /`num_return_sequences` has to be 1 when doing greedy search/],
    [{ num_return_sequences: 0 }, /`num_return_sequences`/],
    [{ no_repeat_ngram_size: -1 }, /`no_repeat_ngram_size`/],
    [{ length_penalty: Number.NaN }, /`length_penalty` must be a finite number/],
    [{ early_stopping: 'sometimes' }, /`early_stopping` must be true, false or "never"/],
    [{ eos_token_id: [] }, /`eos_token_id` must not be an empty list/],
    [{ eos_token_id: 'a' }, /`eos_token_id`/],
    [{ pad_token_id: -1 }, /`pad_token_id`/],
    [{ do_sample: 'yes' }, /`do_sample` must be true or false, got "yes"/],
    [{ do_sample: true, num_beams: 2, num_return_sequences: 3 }, /`num_return_sequences` has to be smaller or equal to `num_beams` \(2\), but is 3/],
    [{ do_sample: true, temperature: 0 }, /`temperature` \(=0\) has to be a strictly positive float/],
    [{ temperature: Number.POSITIVE_INFINITY }, /`temperature` must be a finite number/],
    [{ top_k: -1 }, /`top_k` must be an integer >= 0, got -1/],
    [{ top_k: 2.5 }, /`top_k` must be an integer >= 0/],
    [{ top_p: 1.5 }, /`top_p` has to be a float > 0 and < 1, but is 1.5/],
    [{ typical_p: 'x' }, /`typical_p` must be a finite number, got "x"/],
    [{ do_sample: true, typical_p: 0 }, /^generate: `typical_p` has to be a float > 0 and < 1, but is 0$/],
    [{ eta_cutoff: Number.NaN }, /`eta_cutoff` must be a finite number/],
    [{ min_p: 'x' }, /`min_p` must be a finite number or null, got "x"/],
    [{ do_sample: true, min_p: 1.5 }, /^generate: `min_p` has to be a float in the \[0, 1\] interval, but is 1.5$/],
    [{ stop_strings: ['the end'] }, /`stop_strings` is not supported/],
    [{ dola_layers: 'low' }, /`dola_layers` is not supported/],
    [{ token_healing: true }, /`token_healing` is not supported/],
    [{ num_beam_groups: 2 }, /`num_beam_groups` has to be smaller or equal to `num_beams` \(1\), but is 2/],
    [{ num_beam_groups: 2, num_beams: 3, diversity_penalty: 1 }, /`num_beams` should be divisible by `num_beam_groups` for group beam search/],
    [{ num_beam_groups: 2, num_beams: 4 }, /`diversity_penalty` should be greater than `0.0`, otherwise your beam groups will be identical/],
    [{ num_beam_groups: 2, num_beams: 4, diversity_penalty: 1, do_sample: true }, /Diverse beam search cannot be used in sampling mode/],
    [{ diversity_penalty: 0.5 }, /`diversity_penalty` is 0.5 but `num_beam_groups` is 1: it only applies to group beam search/],
    [{ num_beam_groups: 0 }, /`num_beam_groups` must be an integer >= 1/],
    [{ repetition_penalty: 0 }, /`repetition_penalty` has to be a strictly positive float, but is 0/],
    [{ encoder_repetition_penalty: 0 }, /`encoder_repetition_penalty` has to be a strictly positive float, but is 0/],
    [{ encoder_repetition_penalty: 1.2, num_beams: 2 }, /`encoder_repetition_penalty` with 2 decoder rows per input \(beams or samples\) is not supported: HF 4.36 applies it to the batch's first rows/],
    [{ encoder_repetition_penalty: 1.2, do_sample: true, num_return_sequences: 3 }, /`encoder_repetition_penalty` with 3 decoder rows per input/],
    [{ max_time: -1 }, /`max_time` must be a number of seconds >= 0, got -1/],
    [{ encoder_no_repeat_ngram_size: -3 }, /`encoder_no_repeat_ngram_size` must be an integer >= 0, got -3/],
    [{ penalty_alpha: 1.5, top_k: 4 }, /`penalty_alpha` must be a number in \[0, 1\], got 1.5/],
    [{ forced_decoder_ids: [[1]] }, /`forced_decoder_ids` has to be a list of \[position, token id\] pairs/],
    [{ force_words_ids: [[5]] }, /`force_words_ids` is not supported/],
    [{ bad_words_ids: [] }, /`bad_words_ids` has to be a non-empty list, but is \[\]/],
    [{ bad_words_ids: [5] }, /`bad_words_ids` has to be a list of lists, but is \[5\]/],
    [{ bad_words_ids: [[5], [-1]] }, /`bad_words_ids` has to be a list of non-empty lists of token ids \(integers >= 0\)/],
    [{ bad_words_ids: [[5], []] }, /`bad_words_ids` has to be a list of non-empty lists/],
    [{ sequence_bias: { '[5]': 1 } }, /`sequence_bias` has to be a non-empty list of \[tokens, bias\] pairs/],
    [{ sequence_bias: [[[5], 'big']] }, /`sequence_bias` has to pair each token list with a number/],
    [{ sequence_bias: [[[5.5], 1]] }, /`sequence_bias` has to be a list of non-empty lists of token ids/],
    [{ suppress_tokens: 5 }, /`suppress_tokens` has to be a list of token ids, but is 5/],
    [{ begin_suppress_tokens: [1, -2] }, /`begin_suppress_tokens` must be an integer >= 0, got -2/],
    [{ forced_bos_token_id: 1.5 }, /`forced_bos_token_id` must be an integer >= 0/],
    [{ forced_eos_token_id: [] }, /`forced_eos_token_id` must not be an empty list/],
    [{ forced_eos_token_id: [1, 'x'] }, /`forced_eos_token_id` must be an integer >= 0, got "x"/],
    [{ exponential_decay_length_penalty: [5] }, /`exponential_decay_length_penalty` has to be \[start_index, decay_factor\]/],
    [{ exponential_decay_length_penalty: [-1, 1.5] }, /`exponential_decay_length_penalty` has to be \[start_index, decay_factor\]/],
    [{ renormalize_logits: 1 }, /`renormalize_logits` must be true or false, got 1/],
    [{ remove_invalid_values: 'no' }, /`remove_invalid_values` must be true or false/],
    [{ guidance_scale: 1.5 }, /`guidance_scale` is not supported/],
    [{ output_scores: 'yes' }, /`output_scores` must be true or false/],
    [{ max_lenght: 10 }, /`max_lenght` is not a generation option we know/],
  ];
  it.each(refused.map(([o, re]) => [JSON.stringify(o, (_, v) => (Number.isNaN(v) ? 'NaN' : v)), o, re] as const))(
    'refuses %s with a one-line message naming the option',
    (_, o, re) => {
      let message = '';
      try {
        resolveGenerationConfig(T5, o as GenerationOptions);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(re);
      expect(message).not.toContain('\n');
    },
  );

  it('generate() runs greedy search for num_beams 1 and beam search otherwise', async () => {
    const calls: number[] = [];
    const stepper = (rows: number): DecoderStepper => ({
      vocabSize: 3,
      async step(tokens) {
        calls.push(tokens.length);
        expect(tokens.length).toBe(rows);
        return Float32Array.from({ length: rows * 3 }, (_, i) => (i % 3 === 2 ? 1 : 0));
      },
      reorder() {},
    });
    const greedy = await generate(stepper(2), 2, resolveGenerationConfig(T5, { max_length: 3 }));
    expect(greedy.sequences).toEqual([[0, 2, 2], [0, 2, 2]]);
    expect(greedy.sequencesScores).toBeUndefined();
    const beam = await generate(stepper(4), 2, resolveGenerationConfig(T5, { max_length: 3, num_beams: 2 }));
    expect(beam.sequences.length).toBe(2);
    expect(beam.sequencesScores!.length).toBe(2);
    expect(calls).toEqual([2, 2, 4, 4]);
  });
});

describe('generation_config.json written (save_pretrained)', () => {
  const golden = loadT5Config(GOLDEN);

  it('from the model config: the golden file byte for byte, read back as HF defaults', async () => {
    expect(serializeGenerationConfig(generationConfigFromModel(golden))).toBe(readFileSync(join(GOLDEN, 'generation_config.json'), 'utf8'));
    expect(await loadGenerationConfig(GOLDEN)).toMatchObject({
      decoderStartTokenId: 0, eosTokenIds: [1], padTokenId: 0, numBeams: 1, maxLength: 20, earlyStopping: false, lengthPenalty: 1,
    });
  });

  it('with beam options: HF names, Python floats, no _from_model_config; reads back to the same bytes', async () => {
    const gen = generationConfigFromModel(golden, { num_beams: 4, max_length: 64, no_repeat_ngram_size: 3, early_stopping: true, length_penalty: 2, num_return_sequences: 2 });
    const text = serializeGenerationConfig(gen);
    expect(text).toBe(`{
  "decoder_start_token_id": 0,
  "early_stopping": true,
  "eos_token_id": 1,
  "length_penalty": 2.0,
  "max_length": 64,
  "no_repeat_ngram_size": 3,
  "num_beams": 4,
  "num_return_sequences": 2,
  "pad_token_id": 0,
  "transformers_version": "4.36.2"
}
`);
    const d = await folder({ 'generation_config.json': text });
    expect(serializeGenerationConfig((await readGenerationConfigFile(d)).config)).toBe(text);
    expect(await loadGenerationConfig(d)).toMatchObject({ numBeams: 4, maxLength: 64, noRepeatNgramSize: 3, earlyStopping: true, lengthPenalty: 2, numReturnSequences: 2 });
  });

  it('takes generation keys an old-style config.json carries (from_model_config)', () => {
    const text = serializeGenerationConfig(generationConfigFromModel({ ...golden, extra: { num_beams: 3, task_specific_params: {} } }));
    expect(JSON.parse(text)).toEqual({ decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0, num_beams: 3, transformers_version: '4.36.2' });
    expect(() => generationConfigFromModel({ ...golden, extra: { num_beams: 0 } })).toThrow(/`num_beams` must be an integer >= 1, got 0 \(from config\.json\)/);
  });

  it('refuses what HF validate() warns about or generate() raises on, naming the option', () => {
    expect(() => generationConfigFromModel(golden, { early_stopping: true })).toThrow('`early_stopping` is true but `num_beams` is 1');
    expect(() => generationConfigFromModel(golden, { length_penalty: 0.8 })).toThrow('`length_penalty` is 0.8 but `num_beams` is 1');
    expect(() => generationConfigFromModel(golden, { num_beams: 2, num_return_sequences: 3 })).toThrow(/`num_return_sequences` has to be smaller or equal to `num_beams` \(2\)/);
    expect(() => generationConfigFromModel(golden, { num_beams: 0 })).toThrow('`num_beams` must be an integer >= 1');
    expect(() => generationConfigFromModel(golden, { temperature: 0.7 })).toThrow('`temperature` is 0.7 but `do_sample` is false');
    expect(() => generationConfigFromModel(golden, { top_p: 0.9 })).toThrow('`top_p` is 0.9 but `do_sample` is false');
    expect(generationConfigFromModel(golden, { do_sample: true, num_beams: 3 })).toMatchObject({ do_sample: true, num_beams: 3 });
    // what sampling needs is written as HF writes it (floats as Python floats)
    const sampling = serializeGenerationConfig(generationConfigFromModel(golden, { do_sample: true, temperature: 2, top_k: 0, top_p: 0.9 }));
    expect(JSON.parse(sampling)).toMatchObject({ do_sample: true, top_k: 0, top_p: 0.9 });
    expect(sampling).toContain('"temperature": 2.0');
  });

  it('a file read back keeps keys HF does not define or that differ from its defaults, floats as floats', async () => {
    const d = await folder({
      'generation_config.json': { ...T5, top_k: 10, temperature: 1.0, length_penalty: 1.0, bad_words_ids: [[5]], my_own_key: 'x', _from_model_config: true, transformers_version: '4.30.0' },
    });
    expect(JSON.parse(serializeGenerationConfig((await readGenerationConfigFile(d)).config))).toEqual({
      ...T5, top_k: 10, bad_words_ids: [[5]], my_own_key: 'x', transformers_version: '4.36.2',
    });
    expect(serializeGenerationConfig({ ...T5, num_beams: 2, diversity_penalty: 1 })).toContain('"diversity_penalty": 1.0');
  });
});
