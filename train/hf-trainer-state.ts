// last/trainer_state.json as HF's Trainer writes it into a checkpoint (TrainerState.save_to_json), so tools that
// read HF checkpoints (log_history plots, the best checkpoint, the step) read ours. Only TrainerState's fields:
// its load_from_json passes every key to the dataclass, so one more key is an error there. Our own resume state
// (data position, seeds, options) lives beside it in t5_webgpu_state.json.
import type { CheckpointEntry } from './checkpoint.ts';
import type { MetricsLine } from './loss-plot.ts';

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
  best: { entry: CheckpointEntry; dir: string } | null;
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
