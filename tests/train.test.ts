// The training loop end to end on a tiny T5 (t5-tiny preset, qa-8k tokenizer) and qa_tiny.csv: loss goes down
// on a fixed batch, checkpoints and metrics land where they should, an interrupted run resumed ends with the
// parameters of an uninterrupted one, a diverging run stops without touching the last good checkpoint, bad
// rows are reported, and `engine-cli eval --json` / `report` work on the result. Sources are cut to 64 tokens
// and runs are a few steps, so the whole file stays near a minute on lavapipe.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initGpu } from '../engine/gpu.ts';
import { memory } from '../engine/tensor.ts';
import { initModelFolder } from '../hf/init-model.ts';
import { readSafetensors, writeSafetensors } from '../hf/safetensors.ts';
import { loadT5WebgpuSettings } from '../hf/hf-folder.ts';
import { train, TrainingDivergedError, type TrainOptions } from '../train/trainer.ts';
import { readAdafactorState, readOptimizerState, readTrainerState, findResumeFolder, HF_OPTIMIZER_LIMIT, OPTIMIZER_FILE } from '../train/checkpoint.ts';
import { parseMetrics } from '../train/loss-plot.ts';
import { parseTorchObject } from '../hf/torch-checkpoint.ts';
import { trainerSkipsDecay } from '../train/optimizer-setup.ts';
import { evalCommand } from '../cli/eval.ts';
import { evaluateFile } from '../train/evaluate.ts';
import { reportCommand } from '../cli/report.ts';
import { profileSummary, trainCommand } from '../cli/train.ts';
import { describeProfile, type ProfileReport } from '../train/profile.ts';
import { fromPretrained } from '../hf/pretrained.ts';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const data = join(fixtures, 'data/qa_tiny.csv');
const root = mkdtempSync(join(tmpdir(), 'train-test-'));
const base = join(root, 'base');
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await initGpu();
  await initModelFolder({ config: 't5-tiny', tokenizer: join(fixtures, 'tokenizers/qa-8k.model'), out: base, seed: 3 });
});

/** Short, deterministic runs: 64-token sources, no shuffling, no dropout, a few generated tokens. */
function opts(out: string, o: Partial<TrainOptions> = {}): TrainOptions {
  return {
    data, model: base, out: join(root, out), limit: 16, validSplit: 0.25, maxSourceLength: 64, maxTargetLength: 16,
    batchSize: 4, evalBatchSize: 4, evalLimit: 2, evalMaxNewTokens: 3, shuffle: false, dropout: 0, lr: 1e-3, cacheDir: null, ...o,
  };
}

async function weights(dir: string): Promise<Map<string, Float32Array>> {
  const m = await readSafetensors(join(dir, 'model.safetensors'));
  return new Map([...m].map(([k, v]) => [k, v.data]));
}

/** transformers 4.57's TrainerState dataclass fields (dataclasses.fields(TrainerState)), sorted. */
const HF_TRAINER_STATE_FIELDS = [
  'best_global_step', 'best_metric', 'best_model_checkpoint', 'epoch', 'eval_steps', 'global_step', 'is_hyper_param_search',
  'is_local_process_zero', 'is_world_process_zero', 'log_history', 'logging_steps', 'max_steps', 'num_input_tokens_seen',
  'num_train_epochs', 'save_steps', 'stateful_callbacks', 'total_flos', 'train_batch_size', 'trial_name', 'trial_params',
];

describe('training loop', () => {
  it('lowers the loss on a fixed batch over 20 steps', async () => {
    // 4 rows, batch 4, no validation: every step sees the same batch
    const liveBefore = memory().bytesLive;
    const r = await train(opts('fixed', { limit: 4, validSplit: 0, maxSteps: 20, epochs: 20 }));
    // the run frees what it made and gives the pool's buffers back (Lightning empties the cache after fit)
    expect(memory().bytesLive).toBe(liveBefore);
    expect(memory().bytesPooled).toBe(0);
    const lines = parseMetrics(readFileSync(r.metricsFile, 'utf8')).filter((l) => l.type === 'train');
    expect(lines.map((l) => l.step)).toEqual([...Array(20).keys()].map((i) => i + 1));
    const first = lines[0]!.loss;
    const last = lines.at(-1)!.loss;
    // memorising one batch: the loss must fall clearly (a sign error or a missing update would leave it flat)
    expect(last).toBeLessThan(first * 0.8);
    expect(r.steps).toBe(20);
    expect(existsSync(r.plotFile)).toBe(true);
    expect(readFileSync(r.plotFile, 'utf8')).toContain('<polyline class="series"');
  });

  it('label smoothing reaches the training loss and the validation loss (lr 1e-12: the weights stay the same)', async () => {
    const losses = async (labelSmoothing: number) => {
      const r = await train(opts(`smooth-${labelSmoothing}`, { maxSteps: 1, lr: 1e-12, labelSmoothing, evalLimit: 0 }));
      const lines = parseMetrics(readFileSync(r.metricsFile, 'utf8'));
      return { train: lines.find((l) => l.type === 'train')!.loss, eval: lines.find((l) => l.type === 'eval')!.loss };
    };
    const plain = await losses(0);
    const smoothed = await losses(0.1);
    // engine-cli eval reports the smoothed loss on request
    const evalLoss = async (labelSmoothing: number) =>
      (await evaluateFile({ model: join(root, 'smooth-0', 'last'), data, limit: 4, generateLimit: 0, maxSourceLength: 64, labelSmoothing })).loss;
    expect(Math.abs((await evalLoss(0.1)) - (await evalLoss(0)))).toBeGreaterThan(1e-3 * plain.eval);
    await expect(evalLoss(1)).rejects.toThrow('eval: label smoothing must be in [0, 1), got 1');
    // the smoothed loss adds ε·(mean over the vocabulary of −log p − nll): larger for a model that already
    // prefers the labels over the other tokens, different in any case
    expect(Math.abs(smoothed.train - plain.train)).toBeGreaterThan(1e-3 * plain.train);
    expect(Math.abs(smoothed.eval - plain.eval)).toBeGreaterThan(1e-3 * plain.eval);
    await expect(train(opts('smooth-bad', { labelSmoothing: 1 }))).rejects.toThrow('label smoothing must be in [0, 1), got 1');
  });

  it('early stopping: stops after `patience` evaluations without an improvement above the threshold, and saves the count', async () => {
    // lr 1e-12: the validation loss moves by far less than the threshold, so only the first evaluation improves
    const base = { maxSteps: 8, lr: 1e-12, evalEvery: 1, evalLimit: 0, earlyStoppingThreshold: 1e-4 };
    const r = await train(opts('early', { ...base, earlyStoppingPatience: 2 }));
    expect([r.stoppedEarly, r.steps]).toEqual([true, 3]);
    const st = await readTrainerState(findResumeFolder(r.out)!);
    expect(st.earlyStopping?.evalsWithoutImprovement).toBe(2);
    const evals = parseMetrics(readFileSync(r.metricsFile, 'utf8')).filter((l) => l.type === 'eval');
    expect(evals.map((e) => e.step)).toEqual([1, 2, 3]);
    expect(st.earlyStopping?.bestValLoss).toBe(Math.min(...evals.map((e) => e.loss)));
    const patient = await train(opts('early-patient', { ...base, maxSteps: 3, earlyStoppingPatience: 3 }));
    expect([patient.stoppedEarly, patient.steps]).toEqual([false, 3]);
  });

  it('evaluates at epoch ends, keeps the best 2 checkpoints as HF folders, and eval/report read them', async () => {
    // 12 training rows, batch 4: 3 steps per epoch, 3 epochs -> evaluations at steps 3, 6, 9
    const r = await train(opts('topk', { epochs: 3 }));
    const evals = parseMetrics(readFileSync(r.metricsFile, 'utf8')).filter((l) => l.type === 'eval');
    expect(evals.map((e) => e.step)).toEqual([3, 6, 9]);
    const index = JSON.parse(readFileSync(join(r.out, 'checkpoints.json'), 'utf8')) as { best: Array<{ name: string; valLoss: number; step: number }> };
    const sorted = [...evals].sort((a, b) => a.loss - b.loss).slice(0, 2);
    expect(index.best.map((b) => b.step)).toEqual(sorted.map((e) => e.step));
    for (const b of index.best) {
      const dir = join(r.out, 'checkpoints', b.name);
      for (const f of ['config.json', 'generation_config.json', 'spiece.model', 'tokenizer_config.json', 'special_tokens_map.json', 't5_webgpu.json', 'model.safetensors']) {
        expect(existsSync(join(dir, f)), `${b.name}/${f}`).toBe(true);
      }
      expect(loadT5WebgpuSettings(dir).preprocess?.lowercase).toBe(true);
    }
    // the evicted one is gone, no temp folders are left
    const names = (await import('node:fs')).readdirSync(join(r.out, 'checkpoints'));
    expect(names.sort()).toEqual(index.best.map((b) => b.name).sort());
    expect((await import('node:fs')).readdirSync(r.out).filter((n) => n.startsWith('.tmp') || n.startsWith('.trash') || n === 'last.old')).toEqual([]);

    // eval --json on the best checkpoint: the same validation loss the run logged for it (same rows, same cleaning)
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const valid = join(root, 'valid.csv');
    try {
      // the run's validation rows are rows 13..16 of the 16 used: hand eval exactly those through a CSV
      const { splitRows } = await import('../train/split.ts');
      const { readQaCsv } = await import('../tasks/csv-data.ts');
      const { rows } = await readQaCsv(data, { limit: 16 });
      const v = splitRows(rows, { validFraction: 0.25, seed: 101 }).valid;
      const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
      writeFileSync(valid, `context,question,text\n${v.map((x) => [x.context, x.question, x.answer].map(q).join(',')).join('\n')}\n`);
      await evalCommand(['--model', r.bestDir!, '--data', valid, '--json', '--quiet', '--max-source-length', '64', '--max-target-length', '16', '--max-new-tokens', '3']);
      const out = JSON.parse(String(write.mock.calls.at(-1)![0])) as Record<string, number>;
      expect(Object.keys(out)).toEqual(['loss', 'exactMatch', 'f1', 'examples']);
      expect(out.examples).toBe(4);
      // float32 sums in another batch order: agreement to 1e-4 relative
      expect(Math.abs(out.loss! - r.best!.valLoss) / r.best!.valLoss).toBeLessThan(1e-4);
      // beam search answers too (HF's beam search; two beams)
      await evalCommand(['--model', r.bestDir!, '--data', valid, '--json', '--quiet', '--num-beams', '2', '--generate-limit', '2', '--max-source-length', '64', '--max-new-tokens', '3']);
      const beams = JSON.parse(String(write.mock.calls.at(-1)![0])) as Record<string, number>;
      expect(beams.examples).toBe(4);
      expect(beams.exactMatch).toBeGreaterThanOrEqual(0);
      await reportCommand([r.out]);
      expect(String(write.mock.calls.at(-1)![0])).toContain('loss plot:');
    } finally {
      write.mockRestore();
    }
  });

  // the case (no shuffling, no dropout), and one with shuffling, dropout and gradient accumulation, which
  // holds because the epoch order and the dropout masks are functions of the seed and the stored counters
  const resumeCases: Array<[string, Partial<TrainOptions>, number, number[]]> = [
    // 3 steps per epoch, 7 steps: the stop falls mid-epoch (after step 4), the run crosses an epoch end after it
    ['no shuffle, dropout 0', { maxSteps: 7 }, 4, [4, 1, 1]],
    // 3 batches per epoch in steps of 2 + 1 micro-batches: stop after step 3 = epoch 2, batch 2
    ['shuffle, dropout 0.1, grad accum 2', { maxSteps: 6, shuffle: true, dropout: 0.1, gradAccum: 2 }, 3, [3, 1, 2]],
    // Adafactor's factored moments and step counts go through last/ too
    ['adafactor, shuffle', { maxSteps: 5, shuffle: true, optim: 'adafactor' }, 2, [2, 0, 2]],
  ];
  for (const [name, o, stopAt, position] of resumeCases) {
    it(`an interrupted and resumed run ends with the parameters of an uninterrupted one (${name})`, async () => {
      const tag = name.replace(/\W+/g, '-');
      const full = await train(opts(`full-${tag}`, o));
      let steps = 0;
      const part = await train(opts(`resumed-${tag}`, o), { step: () => void steps++, shouldStop: () => steps >= stopAt });
      expect(part.interrupted).toBe(true);
      expect(part.steps).toBe(stopAt);
      const st = await readTrainerState(findResumeFolder(part.out)!);
      expect([st.step, st.epoch, st.batchInEpoch]).toEqual(position);
      const saved = await readSafetensors(join(findResumeFolder(part.out)!, OPTIMIZER_FILE));
      if (o.optim === 'adafactor') {
        expect(st.adam).toBeUndefined();
        expect(st.adafactor?.hyper).toMatchObject({ relativeStep: false, scaleParameter: false, beta1: null });
        // a matrix keeps a row and a column vector, a layer norm its full second moment (HF's state names)
        const [rows, cols] = [saved.get('exp_avg_sq_row.shared.weight'), saved.get('exp_avg_sq_col.shared.weight')];
        expect(rows!.data.length).toBeGreaterThan(cols!.data.length);
        expect(saved.has('exp_avg_sq.shared.weight')).toBe(false);
        expect(saved.get('exp_avg_sq.encoder.final_layer_norm.weight')!.data.length).toBe(cols!.data.length);
        expect([...saved.keys()].some((k) => k.startsWith('exp_avg.'))).toBe(false);
      } else expect(saved.has('exp_avg.shared.weight')).toBe(true);
      // HF Trainer's optimizer.pt: Trainer's groups (decay, then norms and biases), the same moments in each
      // parameter's shape, in that order; scheduler.pt at our step (transformers 4.57 resumes from it: by hand)
      const dir = findResumeFolder(part.out)!;
      const hfOpt = parseTorchObject(readFileSync(join(dir, 'optimizer.pt')), 'optimizer.pt') as Map<string, any>;
      const reloaded = await fromPretrained(dir);
      const named = reloaded.parameters().map(([n, p]) => [n, p.shape] as const);
      reloaded.dispose();
      const order = [...named.filter(([n]) => !trainerSkipsDecay(n)), ...named.filter(([n]) => trainerSkipsDecay(n))];
      const groups = hfOpt.get('param_groups') as Array<Map<string, any>>;
      expect(groups.map((g) => g.get('params').length)).toEqual([order.length - named.filter(([n]) => trainerSkipsDecay(n)).length, named.filter(([n]) => trainerSkipsDecay(n)).length]);
      const key = o.optim === 'adafactor' ? 'exp_avg_sq_row' : 'exp_avg';
      let compared = 0;
      order.forEach(([name, shape], pos) => {
        const st = (hfOpt.get('state') as Map<number, Map<string, any>>).get(pos);
        const ours = saved.get(`${key}.${name}`);
        if (!st || !ours) return;
        expect(Array.from(st.get(key).data as Float32Array), name).toEqual(Array.from(ours.data));
        if (o.optim !== 'adafactor') expect(st.get(key).shape, name).toEqual(shape);
        compared++;
      });
      expect(compared).toBeGreaterThan(5);
      const sched = parseTorchObject(readFileSync(join(dir, 'scheduler.pt')), 'scheduler.pt') as Map<string, unknown>;
      expect(sched.get('last_epoch')).toBe(stopAt);
      // the first case also plays a kill between saveLast's two renames: only last.old/ is left
      if (o.shuffle !== true) renameSync(join(part.out, 'last'), join(part.out, 'last.old'));
      const resumed = await train({ out: part.out, resume: true, data: '', model: '' });
      expect(resumed.steps).toBe(full.steps);
      expect(existsSync(join(part.out, 'last.old'))).toBe(false);
      const a = await weights(full.lastDir);
      const b = await weights(resumed.lastDir);
      let maxDiff = 0;
      for (const [k, v] of a) {
        const w = b.get(k)!;
        for (let i = 0; i < v.length; i++) maxDiff = Math.max(maxDiff, Math.abs(v[i]! - w[i]!));
      }
      // the same kernels on the same inputs: bit-identical in practice; 1e-6 allows a reordered reduction
      // (one Adam step at lr 1e-3 moves a weight by ~1e-3, so a lost moment or a wrong batch shows far above it)
      expect(maxDiff).toBeLessThanOrEqual(1e-6);
      // the metrics of the resumed run continue the interrupted one's without repeats
      const logged = parseMetrics(readFileSync(resumed.metricsFile, 'utf8')).filter((l) => l.type === 'train').map((l) => l.step);
      expect(logged).toEqual([...Array(full.steps).keys()].map((i) => i + 1));
      // a state tensor missing from optimizer.safetensors is named; the other optimizer's reader refuses the state
      const last = resumed.lastDir;
      const lastState = await readTrainerState(last);
      const tensors = await readSafetensors(join(last, OPTIMIZER_FILE));
      const adafactor = o.optim === 'adafactor';
      tensors.delete(adafactor ? 'exp_avg_sq_col.shared.weight' : 'exp_avg_sq.shared.weight');
      await writeSafetensors(join(last, OPTIMIZER_FILE), tensors);
      const model = await fromPretrained(last);
      try {
        const [read, other] = adafactor ? [readAdafactorState, readOptimizerState] : [readOptimizerState, readAdafactorState];
        await expect(read(last, model, lastState)).rejects.toThrow(`${OPTIMIZER_FILE}: ${adafactor ? 'the second moments' : 'moments'} of 'shared.weight' are missing`);
        await expect(other(last, model, lastState)).rejects.toThrow(adafactor ? 'no AdamW state (the run used Adafactor)' : 'no Adafactor state (the run used AdamW)');
      } finally {
        model.dispose();
      }
    });
  }

  it('stops on a NaN/Inf loss and leaves the last good checkpoint loadable', async () => {
    const out = 'diverge';
    let err: unknown;
    try {
      // lr 1e30: the first update blows the weights up, the next loss is not finite
      await train(opts(out, { lr: 1e30, maxSteps: 6, saveEvery: 1, validSplit: 0 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainingDivergedError);
    const e = err as TrainingDivergedError;
    expect(e.message).toMatch(/training stopped at step \d+: the loss is (NaN|Infinity|-Infinity)/);
    const last = findResumeFolder(join(root, out))!;
    const st = await readTrainerState(last);
    expect(st.step).toBe(e.step - 1);
    const m = await fromPretrained(last);
    m.dispose();
  });

  it('reports bad rows with line numbers, and --bad-rows error makes them fatal', async () => {
    const file = join(root, 'bad.csv');
    const good = readFileSync(data, 'utf8').split('\n').slice(0, 9).join('\n');
    writeFileSync(file, `${good}\n"a context",a question,\n"another context","q","a"\n`);
    const log: string[] = [];
    const r = await train(opts('badrows', { data: file, limit: undefined, maxSteps: 1, validSplit: 0 }), { log: (l) => log.push(l) });
    expect(r.steps).toBe(1);
    expect(log.join('\n')).toMatch(/skipped 1 bad row: line 10/);
    await expect(train(opts('badrows2', { data: file, limit: undefined, maxSteps: 1, validSplit: 0, onBadRow: 'error' }))).rejects.toThrow(/bad\.csv:10: empty answer/);
  });

  it('names a missing CSV before it loads the model (which could be a Hub download)', async () => {
    const missing = join(root, 'no-such.csv');
    // a Hub id that would need the network: the data check must come first, so the test never reaches it
    await expect(train(opts('missing', { data: missing, model: 'nobody/no-such-model' }))).rejects.toThrow(`${missing}: cannot read: no such file`);
    await expect(train(opts('missing2', { valid: missing, validSplit: 0 }))).rejects.toThrow(`${missing}: cannot read: no such file`);
    expect(existsSync(join(root, 'missing'))).toBe(false);
    // and eval
    await expect(evaluateFile({ model: 'nobody/no-such-model', data: missing })).rejects.toThrow(`${missing}: cannot read: no such file`);
  });

  it("eval answers by search even when the folder's generation_config.json samples", async () => {
    const { cpSync } = await import('node:fs');
    const sampling = join(root, 'sampling-model');
    cpSync(base, sampling, { recursive: true });
    const gen = JSON.parse(readFileSync(join(base, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(sampling, 'generation_config.json'), JSON.stringify({ ...gen, do_sample: true, top_k: 0, temperature: 5 }));
    const run = async (model: string) =>
      (await evaluateFile({ model, data, limit: 3, maxSourceLength: 64, maxNewTokens: 6 })).predictions.map((q) => q.prediction);
    const searched = await run(base);
    // temperature 5 over 8,192 tokens: two sampled runs would all but surely differ from greedy and each other
    expect(await run(sampling)).toEqual(searched);
    expect(await run(sampling)).toEqual(searched);
  });

  it('engine-cli train --profile: the summary carries the profile when --quiet hid the log, or says none was taken', async () => {
    const report: ProfileReport = {
      ms: { matmul: 80, attention: 15, other: 5 }, dispatches: { matmul: 8, attention: 2, other: 6 }, distinct: 9, stepMs: 110,
      top: [{ name: 'matmul subgroup', ms: 80, count: 8 }], rest: { names: 0, ms: 0 }, sites: [],
    };
    expect(profileSummary(true, true, report)).toBe(`${describeProfile(report)}\n`);
    expect(profileSummary(true, false, report)).toBe(''); // logged when it was taken
    expect(profileSummary(false, true, undefined)).toBe('');
    // through the command: one step, and the profiled step is the second
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await trainCommand(['--data', data, '--model', base, '--out', join(root, 'cli-profile'), '--limit', '4', '--valid-split', '0',
        '--max-steps', '1', '--batch-size', '2', '--max-source-length', '32', '--max-target-length', '8', '--profile', '--quiet']);
      const printed = write.mock.calls.map((c) => String(c[0])).join('');
      expect(printed).toMatch(/^finished after 1 steps/m);
      expect(printed).toMatch(/^profile: none taken \(the run ended before its second step/m);
    } finally {
      write.mockRestore();
    }
  });

  it("moments over what optimizer.pt is built for: HF Trainer's file is left out with a log line, and the run resumes", async () => {
    const lines: string[] = [];
    HF_OPTIMIZER_LIMIT.maxBytes = 1024;
    try {
      const r = await train(opts('hf-optimizer-limit', { maxSteps: 2 }), { log: (l) => lines.push(l) });
      expect(existsSync(join(r.lastDir, 'optimizer.pt'))).toBe(false);
      expect(existsSync(join(r.lastDir, 'scheduler.pt'))).toBe(true);
      expect(lines.join('\n')).toMatch(/last\/optimizer\.pt \(HF Trainer's\) not written: 0\.\d GiB of moments is over the 0\.0 GiB .*optimizer\.safetensors holds them/);
      const resumed = await train({ out: r.out, resume: true, data: '', model: '', maxSteps: 3 });
      expect(resumed.steps).toBe(3);
    } finally {
      HF_OPTIMIZER_LIMIT.maxBytes = 3.5 * 2 ** 30;
    }
  });

  it('engine-cli train: SIGTERM (kill, docker stop) finishes the step, saves last/ and reports the run interrupted', async () => {
    const out = join(root, 'cli-sigterm');
    const listeners = process.listenerCount('SIGTERM');
    const errors: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    // the signal comes as the plan is logged, before the first step (kernels compiling, on a CPU for minutes): the
    // run stops with no step done, which wrote no metrics yet (the loss plot had crashed on the missing file)
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      errors.push(String(s));
      if (String(s).startsWith('training:')) process.emit('SIGTERM');
      return true;
    });
    try {
      await trainCommand(['--data', data, '--model', base, '--out', out, '--limit', '8', '--valid-split', '0.25', '--max-steps', '50',
        '--batch-size', '2', '--eval-limit', '1', '--max-source-length', '48', '--max-target-length', '8', '--json']);
      const r = JSON.parse(String(write.mock.calls.at(-1)![0])) as Record<string, unknown>;
      expect(r).toMatchObject({ interrupted: true, steps: 0 });
      expect(existsSync(join(out, 'loss.svg'))).toBe(true);
      expect(existsSync(join(out, 'last', 't5_webgpu_state.json'))).toBe(true);
      expect(errors.join(''), errors.join('')).toContain('SIGTERM: stopping at the end of this step and saving last/');
    } finally {
      write.mockRestore();
      err.mockRestore();
    }
    expect(process.listenerCount('SIGTERM')).toBe(listeners);
  });

  it('engine-cli train: flags to options, --json summary, --resume continues to a new --max-steps', async () => {
    const out = join(root, 'cli');
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await trainCommand(['--data', data, '--model', base, '--out', out, '--limit', '8', '--valid-split', '0.25', '--max-steps', '2',
        '--batch-size', '3', '--eval-batch-size', '2', '--eval-limit', '1', '--eval-max-new-tokens', '2', '--max-source-length', '48',
        '--max-target-length', '8', '--no-shuffle', '--dropout', '0', '--lr-schedule', 'linear', '--warmup-ratio', '0.5', '--json', '--quiet',
        '--optim', 'adafactor', '--label-smoothing', '0.1']);
      const a = JSON.parse(String(write.mock.calls.at(-1)![0])) as Record<string, unknown>;
      expect(a.steps).toBe(2);
      expect(a.interrupted).toBe(false);
      expect(typeof a.loss).toBe('number');
      const lrs = parseMetrics(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).filter((l) => l.type === 'train').map((l) => l.lr);
      // linear schedule, warm-up ratio 0.5 of 2 steps = 1 step: lr 0 at step 0, then 1e-4 * (2 - 1) / (2 - 1)
      expect(lrs).toEqual([0, 1e-4]);
      const saved = await readTrainerState(join(out, 'last'));
      expect(saved.options).toMatchObject({ optim: 'adafactor', labelSmoothing: 0.1 });
      expect(saved.adafactor?.paramSteps.length).toBeGreaterThan(0);
      // last/trainer_state.json is HF Trainer's: exactly TrainerState's fields (4.57), which load_from_json needs
      const hf = JSON.parse(readFileSync(join(out, 'last', 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
      expect(Object.keys(hf).sort()).toEqual(HF_TRAINER_STATE_FIELDS);
      expect(hf).toMatchObject({ global_step: 2, max_steps: 2, train_batch_size: 3, epoch: 1, best_global_step: 2 });
      expect(hf.log_history).toEqual([
        { epoch: 0.5, learning_rate: 0, loss: expect.any(Number), step: 1 },
        { epoch: 1, learning_rate: 1e-4, loss: expect.any(Number), step: 2 },
        { epoch: 1, eval_loss: expect.any(Number), eval_exact_match: expect.any(Number), eval_f1: expect.any(Number), eval_runtime: expect.any(Number), step: 2 },
      ]);
      expect(existsSync(hf.best_model_checkpoint as string)).toBe(true);
      // a run saved before t5_webgpu_state.json kept our state in trainer_state.json: it still resumes
      renameSync(join(out, 'last', 't5_webgpu_state.json'), join(out, 'last', 'trainer_state.json'));
      await trainCommand(['--resume', out, '--max-steps', '3', '--json', '--quiet']);
      const b = JSON.parse(String(write.mock.calls.at(-1)![0])) as Record<string, unknown>;
      expect(b.steps).toBe(3);
    } finally {
      write.mockRestore();
    }
    await expect(trainCommand(['--data', data, '--model', base, '--out', out, '--quiet'])).rejects.toThrow(/already holds a training run/);
    await expect(trainCommand(['--data', data, '--model', base, '--out', join(root, 'x'), '--lr', 'fast'])).rejects.toThrow("train: --lr: expected a number, got 'fast'");
    await expect(trainCommand(['--data', data, '--out', join(root, 'x')])).rejects.toThrow(/--model is required/);
  });
});
