// The library in a web page (bundled by scripts/build.mjs into dist/t5-webgpu.browser.js): the same engine,
// kernels, model, tokenizer, generation and training step as index.ts, fed from bytes instead of files.
// initGpu() opens navigator.gpu (engine/platform-browser.ts); matmul autotuning keeps its winners in memory.
export { initGpu, gpu, GpuError, type Gpu } from './engine/gpu.ts';
export { memory, emptyCache } from './engine/tensor.ts';
export { AdamW, type AdamWOptions } from './optim/adamw.ts';
export { T5ForConditionalGeneration } from './model/t5-model.ts';
export { parseT5Config, type T5Config } from './model/config.ts';
export { T5Tokenizer } from './hf/tokenizer.ts';
export { parseSafetensorsBytes } from './hf/safetensors.ts';
export { parseTorchCheckpoint } from './hf/torch-checkpoint.ts';
export { modelFromTensors } from './hf/pretrained.ts';
export { hfFolderBytes } from './hf/folder-bytes.ts';
export { parseT5WebgpuSettings } from './hf/hf-folder.ts';
export { encodeInput, predictEncoded, resolvePredictSettings, type Prediction, type PredictSettings } from './tasks/predict.ts';
export { qaRowsFromText } from './tasks/qa-csv-text.ts';
export { DataError } from './util/data-error.ts';
export { tokenizeRows, collate, type Batch, type Example } from './train/dataset.ts';
export { trainStep, type StepResult } from './train/train-step.ts';
export { zipStore } from './util/zip-store.ts';
