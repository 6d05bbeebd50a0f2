// `npm run demo`: the tutorial's whole job with what the repository ships, through the same functions the CLI
// calls (each step prints the equivalent engine-cli command):
//   1. a new T5 from scratch (t5-tiny shape) with the shipped SentencePiece model (demo/qa-8k.model)
//   2. fine-tuning on demo/qa_demo.csv (2,000 SQuAD/QED rows) with 10% held out, for a few minutes
//   3. validation loss, exact match and F1 on the held-out rows, checkpoints, metrics and a loss plot
//   4. answers to a few held-out questions from the best checkpoint
// A model this small trained this briefly answers poorly; the numbers are printed as they come.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { initGpu } from '../engine/gpu.ts';
import { initModelFolder } from '../hf/init-model.ts';
import { loadModelForCli } from '../hf/load-model.ts';
import { generateIds, padBatch } from '../generate/generate.ts';
import { loadGenerationConfig } from '../generate/generation-config-file.ts';
import { readQaCsv } from '../tasks/csv-data.ts';
import { cleanText } from '../util/text-clean.ts';
import { splitRows } from '../train/split.ts';
import { train, type StepInfo } from '../train/trainer.ts';
import { exactMatch, f1 } from '../train/squad-metrics.ts';
import { describeAnswerScores } from '../train/evaluate.ts';

const OUT = process.env.DEMO_OUT ?? 'demo-out';
const TIME_LIMIT = Number(process.env.DEMO_SECONDS ?? 180);
const DATA = 'demo/qa_demo.csv';
const say = (s: string) => process.stdout.write(`${s}\n`);
const cmd = (s: string) => say(`\n$ ${s}`);

const g = await initGpu();
say(`adapter: ${g.info.name} (${g.info.backend}, ${g.info.driver})`);
if (existsSync(OUT)) rmSync(OUT, { recursive: true, force: true });

const initDir = join(OUT, 't5-tiny-init');
cmd(`engine-cli init --config t5-tiny --tokenizer demo/qa-8k.model --out ${initDir}`);
const init = await initModelFolder({ config: 't5-tiny', tokenizer: 'demo/qa-8k.model', out: initDir, seed: 0 });
say(`a new T5 from scratch: ${(init.parameterCount / 1e6).toFixed(2)}M parameters (vocab ${init.config.vocab_size}, d_model ${init.config.d_model}, ` +
  `${init.config.num_layers}+${init.config.num_decoder_layers} layers)`);

const run = join(OUT, 'run');
const flags = {
  validSplit: 0.1, batchSize: 16, evalBatchSize: 32, lr: 5e-3, clipGradNorm: 1, maxSourceLength: 256, maxTargetLength: 32,
  evalLimit: 64, evalMaxNewTokens: 16, groupByLength: true, epochs: 5, timeLimit: TIME_LIMIT,
};
cmd(`engine-cli train --data ${DATA} --model ${initDir} --out ${run} --valid-split 0.1 --batch-size 16 --eval-batch-size 32 ` +
  `--lr 5e-3 --clip-grad-norm 1 --max-source-length 256 --max-target-length 32 --eval-limit 64 --eval-max-new-tokens 16 --group-by-length ` +
  `--epochs 5 --time-limit ${TIME_LIMIT}`);
say('(lr 5e-3 rather than the tutorial\'s 1e-4: this model starts from random weights, not from a pretrained t5-small)');
let last = 0;
const r = await train({ data: DATA, model: initDir, out: run, ...flags }, {
  log: (l) => say(l),
  step: (i: StepInfo) => {
    if (i.step - last >= 10 || i.step === 1) {
      last = i.step;
      say(`  step ${i.step}  epoch ${i.epoch}  loss ${i.loss.toFixed(3)}  ${i.tokensPerSecond.toFixed(0)} tok/s  ${i.secondsPerStep.toFixed(2)} s/step`);
    }
  },
});
say(`\ntrained ${r.steps} steps on ${r.trainExamples} examples: ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.secondsPerStep.toFixed(2)} s/step, ` +
  `peak GPU memory ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB`);
const e = r.lastEval;
if (e) say(`held-out (${e.examples} examples): loss ${e.loss.toFixed(3)}, ${describeAnswerScores(e)} (${e.generated} answered)`);

const best = r.bestDir ?? r.lastDir;
cmd(`engine-cli eval --model ${best} --data <held-out rows> --json   (the numbers above, for the best checkpoint)`);
say('\nanswers from the best checkpoint to a few held-out questions:');
const loaded = await loadModelForCli(best);
const pre = loaded.preprocess!;
const { rows } = await readQaCsv(DATA);
const held = splitRows(rows, { validFraction: 0.1, seed: 101 }).valid.slice(0, 6);
const gen = await loadGenerationConfig(best, { max_new_tokens: 16 });
const enc = held.map((q) => loaded.tokenizer.encodePair(cleanText(q.context, pre), cleanText(q.question, pre), { maxLength: 256 }));
const out = await generateIds(loaded.model, padBatch(enc), gen);
held.forEach((q, i) => {
  const answer = loaded.tokenizer.decode(out.sequences[i]!);
  say(`  Q: ${q.question}\n     model: ${JSON.stringify(answer)}   gold: ${JSON.stringify(q.answer)}   ` +
    `(EM ${exactMatch(answer, q.answer)}, F1 ${f1(answer, q.answer).toFixed(2)})`);
});
loaded.model.dispose();

say(`\nbest model (Hugging Face folder): ${best}${r.best ? ` (val_loss ${r.best.valLoss.toFixed(3)}, step ${r.best.step})` : ''}`);
say(`resumable state:                 ${r.lastDir}`);
say(`metrics (JSON lines):            ${r.metricsFile}`);
say(`loss plot (open in a browser):   ${r.plotFile}`);
say(`A tiny model trained for ${TIME_LIMIT} s on a CPU answers poorly; the same commands with --model google-t5/t5-small and a GPU do the real job (README).`);
process.exit(0);
