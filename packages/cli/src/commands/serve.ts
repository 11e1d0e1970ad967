import { createApiServer, defaultToolCallParser } from '@pdserve/api';
import { LLMEngine } from '@pdserve/engine';
import { loadModelSpec } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { Flags, int, UsageError, type CommandSpec } from '../args';
import { serviceLogger } from '../logging';
import {
  COMMON_FLAGS,
  ENGINE_FLAGS,
  ROUTER_FLAGS,
  checkLocalCluster,
  engineOptions,
  modelDirFrom,
  runLocalCluster,
  warnHugePages,
} from './cluster';
import { checkEdge, EDGE_FLAGS, edgeOptionsOf } from './edge';

/** One process, one engine behind the OpenAI API: no router, no control plane. */
async function serveSingle(f: Flags): Promise<void> {
  const logger = serviceLogger('pdserve', f.str('log-level'), f.str('log-format'));
  warnHugePages(logger);
  const edge = edgeOptionsOf(f);
  const { dir, id } = await modelDirFrom(f);
  const tokenizer = await Tokenizer.fromDir(dir);
  const engine = await LLMEngine.create(engineOptions(f, dir, id));
  const toolCallParser = defaultToolCallParser(loadModelSpec(dir).modelType);
  const api = createApiServer({
    models: [{ id, engine, tokenizer, maxModelLen: engine.maxModelLen, toolCallParser }],
    host: f.str('host'),
    port: f.int('port', 0),
    logger,
    ...edge,
  });
  const { url } = await api.listen();
  logger.info({ url, model: id, kvBlocks: engine.pool.numBlocks }, 'serving');
  process.stdout.write(`pdserve is serving ${id} at ${url}/v1 (OpenAI API), one engine. Ctrl-C stops it.\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      api.setReady(false);
      void api
        .close()
        .then(() => engine.close())
        .then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

const SERVE_FLAGS = {
  ...COMMON_FLAGS,
  ...ENGINE_FLAGS,
  ...ROUTER_FLAGS,
  ...EDGE_FLAGS,
  prefill: { type: 'string', help: 'prefill workers in a local cluster (0 with --decode M: M mixed workers)', value: int(0) },
  decode: { type: 'string', help: 'decode workers in a local cluster; without --prefill/--decode: one engine, no cluster', value: int(0) },
  'kv-store': {
    type: 'string',
    help: 'kv-store nodes in a local cluster: workers offload evicted blocks to them and prefetch prefixes from them',
    default: '0',
    value: int(0),
  },
  replicas: { type: 'string', help: 'copies of each offloaded block, on distinct kv-store nodes', default: '1', value: int(1) },
} as const;

export const serve: CommandSpec = {
  name: 'serve',
  summary: 'Serve a model over the OpenAI API: one engine, or a local cluster with --prefill N --decode M.',
  usage: 'serve --model DIR [--port 8000] [--prefill N --decode M [--kv-store K] [--redis URL --nats URL]] [engine flags]',
  flags: SERVE_FLAGS,
  check(f) {
    if ((f.str('prefill') !== undefined || f.str('decode') !== undefined) && (f.int('decode', 0) ?? 0) < 1)
      throw new UsageError('a cluster needs --decode 1 or more');
    checkLocalCluster(f);
    checkEdge(f);
  },
  async run(f) {
    const p = f.int('prefill', 0);
    const d = f.int('decode', 0);
    if (p === undefined && d === undefined) return serveSingle(f);
    await runLocalCluster(f, p ?? 0, d!, f.int('kv-store', 0) ?? 0);
  },
};

export const start: CommandSpec = {
  name: 'start',
  summary:
    'What `npm start` runs: the built-in tiny model on a local cluster (gateway + 1 prefill + 1 decode + 1 kv-store, embedded control plane) on port 8000.',
  usage: 'start [--port 8000] [engine flags]',
  flags: { ...COMMON_FLAGS, ...ENGINE_FLAGS, ...ROUTER_FLAGS, ...EDGE_FLAGS },
  check(f) {
    checkLocalCluster(f);
    checkEdge(f);
  },
  run: (f) => runLocalCluster(f, 1, 1, 1),
};
