// The page: loads the served model folder into the library's browser bundle, answers questions with the folder's
// generation settings, fine-tunes on a dropped CSV with a live loss chart, and offers the result as a Hugging Face
// folder (.zip). `window.t5page` exposes the same actions to tests (tests/web-page.test.ts).
import * as t5 from './t5-webgpu.browser.js';

const $ = (id) => document.getElementById(id);
const state = { model: null, tokenizer: null, config: null, spiece: null, generationFile: undefined, preprocess: undefined, extraIds: undefined, opt: null, losses: [], step: 0 };
const timings = {};

function showError(message) {
  $('error').textContent = message;
  $('error').style.display = 'block';
}
function clearError() {
  $('error').style.display = 'none';
}
function status(text, fraction) {
  $('status').textContent = text;
  $('progress').value = fraction ?? 0;
}
const nextFrame = () => new Promise((r) => setTimeout(r, 0));

/** A file of the model folder; null when optional and absent; progress while it streams in. */
async function fetchModelFile(name, { optional = false, why = '' } = {}) {
  const res = await fetch(`./model/${name}`);
  if (res.status === 404) {
    if (optional) return null;
    throw new Error(`the model folder has no ${name}${why ? ` (${why})` : ''}`);
  }
  if (!res.ok) throw new Error(`could not load ${name}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const parts = [];
  let done = 0;
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    parts.push(value);
    done += value.length;
    if (total > 1e6) status(`loading ${name}: ${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`, done / total);
  }
  const out = new Uint8Array(done);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const text = (bytes) => new TextDecoder().decode(bytes);
function json(bytes, name) {
  try {
    return JSON.parse(text(bytes));
  } catch (e) {
    throw new Error(`${name} is not valid JSON (${e.message})`);
  }
}

async function load() {
  const t0 = performance.now();
  if (!('gpu' in navigator)) {
    throw new Error('This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Firefox, over http://localhost or https.');
  }
  status('opening the WebGPU device…', 0.02);
  const g = await t5.initGpu();
  status('reading the model folder…', 0.05);
  state.config = t5.parseT5Config(json(await fetchModelFile('config.json', { why: 'not a Hugging Face T5 folder' }), 'config.json'), 'config.json');
  state.spiece = await fetchModelFile('spiece.model', { why: 'the SentencePiece tokenizer: copy the one the model was trained with into the folder' });
  const tokConfig = await fetchModelFile('tokenizer_config.json', { optional: true });
  const tokSettings = tokConfig ? json(tokConfig, 'tokenizer_config.json') : {};
  state.extraIds = tokSettings.extra_ids;
  state.tokenizer = await t5.T5Tokenizer.fromBytes(state.spiece, 'spiece.model', {
    vocabSize: state.config.vocab_size, extraIds: state.extraIds, cleanUpTokenizationSpaces: tokSettings.clean_up_tokenization_spaces === true,
  });
  const gen = await fetchModelFile('generation_config.json', { optional: true });
  state.generationFile = gen ? { config: json(gen, 'generation_config.json'), file: 'generation_config.json', bytes: gen } : undefined;
  const settings = await fetchModelFile('t5_webgpu.json', { optional: true });
  state.preprocess = settings ? t5.parseT5WebgpuSettings(json(settings, 't5_webgpu.json'), 't5_webgpu.json').preprocess : undefined;
  // from_pretrained's order: model.safetensors, else PyTorch's pytorch_model.bin (read without running its pickle)
  const safetensors = await fetchModelFile('model.safetensors', { optional: true });
  const tensors = safetensors
    ? t5.parseSafetensorsBytes(safetensors, 'model.safetensors')
    : t5.parseTorchCheckpoint(await fetchModelFile('pytorch_model.bin', { why: 'the weights: model.safetensors or pytorch_model.bin' }), 'pytorch_model.bin');
  status('moving the weights to the GPU…', 0.95);
  await nextFrame();
  state.model = t5.modelFromTensors(state.config, tensors, 'model', { requiresGrad: true });
  timings.loadMs = performance.now() - t0;
  const params = state.model.parameters().reduce((n, [, p]) => n + p.size, 0);
  status(`ready: ${(params / 1e6).toFixed(2)} M parameters on ${g.info.name} (loaded in ${(timings.loadMs / 1000).toFixed(1)} s)`, 1);
  $('ask').hidden = false;
  $('train').hidden = false;
}

/** Answers with the folder's generation settings; `generation` overrides them (HF option names). */
async function answer(context, question, generation = {}) {
  const settings = await t5.resolvePredictSettings(state.model, { generationFile: state.generationFile, preprocess: state.preprocess ?? null, generation });
  const source = t5.encodeInput(state.tokenizer, { context, question }, settings);
  const t0 = performance.now();
  const [p] = await t5.predictEncoded(state.model, state.tokenizer, [source], settings);
  const ms = performance.now() - t0;
  const best = p.sequences[0];
  return { text: best.text, ids: best.ids, score: best.score, ms, newTokens: best.ids.length - 1, numBeams: settings.generation.numBeams };
}

/** Examples of a CSV's text, tokenized as training does (source 512, target 128). */
function examplesFrom(csvText, fileName) {
  const { rows, skipped } = t5.qaRowsFromText(csvText, fileName, state.preprocess ?? {});
  const { examples } = t5.tokenizeRows(rows, state.tokenizer, { maxSourceLength: 512, maxTargetLength: 128 }, fileName);
  if (examples.length === 0) throw new Error(`${fileName}: no row fits 512 source tokens`);
  return { examples, skipped };
}

/** `steps` AdamW steps over the examples in file order (wrapping around), batch `batchSize`; calls onStep(loss). */
async function train(examples, { steps, batchSize = 8, lr = 1e-4, seed = 100, onStep } = {}) {
  state.opt ??= new t5.AdamW(state.model.parameters().map(([, p]) => p), { lr, eps: 1e-6, weightDecay: 0, variant: 'hf' });
  const losses = [];
  try {
    for (let s = 0; s < steps; s++) {
      const batch = Array.from({ length: Math.min(batchSize, examples.length) }, (_, i) => examples[(s * batchSize + i) % examples.length]);
      const t0 = performance.now();
      const r = await t5.trainStep(state.model, state.opt, [t5.collate(batch)], { seed, firstMicro: state.step, lr, dropout: 0 });
      state.step++;
      losses.push(r.loss);
      onStep?.(r.loss, s, performance.now() - t0, r.tokens);
      if (!r.finite) throw new Error(`the loss became ${r.loss} at step ${s + 1}; try a smaller learning rate`);
    }
  } finally {
    // the steps' activation buffers go back to the browser (the AdamW moments stay for the next fine-tune), as
    // the library's train() empties the cache when it returns
    t5.emptyCache();
  }
  return losses;
}

async function folderZip() {
  const files = await t5.hfFolderBytes(state.model, state.spiece, { generationConfigFile: state.generationFile?.bytes, preprocess: state.preprocess, extraIds: state.extraIds });
  const named = new Map([...files].map(([name, bytes]) => [`t5-finetuned/${name}`, bytes]));
  return t5.zipStore(named);
}

function drawChart(losses) {
  const w = 600, h = 160, pad = 8;
  const max = Math.max(...losses), min = Math.min(...losses, 0);
  const x = (i) => pad + (losses.length < 2 ? 0 : (i * (w - 2 * pad)) / (losses.length - 1));
  const y = (v) => h - pad - ((v - min) / (max - min || 1)) * (h - 2 * pad);
  const points = losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  $('chart').innerHTML = `<polyline fill="none" stroke="#2a6fdb" stroke-width="2" points="${points}"/>` +
    `<text x="${w - pad}" y="14" text-anchor="end" font-size="12">loss ${losses.at(-1).toFixed(4)}</text>`;
}

// ---------------------------------------------------------------------------------------------------------------
// the controls

let csv = null;
async function takeCsv(file) {
  clearError();
  try {
    const { examples, skipped } = examplesFrom(await file.text(), file.name);
    csv = { name: file.name, examples };
    $('train-info').textContent = `${file.name}: ${examples.length} examples${skipped ? `, ${skipped} rows skipped (no answer or a wrong cell count)` : ''}`;
    $('train-button').disabled = false;
  } catch (e) {
    csv = null;
    $('train-button').disabled = true;
    showError(e.message);
  }
}

async function busy(label, fn) {
  clearError();
  for (const b of document.querySelectorAll('button')) b.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(`${label}: ${e.message}`);
  } finally {
    for (const b of document.querySelectorAll('button')) b.disabled = false;
    if (!csv) $('train-button').disabled = true;
  }
}

function wire() {
  $('answer-button').onclick = () => busy('answer', async () => {
    status('answering…', 0.5);
    const r = await answer($('context').value, $('question').value);
    $('answer').textContent = r.text || '(empty answer)';
    $('answer-info').textContent = `${r.newTokens} new tokens in ${r.ms.toFixed(0)} ms (${(r.newTokens / (r.ms / 1000)).toFixed(1)} tokens/s, ${r.numBeams} beams); ids ${r.ids.join(' ')}`;
    status('ready', 1);
  });
  const drop = $('drop');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) void takeCsv(e.dataTransfer.files[0]); };
  $('csv-file').onchange = (e) => { if (e.target.files[0]) void takeCsv(e.target.files[0]); };
  $('train-button').onclick = () => busy('training', async () => {
    const steps = Number($('steps').value), batchSize = Number($('batch').value), lr = Number($('lr').value);
    if (!(Number.isInteger(steps) && steps > 0)) throw new Error('steps must be a whole number above 0');
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error('batch must be a whole number above 0');
    if (!(lr > 0)) throw new Error('learning rate must be a positive number');
    await train(csv.examples, {
      steps, batchSize, lr,
      onStep(loss, s, ms, tokens) {
        state.losses.push(loss);
        drawChart(state.losses);
        status(`step ${s + 1} of ${steps}: loss ${loss.toFixed(4)} (${ms.toFixed(0)} ms, ${(tokens / (ms / 1000)).toFixed(0)} tokens/s)`, (s + 1) / steps);
      },
    });
  });
  $('download-button').onclick = () => busy('download', async () => {
    status('packing the model…', 0.5);
    const zip = await folderZip();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([zip], { type: 'application/zip' }));
    a.download = 't5-finetuned.zip';
    a.click();
    status('ready', 1);
  });
}

const ready = (async () => {
  try {
    await load();
    wire();
  } catch (e) {
    status('stopped', 0);
    showError(e.message);
    throw e;
  }
})();
ready.catch(() => {}); // shown on the page; tests read it from t5page.ready

window.t5page = { ready, answer, examplesFrom, train, folderZip, timings, state, memory: t5.memory };
