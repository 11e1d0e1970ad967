// buildTinyModel: a complete Hugging Face-layout model directory with random weights, for development
// and tests without a model hub.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { bytesJob, externalDataJob, jsonJob, writeJobs, type FileJob } from './file-jobs';
import { configJson, generationConfigJson } from './hf-config';
import { buildLlamaGraph } from './llama-graph';
import { encodeModel, planExternalData } from './onnx-file';
import { resolveShape, type TinyModelOptions } from './options';
import { loadTokenizerFiles } from './tokenizer-files';
import { byteLength } from './weights';

/** Weights above this go to onnx/model.onnx_data (the default ~76 MB shape does; 2-layer test models don't). */
export const EXTERNAL_DATA_THRESHOLD_BYTES = 32 << 20;
const DATA_FILE = 'model.onnx_data';

export async function buildTinyModel(opts: TinyModelOptions, onProgress?: (doneBytes: number, totalBytes: number) => void): Promise<void> {
  const shape = resolveShape(opts);
  const tok = await loadTokenizerFiles(shape.tokenizer);
  if (tok.maxTokenId + 1 !== shape.tokenCount) {
    throw new Error(`tiny model: ${shape.tokenizer} tokenizer ids end at ${tok.maxTokenId}, expected ${shape.tokenCount - 1}`);
  }

  const graph = buildLlamaGraph(shape);
  const weightBytes = graph.weights.reduce((a, w) => a + byteLength(w), 0);
  const plan = weightBytes > EXTERNAL_DATA_THRESHOLD_BYTES ? planExternalData(graph.weights, DATA_FILE) : undefined;
  const model = encodeModel(graph, shape.seed, plan);

  const onnxDir = join(opts.out, 'onnx');
  await mkdir(onnxDir, { recursive: true });
  // config.json is written last and removed first, so a half-written directory never looks loadable.
  await rm(join(opts.out, 'config.json'), { force: true });
  if (!plan) await rm(join(onnxDir, DATA_FILE), { force: true });

  const jobs: FileJob[] = [
    bytesJob(join(opts.out, 'tokenizer.json'), tok.tokenizerJson),
    bytesJob(join(opts.out, 'tokenizer_config.json'), tok.tokenizerConfigJson),
    ...(plan ? [externalDataJob(join(onnxDir, DATA_FILE), plan, shape.seed)] : []),
    bytesJob(join(onnxDir, 'model.onnx'), model),
    jsonJob(join(opts.out, 'generation_config.json'), generationConfigJson(tok)),
    jsonJob(join(opts.out, 'config.json'), configJson(shape, tok, plan !== undefined)),
  ];
  await writeJobs(jobs, onProgress);
}
