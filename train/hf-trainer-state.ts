// What HF's Trainer writes into a checkpoint besides the model, so that `trainer.train(resume_from_checkpoint=
// 'OUT/last')` continues our run with its optimizer moments and schedule position, and HF's tools read it:
//   trainer_state.json  TrainerState's fields only (its load_from_json passes every key to the dataclass)
//   optimizer.pt        the torch optimizer's state_dict in Trainer's two param groups (decay, no decay)
//   scheduler.pt        the LambdaLR state_dict at our step
// Our own resume state (data position, seeds, options) lives beside them in t5_webgpu_state.json, and our moments
// in optimizer.safetensors. The data order and dropout draws are ours: HF's run continues from the same step,
// weights and moments, not the same batches.
import { pyTuple, PyFloat, torchSaveBytes, torchSaveParts, torchTensor, type PyValue } from '../hf/torch-save.ts';
import type { AdafactorState } from '../optim/adafactor.ts';
import type { AdamWState } from '../optim/adamw.ts';
import type { MetricsLine } from './loss-plot.ts';
import { trainerSkipsDecay } from './optimizer-setup.ts';

export interface HfTrainerStateInput {
  step: number;
  stepsPerEpoch: number;
  maxSteps: number;
  numTrainEpochs: number;
  batchSize: number;
  logEvery: number;
  /** steps between evaluations; HF's 500 when evaluating once per epoch */
  evalEvery?: number;
  saveEvery?: number;
  tokensSeen: number;
  /** metrics.jsonl's lines up to `step` */
  metrics: readonly MetricsLine[];
  /** the best checkpoint so far and its folder (as HF: the path it was saved under) */
  best: { entry: { step: number; valLoss: number }; dir: string } | null;
}

/** HF's defaults for TrainingArguments' logging_steps, eval_steps and save_steps. */
const HF_STEPS_DEFAULT = 500;

/** TrainerState's JSON: log_history holds a train entry per logged step ({loss, learning_rate, epoch, step}, epoch
 * fractional as HF counts it) and an eval entry per evaluation (eval_loss, eval_exact_match, eval_f1, eval_runtime). */
export function hfTrainerState(i: HfTrainerStateInput): Record<string, unknown> {
  const epochAt = (step: number) => Number((step / Math.max(1, i.stepsPerEpoch)).toFixed(4));
  const logHistory = i.metrics.filter((m) => m.step <= i.step).map((m) =>
    m.type === 'train'
      ? { epoch: epochAt(m.step), learning_rate: m.lr, loss: m.loss, step: m.step }
      : { epoch: epochAt(m.step), eval_loss: m.loss, eval_exact_match: m.exactMatch, eval_f1: m.f1, eval_runtime: m.seconds, step: m.step });
  return {
    best_global_step: i.best?.entry.step ?? null,
    best_metric: i.best?.entry.valLoss ?? null,
    best_model_checkpoint: i.best?.dir ?? null,
    epoch: epochAt(i.step),
    eval_steps: i.evalEvery ?? HF_STEPS_DEFAULT,
    global_step: i.step,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: logHistory,
    logging_steps: i.logEvery,
    max_steps: i.maxSteps,
    num_input_tokens_seen: i.tokensSeen,
    num_train_epochs: i.numTrainEpochs,
    save_steps: i.saveEvery ?? HF_STEPS_DEFAULT,
    stateful_callbacks: {},
    total_flos: 0,
    train_batch_size: i.batchSize,
    trial_name: null,
    trial_params: null,
  };
}

export interface HfOptimizerInput {
  /** the model's parameter names and shapes, in model.parameters() order (HF's named_parameters order) */
  names: string[];
  shapes: number[][];
  adam?: AdamWState;
  adafactor?: AdafactorState;
  /** the rate the next step uses, and the schedule's base rate */
  lr: number;
  baseLr: number;
}

/** Trainer's param groups: the indices (into `names`) of the decayed parameters, then of the others. */
function trainerGroups(names: string[]): [number[], number[]] {
  const all = names.map((n, i) => [n, i] as const);
  return [all.filter(([n]) => !trainerSkipsDecay(n)).map(([, i]) => i), all.filter(([n]) => trainerSkipsDecay(n)).map(([, i]) => i)];
}

const f32 = (x: number) => new PyFloat(x);

/**
 * optimizer.pt: the state_dict of the optimizer Trainer builds, torch.optim.AdamW for AdamW's moments (ours are
 * the same m and v whichever AdamW variant made them) or transformers' Adafactor, with Trainer's groups: state
 * keyed by position in [decay group..., no-decay group...].
 */
export function hfOptimizerPt(i: HfOptimizerInput): Uint8Array[] {
  const groups = trainerGroups(i.names);
  const order = groups.flat();
  const state = new Map<number, PyValue>();
  const paramGroups: PyValue[] = [];
  if (i.adam) {
    const a = i.adam;
    order.forEach((p, pos) => {
      const s = a.params[p];
      if (!s) return;
      state.set(pos, new Map<string, PyValue>([
        ['step', torchTensor(Float32Array.of(s.step), [])],
        ['exp_avg', torchTensor(s.expAvg, i.shapes[p]!)],
        ['exp_avg_sq', torchTensor(s.expAvgSq, i.shapes[p]!)],
      ]));
    });
    let at = 0;
    groups.forEach((g, k) => {
      paramGroups.push(new Map<string, PyValue>([
        ['weight_decay', f32(k === 0 ? a.weightDecay : 0)], ['lr', f32(i.lr)], ['betas', pyTuple(f32(a.betas[0]), f32(a.betas[1]))],
        ['eps', f32(a.eps)], ['amsgrad', false], ['maximize', false], ['foreach', null], ['capturable', false],
        ['differentiable', false], ['fused', null], ['decoupled_weight_decay', true], ['initial_lr', f32(i.baseLr)],
        ['params', g.map(() => at++)],
      ]));
    });
  } else if (i.adafactor) {
    const a = i.adafactor;
    order.forEach((p, pos) => {
      const s = a.params[p];
      if (!s) return;
      const entries: Array<[string, PyValue]> = [['step', s.step]];
      if (s.expAvgSqRow) entries.push(['exp_avg_sq_row', torchTensor(s.expAvgSqRow, [s.expAvgSqRow.length])]);
      if (s.expAvgSqCol) entries.push(['exp_avg_sq_col', torchTensor(s.expAvgSqCol, [s.expAvgSqCol.length])]);
      if (s.expAvgSq) entries.push(['exp_avg_sq', torchTensor(s.expAvgSq, i.shapes[p]!)]);
      if (s.expAvg) entries.push(['exp_avg', torchTensor(s.expAvg, i.shapes[p]!)]);
      state.set(pos, new Map(entries));
    });
    const h = a.hyper;
    let at = 0;
    groups.forEach((g, k) => {
      paramGroups.push(new Map<string, PyValue>([
        ['lr', h.lr === null ? null : f32(i.lr)], ['eps', pyTuple(f32(h.eps[0]), f32(h.eps[1]))], ['clip_threshold', f32(h.clipThreshold)],
        ['decay_rate', f32(h.decayRate)], ['beta1', h.beta1 === null ? null : f32(h.beta1)], ['weight_decay', f32(k === 0 ? h.weightDecay : 0)],
        ['scale_parameter', h.scaleParameter], ['relative_step', h.relativeStep], ['warmup_init', h.warmupInit],
        ['initial_lr', h.lr === null ? null : f32(i.baseLr)], ['params', g.map(() => at++)],
      ]));
    });
  } else {
    throw new Error('hfOptimizerPt: no optimizer state');
  }
  return torchSaveParts(new Map<string, PyValue>([['state', state], ['param_groups', paramGroups]]));
}

/** scheduler.pt: torch's LambdaLR state_dict after `step` scheduler steps, one entry per param group. */
export function hfSchedulerPt(step: number, lr: number, baseLr: number): Uint8Array {
  return torchSaveBytes(new Map<string, PyValue>([
    ['base_lrs', [f32(baseLr), f32(baseLr)]], ['last_epoch', step], ['_step_count', step + 1], ['_is_initial', false],
    ['_get_lr_called_within_step', false], ['_last_lr', [f32(lr), f32(lr)]], ['lr_lambdas', [null, null]],
  ]));
}
