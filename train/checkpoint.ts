// Checkpoints of a training run, as Lightning's ModelCheckpoint(monitor="val_loss", save_top_k=k) keeps them:
//
//   OUT/checkpoints/epoch=E-step=S/   the best k by validation loss, each a Hugging Face folder
//   OUT/checkpoints.json              which of them are kept, with their losses, best first
//   OUT/last/                         the latest state: a Hugging Face folder plus what resuming needs
//                                     (optimizer.safetensors: AdamW moments or Adafactor's factored second
//                                     moments, by HF's state names; t5_webgpu_state.json: steps, schedule,
//                                     RNG seed, position in the data order, options) and HF Trainer's
//                                     trainer_state.json, optimizer.pt and scheduler.pt (hf-trainer-state.ts)
//
// Crash safety: every file is written under a temporary name and renamed (writeFileAtomic), and a whole folder
// is written into `OUT/.tmp-*` and renamed into place, so a folder name that exists is complete. `last/` cannot be
// swapped atomically for a new folder (rename(2) will not replace a non-empty directory): the old one is renamed
// to `last.old/` first, the new one renamed in, then `last.old/` removed. A kill between the two renames leaves
// `last.old/`, which findResumeFolder uses. An evicted checkpoint is dropped from checkpoints.json before its
// folder is renamed away and deleted, so the index never names a half-deleted folder.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdamW, AdamWParamState, AdamWState } from '../optim/adamw.ts';
import { hfOptimizerPt, hfSchedulerPt } from './hf-trainer-state.ts';
import { Adafactor, type AdafactorState } from '../optim/adafactor.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { GENERATION_CONFIG_FILE } from '../generate/generation-config-file.ts';
import { readSafetensors, writeSafetensors } from '../hf/safetensors.ts';
import { savePretrained } from '../hf/save-model.ts';
import type { T5ForConditionalGeneration } from '../model/t5-model.ts';
import type { PreprocessConfig } from '../util/text-clean.ts';

export const CHECKPOINTS_DIR = 'checkpoints';
export const CHECKPOINTS_INDEX = 'checkpoints.json';
export const LAST_DIR = 'last';
export const LAST_OLD_DIR = 'last.old';
/** Our resume state. Runs saved before it had its name kept it in trainer_state.json (`version` 1), which is
 * read when this file is missing. */
export const RESUME_STATE_FILE = 't5_webgpu_state.json';
/** HF Trainer's checkpoint state, optimizer and scheduler (hf-trainer-state.ts): for `trainer.train(
 * resume_from_checkpoint=...)` and HF's tools; our resuming reads none of them. */
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const HF_OPTIMIZER_FILE = 'optimizer.pt';
/** optimizer.pt is a zip without zip64, whose offsets stop at 4 GiB: moments over `maxBytes` are left to
 * optimizer.safetensors (t5-base's AdamW moments are 1.8 GB; t5-large's 6.2 GB). Tests lower it. */
export const HF_OPTIMIZER_LIMIT = { maxBytes: 3.5 * 2 ** 30 };
export const HF_SCHEDULER_FILE = 'scheduler.pt';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

export interface CheckpointEntry {
  /** folder name under OUT/checkpoints/ */
  name: string;
  step: number;
  epoch: number;
  valLoss: number;
}

/**
 * Top-k bookkeeping (pure): where a candidate goes in the list sorted by loss (ascending; an equal loss keeps the
 * older checkpoint first, as Lightning), what is kept and what falls out. A NaN loss is never kept.
 */
export function rankCheckpoint(
  kept: readonly CheckpointEntry[], candidate: CheckpointEntry, k: number,
): { accepted: boolean; keep: CheckpointEntry[]; evicted: CheckpointEntry[] } {
  if (k <= 0 || !Number.isFinite(candidate.valLoss)) return { accepted: false, keep: [...kept], evicted: [] };
  const all = [...kept, candidate].sort((a, b) => a.valLoss - b.valLoss || a.step - b.step);
  const keep = all.slice(0, k);
  return { accepted: keep.includes(candidate), keep, evicted: all.slice(k).filter((e) => e !== candidate) };
}

export function checkpointName(epoch: number, step: number): string {
  return `epoch=${epoch}-step=${step}`;
}

let tmpCounter = 0;

/** Writes a folder under a temporary name beside `finalDir`'s parent folder, then renames it into place. */
export async function writeFolderAtomic(parent: string, name: string, write: (dir: string) => Promise<void>): Promise<string> {
  await mkdir(parent, { recursive: true });
  const tmp = join(parent, `.tmp-${name}-${process.pid}-${tmpCounter++}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  try {
    await write(tmp);
    const dest = join(parent, name);
    if (existsSync(dest)) await removeFolder(parent, dest);
    await rename(tmp, dest);
    return dest;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
}

/** Renames a folder to a hidden trash name first so no half-deleted folder keeps a loadable-looking name. */
async function removeFolder(parent: string, dir: string): Promise<void> {
  const trash = join(parent, `.trash-${process.pid}-${tmpCounter++}`);
  await rename(dir, trash);
  await rm(trash, { recursive: true, force: true });
}

export interface ModelFolderFiles {
  /** SentencePiece model copied in as spiece.model */
  spieceModel: string;
  /** stored in t5_webgpu.json: how predict / eval must clean their input */
  preprocess: PreprocessConfig;
  /** a generation_config.json to copy (the source model's), else one is derived from config.json */
  generationConfigFile?: string;
}

/** A Hugging Face folder: config.json, generation_config.json, tokenizer files, t5_webgpu.json, model.safetensors. */
export async function writeModelFolder(dir: string, model: T5ForConditionalGeneration, files: ModelFolderFiles): Promise<void> {
  await savePretrained(model, dir, { tokenizerModel: files.spieceModel, preprocess: files.preprocess });
  if (files.generationConfigFile && existsSync(files.generationConfigFile)) {
    await writeFileAtomic(join(dir, GENERATION_CONFIG_FILE), await readFile(files.generationConfigFile));
  }
}

/** Everything besides weights and moments that resuming needs; all plain JSON. */
export interface TrainerState {
  version: 1;
  /** optimizer steps done */
  step: number;
  /** epoch (0-based) and the index of the next batch of that epoch's order */
  epoch: number;
  batchInEpoch: number;
  /** micro-batches seen (the dropout seed of a micro-batch is derived from seed and this counter) */
  microSteps: number;
  /** the RNG: every random choice (data order, dropout masks) is a function of this seed and the counters above */
  seed: number;
  /** the learning rate the next step would use, for display; the schedule recomputes it from `step` */
  lr: number;
  /** the optimizer's hyperparameters and per-parameter steps (null: not updated yet): AdamW's, or Adafactor's */
  adam?: Omit<AdamWState, 'params'> & { paramSteps: Array<number | null> };
  adafactor?: Omit<AdafactorState, 'params'> & { paramSteps: Array<number | null> };
  best: CheckpointEntry[];
  /** early stopping (HF's EarlyStoppingCallback): the best validation loss so far and the evaluations since it
   * last improved by more than the threshold; absent in runs saved before it existed */
  earlyStopping?: { bestValLoss: number | null; evalsWithoutImprovement: number };
  tokensSeen: number;
  trainSeconds: number;
  /** the resolved training options, so `--resume` needs nothing else */
  options: Record<string, unknown>;
}

/** Each optimizer's per-parameter state tensors: HF's `optimizer.state[p]` keys, and ours. A tensor is saved as
 * `<HF key>.<parameter name>`. */
const ADAMW_TENSORS = [['exp_avg', 'expAvg'], ['exp_avg_sq', 'expAvgSq']] as const;
const ADAFACTOR_TENSORS = [['exp_avg_sq_row', 'expAvgSqRow'], ['exp_avg_sq_col', 'expAvgSqCol'], ['exp_avg_sq', 'expAvgSq'], ['exp_avg', 'expAvg']] as const;

type StateTensors = Map<string, { shape: number[]; data: Float32Array }>;
type ParamState<K extends string> = { step: number } & Partial<Record<K, Float32Array>>;

/** Puts each updated parameter's state tensors (those it has) into `tensors`; returns the per-parameter steps
 * (null: not updated yet). */
function putParamStates<K extends string>(
  params: ReadonlyArray<ParamState<K> | null>, table: ReadonlyArray<readonly [string, K]>, names: string[], tensors: StateTensors,
): Array<number | null> {
  params.forEach((p, i) => {
    if (!p) return;
    for (const [hfKey, key] of table) {
      const data = p[key];
      if (data) tensors.set(`${hfKey}.${names[i]}`, { shape: [data.length], data });
    }
  });
  return params.map((p) => (p ? p.step : null));
}

/** The optimizer's tensors for optimizer.safetensors, its t5_webgpu_state.json entry, and its whole state (for
 * HF's optimizer.pt). */
async function optimizerCheckpoint(opt: AdamW | Adafactor, names: string[]): Promise<{
  tensors: StateTensors; format: string; entry: Pick<TrainerState, 'adam' | 'adafactor'>; state: { adam?: AdamWState; adafactor?: AdafactorState };
}> {
  const tensors: StateTensors = new Map();
  if (opt instanceof Adafactor) {
    const state = await opt.state();
    const { params, ...hyper } = state;
    const paramSteps = putParamStates(params, ADAFACTOR_TENSORS, names, tensors);
    return { tensors, format: 't5-webgpu-adafactor', entry: { adafactor: { ...hyper, paramSteps } }, state: { adafactor: state } };
  }
  const state = await opt.state();
  const { params, ...hyper } = state;
  const paramSteps = putParamStates(params, ADAMW_TENSORS, names, tensors);
  return { tensors, format: 't5-webgpu-adamw', entry: { adam: { ...hyper, paramSteps } }, state: { adam: state } };
}

/** Saves `OUT/last/` (model, optimizer state, trainer state), replacing the previous one safely. */
export async function saveLast(
  out: string, model: T5ForConditionalGeneration, opt: AdamW | Adafactor, files: ModelFolderFiles, state: Omit<TrainerState, 'adam' | 'adafactor'>,
  hf: { trainerState: Record<string, unknown>; baseLr: number; log?: (line: string) => void },
): Promise<string> {
  const names = model.parameters().map(([n]) => n);
  const { tensors: moments, format, entry, state: optState } = await optimizerCheckpoint(opt, names);
  const full: TrainerState = { ...state, ...entry };
  const tmpName = `${LAST_DIR}.new`;
  const written = await writeFolderAtomic(out, tmpName, async (dir) => {
    await writeModelFolder(dir, model, files);
    await writeSafetensors(join(dir, OPTIMIZER_FILE), moments, { format });
    await writeFileAtomic(join(dir, RESUME_STATE_FILE), `${JSON.stringify(full, null, 1)}\n`);
    await writeFileAtomic(join(dir, TRAINER_STATE_FILE), `${JSON.stringify(hf.trainerState, null, 2)}\n`);
    const momentBytes = [...moments.values()].reduce((n, t) => n + t.data.byteLength, 0);
    if (momentBytes <= HF_OPTIMIZER_LIMIT.maxBytes) {
      await writeFileAtomic(join(dir, HF_OPTIMIZER_FILE), hfOptimizerPt({ names, shapes: model.parameters().map(([, p]) => [...p.shape]), ...optState, lr: state.lr, baseLr: hf.baseLr }));
    } else {
      hf.log?.(`last/${HF_OPTIMIZER_FILE} (HF Trainer's) not written: ${(momentBytes / 2 ** 30).toFixed(1)} GiB of moments is over the ${(HF_OPTIMIZER_LIMIT.maxBytes / 2 ** 30).toFixed(1)} GiB a zip without zip64 holds; ${OPTIMIZER_FILE} holds them`);
    }
    await writeFileAtomic(join(dir, HF_SCHEDULER_FILE), hfSchedulerPt(state.step, state.lr, hf.baseLr));
  });
  const last = join(out, LAST_DIR);
  const old = join(out, LAST_OLD_DIR);
  await rm(old, { recursive: true, force: true });
  if (existsSync(last)) await rename(last, old);
  await rename(written, last);
  await rm(old, { recursive: true, force: true });
  return last;
}

/** The folder to resume from: `last/`, or `last.old/` when a kill came between the two renames of saveLast. */
export function findResumeFolder(out: string): string | null {
  for (const name of [LAST_DIR, LAST_OLD_DIR]) {
    const dir = join(out, name);
    if (existsSync(resumeStateFile(dir)) && existsSync(join(dir, OPTIMIZER_FILE))) return dir;
  }
  return null;
}

/** The resume state's file in `dir`: t5_webgpu_state.json, or trainer_state.json in a run saved before it. */
function resumeStateFile(dir: string): string {
  const file = join(dir, RESUME_STATE_FILE);
  return existsSync(file) ? file : join(dir, TRAINER_STATE_FILE);
}

export async function readTrainerState(dir: string): Promise<TrainerState> {
  const file = resumeStateFile(dir);
  const s = JSON.parse(await readFile(file, 'utf8')) as TrainerState;
  if (s.version !== 1) throw new Error(`${file}: not a t5-webgpu resume state (version ${JSON.stringify(s.version)})`);
  return s;
}

/** The per-parameter states saved in `dir`, in this model's parameter order (null: not updated yet); a state
 * that is not `complete` throws, naming the parameter and `what` is missing. */
async function readParamStates<K extends string>(
  dir: string, model: T5ForConditionalGeneration, paramSteps: ReadonlyArray<number | null>, table: ReadonlyArray<readonly [string, K]>,
  complete: (ps: ParamState<K>) => boolean, what: string,
): Promise<Array<ParamState<K> | null>> {
  const tensors = await readSafetensors(join(dir, OPTIMIZER_FILE));
  return model.parameters().map(([name], i) => {
    const step = paramSteps[i];
    if (step === null || step === undefined) return null;
    const arrays: Partial<Record<string, Float32Array>> = {};
    for (const [hfKey, key] of table) {
      const t = tensors.get(`${hfKey}.${name}`);
      if (t) arrays[key] = t.data;
    }
    const ps = { step, ...arrays } as ParamState<K>;
    if (!complete(ps)) throw new Error(`${dir}/${OPTIMIZER_FILE}: ${what} of '${name}' are missing`);
    return ps;
  });
}

/** The AdamW state saved in `dir` for this model's parameter order. */
export async function readOptimizerState(dir: string, model: T5ForConditionalGeneration, s: TrainerState): Promise<AdamWState> {
  if (!s.adam) throw new Error(`${resumeStateFile(dir)}: no AdamW state (the run used ${s.adafactor ? 'Adafactor' : 'another optimizer'})`);
  const { paramSteps, ...hyper } = s.adam;
  const params = await readParamStates(dir, model, paramSteps, ADAMW_TENSORS, (ps) => !!(ps.expAvg && ps.expAvgSq), 'moments');
  return { ...hyper, params: params as Array<AdamWParamState | null> };
}

/** The Adafactor state saved in `dir` for this model's parameter order. */
export async function readAdafactorState(dir: string, model: T5ForConditionalGeneration, s: TrainerState): Promise<AdafactorState> {
  if (!s.adafactor) throw new Error(`${resumeStateFile(dir)}: no Adafactor state (the run used ${s.adam ? 'AdamW' : 'another optimizer'})`);
  const { paramSteps, ...hyper } = s.adafactor;
  const params = await readParamStates(dir, model, paramSteps, ADAFACTOR_TENSORS,
    (ps) => !!(ps.expAvgSq || (ps.expAvgSqRow && ps.expAvgSqCol)), 'the second moments');
  return { ...hyper, params };
}

/** Keeps the best k validation checkpoints of a run. */
export class TopKCheckpoints {
  constructor(readonly out: string, readonly k: number, public kept: CheckpointEntry[] = []) {}

  get best(): CheckpointEntry | null {
    return this.kept[0] ?? null;
  }

  dirOf(e: CheckpointEntry): string {
    return join(this.out, CHECKPOINTS_DIR, e.name);
  }

  /** Saves the model as a checkpoint if its loss ranks in the top k; returns the folder, or null. */
  async offer(model: T5ForConditionalGeneration, files: ModelFolderFiles, entry: CheckpointEntry): Promise<string | null> {
    const r = rankCheckpoint(this.kept, entry, this.k);
    if (!r.accepted) return null;
    const dir = await writeFolderAtomic(join(this.out, CHECKPOINTS_DIR), entry.name, (d) => writeModelFolder(d, model, files));
    this.kept = r.keep;
    await this.writeIndex();
    for (const e of r.evicted) {
      if (existsSync(this.dirOf(e))) await removeFolder(join(this.out, CHECKPOINTS_DIR), this.dirOf(e));
    }
    return dir;
  }

  async writeIndex(): Promise<void> {
    await writeFileAtomic(join(this.out, CHECKPOINTS_INDEX), `${JSON.stringify({ monitor: 'val_loss', mode: 'min', saveTopK: this.k, best: this.kept }, null, 1)}\n`);
  }

  /** Folders under checkpoints/ that the index does not name (left by a kill during an eviction), removed. */
  async sweep(): Promise<void> {
    const dir = join(this.out, CHECKPOINTS_DIR);
    if (!existsSync(dir)) return;
    const keep = new Set(this.kept.map((e) => e.name));
    for (const name of await readdir(dir)) {
      if (!keep.has(name)) await rm(join(dir, name), { recursive: true, force: true });
    }
  }
}
