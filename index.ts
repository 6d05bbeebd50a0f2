// The package's public API: everything the CLI does, a Node program can do with these.
// Engine
export { initGpu, gpu, getGpu, listAdapters, GpuError, type Gpu, type GpuOptions, type AdapterSummary } from './engine/gpu.ts';
export { Tensor, tensor, empty, zeros, ones, full, reshape, memory, emptyCache, setPoolLimit, setPoison, tensorFromHalf, type DType } from './engine/tensor.ts';
export { tidy } from './engine/scope.ts';
export { backward, noGrad, zeroGrad, isGradEnabled, recordOp, checkpoint } from './engine/autograd.ts';
export { AdamW, type AdamWOptions, type AdamWState } from './optim/adamw.ts';
export { Adafactor, type AdafactorOptions, type AdafactorState } from './optim/adafactor.ts';
export type { Optimizer } from './optim/optimizer.ts';
export { rt } from './engine/runtime.ts';
export { deviceCeilings, measureCeilings, type Ceilings } from './engine/ceilings.ts';
// Kernels (one op per file)
export * from './kernels/elementwise.ts';
export { sum, mean, max, maxWithIndex, sumTo, broadcastTo } from './kernels/reduce.ts';
export { permute, transpose, slice, concat, contiguous } from './kernels/layout.ts';
export { randomUniform, randomNormal, dropout } from './kernels/random.ts';
export { matmul } from './kernels/matmul.ts';
export { attention, type AttentionOptions } from './kernels/attention.ts';
export { softmax } from './kernels/softmax.ts';
export { rmsNorm } from './kernels/rmsnorm.ts';
export { layerNorm } from './kernels/layernorm.ts';
export { crossEntropy } from './kernels/cross-entropy.ts';
export { embedding, idsTensor } from './kernels/embedding.ts';
export { globalNorm, clipGradNorm } from './kernels/grad-norm.ts';
// Model
export { T5ForConditionalGeneration, type ForwardOptions } from './model/t5-model.ts';
export type { Seq2SeqBatch, Seq2SeqOutput } from './model/t5.ts';
export { loadT5Config, parseT5Config, presetConfig, type T5Config } from './model/config.ts';
export { T5Tokenizer } from './hf/tokenizer.ts';
export { readSafetensors, writeSafetensors } from './hf/safetensors.ts';
export { readSafetensorsFolder } from './hf/safetensors-folder.ts';
export { parseTorchCheckpoint } from './hf/torch-checkpoint.ts';
export { resolveModel } from './hf/hub.ts';
export { loadModelForCli, type LoadedModel } from './hf/load-model.ts';
export { savePretrained } from './hf/save-model.ts';
export { fromPretrained, saveWeights } from './hf/pretrained.ts';
export { generate, generateIds, padBatch } from './generate/generate.ts';
export { resolveGenerationConfig, type GenerationOptions } from './generate/generation-config.ts';
export { loadGenerationConfig } from './generate/generation-config-file.ts';
export { predictOne, predictFile, badWordsIds } from './tasks/predict.ts';
export { scoreTarget } from './tasks/score.ts';
export { startServer, type ServeOptions } from './tasks/web-server.ts';
export { initModelFolder } from './hf/init-model.ts';
// Training
export { train, type TrainOptions } from './train/trainer.ts';
export { evaluate, evaluateFile } from './train/evaluate.ts';
export { readQaCsv, streamQaCsv } from './tasks/csv-data.ts';
export { cleanText } from './util/text-clean.ts';
export { DataError } from './util/data-error.ts';
export { splitRows } from './train/split.ts';
export { exactMatch, f1, squadScores } from './train/squad-metrics.ts';
// Benchmarks
export { runBench, type BenchOptions } from './bench/run.ts';
export type { BenchRow } from './bench/types.ts';
