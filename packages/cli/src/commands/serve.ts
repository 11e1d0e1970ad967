import { createApiServer, createLogger } from '@pdserve/api';
import { LLMEngine, ENGINE_DEFAULTS } from '@pdserve/engine';
import { ensureTinyModel } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { Flags, type CommandSpec, type FlagSpec } from '../args';
import { progressBar } from '../progress';

const ENGINE_FLAGS: Readonly<Record<string, FlagSpec>> = {
  port: { type: 'string', help: 'HTTP port of the OpenAI API', default: '8000' },
  host: { type: 'string', help: 'address to listen on', default: '127.0.0.1' },
  'served-model-name': { type: 'string', help: 'model id clients send; default the directory name' },
  'kv-cache-bytes': { type: 'string', help: 'KV pool size (e.g. 256M, 1G)', default: String(ENGINE_DEFAULTS.kvCacheBytes) },
  'block-size': { type: 'string', help: 'tokens per KV block', default: String(ENGINE_DEFAULTS.blockSize) },
  'max-num-seqs': { type: 'string', help: 'most sequences in the running batch', default: String(ENGINE_DEFAULTS.maxNumSeqs) },
  'max-num-batched-tokens': { type: 'string', help: 'most tokens computed per step', default: String(ENGINE_DEFAULTS.maxNumBatchedTokens) },
  'prefill-chunk-tokens': { type: 'string', help: 'longest prefill chunk per sequence per step; 0 = no chunking', default: String(ENGINE_DEFAULTS.prefillChunkTokens) },
  'max-waiting': { type: 'string', help: 'queued requests before 429', default: String(ENGINE_DEFAULTS.maxWaiting) },
  'max-model-len': { type: 'string', help: "longest prompt + output; default the model's context" },
  'execution-provider': { type: 'string', help: 'onnxruntime execution provider (cpu, cuda, cann, ...)', default: 'cpu' },
  threads: { type: 'string', help: 'onnxruntime intra-op threads; 0 = automatic', default: '0' },
  'log-level': { type: 'string', help: 'debug, info, warn or error', default: 'info' },
};

async function serveModel(dir: string, f: Flags, announce: boolean): Promise<void> {
  const logger = createLogger({ level: (f.str('log-level') ?? 'info') as 'debug' | 'info' | 'warn' | 'error', service: 'pdserve' });
  const tokenizer = await Tokenizer.fromDir(dir);
  const engine = await LLMEngine.create({
    modelDir: dir,
    modelId: f.str('served-model-name'),
    kvCacheBytes: f.bytes('kv-cache-bytes'),
    blockSize: f.int('block-size', 1),
    maxNumSeqs: f.int('max-num-seqs', 1),
    maxNumBatchedTokens: f.int('max-num-batched-tokens', 1),
    prefillChunkTokens: f.int('prefill-chunk-tokens', 0),
    maxWaiting: f.int('max-waiting', 0),
    maxModelLen: f.int('max-model-len', 2),
    runner: { executionProvider: f.str('execution-provider'), intraOpThreads: f.int('threads', 0) },
  });
  const api = createApiServer({
    models: [{ id: engine.modelId, engine, tokenizer, maxModelLen: engine.maxModelLen }],
    host: f.str('host'),
    port: f.int('port', 0),
    logger,
  });
  const { url } = await api.listen();
  api.setReady(true);
  logger.info('serving', { url, model: engine.modelId, kvBlocks: engine.pool.numBlocks });
  if (announce) process.stdout.write(`pdserve is serving ${engine.modelId} at ${url}/v1 (OpenAI API). Ctrl-C stops it.\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      api.setReady(false);
      void api.close().then(() => engine.close()).then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export const serve: CommandSpec = {
  name: 'serve',
  summary: 'Serve a model directory over the OpenAI HTTP API.',
  usage: 'serve --model DIR [--port 8000] [engine flags]',
  flags: { model: { type: 'string', help: 'Hugging Face-layout model directory' }, ...ENGINE_FLAGS },
  async run(f) {
    await serveModel(f.required('model'), f, true);
  },
};

export const start: CommandSpec = {
  name: 'start',
  summary: 'Build the built-in tiny model on first run and serve it on port 8000 (what `npm start` runs).',
  usage: 'start [engine flags]',
  flags: ENGINE_FLAGS,
  async run(f) {
    const bar = progressBar('building the built-in tiny model (first run only)');
    let built = false;
    const dir = await ensureTinyModel({}, (done, total) => {
      built = true;
      bar.update(done, total);
    });
    if (built) bar.end();
    await serveModel(dir, f, true);
  },
};
