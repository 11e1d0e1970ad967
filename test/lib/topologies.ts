// The two ways the API is served, built in one process for tests of the API surface: `serve` (the HTTP
// API over one mixed engine) and the disaggregated cluster (gateway → prefill worker → decode worker over
// gRPC on the embedded control plane, every prompt prefilled remotely).
import { createApiServer, defaultToolCallParser, silentLogger, type ApiServer } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { LLMEngine } from '@pdserve/engine';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { loadModelSpec } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

export interface Topology {
  readonly name: 'serve' | 'disaggregated';
  /** The API's base URL (no /v1). */
  readonly url: string;
  /** KV blocks in use across its engines (0 when idle). */
  usedBlocks(): number;
  /** Prompt tokens the prefill side computed (the prefill worker, or the one engine of serve). */
  prefillTokensComputed(): number;
  close(): Promise<void>;
}

export async function startServe(dir: string, tokenizer: Tokenizer): Promise<Topology> {
  const engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', maxModelLen: 2048, maxWaiting: 64, maxNumSeqs: 32 });
  const api: ApiServer = createApiServer({
    models: [
      {
        id: 'tiny',
        engine,
        tokenizer,
        maxModelLen: engine.maxModelLen,
        toolCallParser: defaultToolCallParser(loadModelSpec(dir).modelType),
      },
    ],
    port: 0,
    logger: silentLogger,
  });
  const { url } = await api.listen();
  return {
    name: 'serve',
    url,
    usedBlocks: () => engine.stats().usedBlocks,
    prefillTokensComputed: () => engine.stats().prefillTokensComputed,
    async close() {
      await api.close();
      await engine.close();
    },
  };
}

export async function startDisaggregated(dir: string): Promise<Topology> {
  const cp: ControlPlane = await connectControlPlane({ cluster: 'api', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024, maxModelLen: 2048 };
  const prefill: WorkerService = await startWorkerService({
    role: 'prefill',
    instanceId: 'p0',
    engine,
    controlPlane: cp,
    logger: cpSilent,
  });
  const decode: WorkerService = await startWorkerService({ role: 'decode', instanceId: 'd0', engine, controlPlane: cp, logger: cpSilent });
  const gateway: Gateway = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    disagg: { remotePrefillMinTokens: 1 },
  });
  for (let i = 0; i < 200 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  return {
    name: 'disaggregated',
    url: gateway.url,
    usedBlocks: () => prefill.engine.stats().usedBlocks + decode.engine.stats().usedBlocks,
    prefillTokensComputed: () => prefill.engine.stats().prefillTokensComputed,
    async close() {
      await gateway.close();
      await Promise.all([prefill.close(), decode.close()]);
      await cp.close();
    },
  };
}

/** Waits until no KV block is held (requests finished or aborted free theirs). */
export async function waitIdle(t: Topology): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (t.usedBlocks() === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${t.name}: ${t.usedBlocks()} KV blocks still in use`);
}
