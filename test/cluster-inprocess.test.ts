// The disaggregated cluster in one process (embedded control plane, gRPC over loopback between the
// gateway, a prefill worker and a decode worker): greedy output through the official client equals the
// reference loop, prefill really happens on the prefill worker, over each transport.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion } from '@pdserve/testkit';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

let dir: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let cp: ControlPlane;
let gateway: Gateway;
let prefill: WorkerService;
let decodes: WorkerService[] = [];
let client: OpenAI;

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  const hub = new InProcessHub();
  cp = await connectControlPlane({ cluster: 'test', hub, logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024 };
  prefill = await startWorkerService({ role: 'prefill', instanceId: 'p0', engine, controlPlane: cp, logger: cpSilent });
  // One decode worker per transport the prefill worker may use to reach it.
  decodes = await Promise.all(
    (['tcp', 'shm', 'grpc'] as const).map((t) =>
      startWorkerService({ role: 'decode', instanceId: `d-${t}`, engine, controlPlane: cp, logger: cpSilent, transports: [t] }),
    ),
  );
  gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, disagg: { remotePrefillMinTokens: 1 }, policy: 'round-robin' });
  for (let i = 0; i < 100 && gateway.view.workers().length < 4; i++) await new Promise((r) => setTimeout(r, 20));
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all([prefill, ...decodes].map((w) => w?.close()));
  await cp?.close();
  await runner?.release();
});

describe('disaggregated cluster, one process', () => {
  it('greedy output equals the reference over every transport, prefilled on the prefill worker', async () => {
    const prompts = ['Route me to a decode worker', 'A second prompt, somewhat longer than the first one, to fill blocks', 'Third'];
    const want = await Promise.all(
      prompts.map(async (p) => completion(tokenizer, tokenizer.encode(p), (await referenceGenerate(runner, tokenizer.encode(p), samplingParams({ temperature: 0, maxTokens: 12, stopTokenIds: tokenizer.eosTokenIds }))).tokenIds)),
    );
    // Round-robin over the three decode workers: each prompt twice reaches every transport.
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < prompts.length; i++) {
        const res = await client.completions.create({ model: 'tiny', prompt: prompts[i]!, max_tokens: 12, temperature: 0 });
        expect(res.choices[0]!.text).toBe(want[i]);
      }
    }
    const decodeComputed = decodes.map((d) => d.engine.stats().prefillTokensComputed);
    expect(prefill.engine.stats().prefillTokensComputed).toBeGreaterThan(0);
    expect(decodeComputed).toEqual([0, 0, 0]);
    expect(decodes.every((d) => d.engine.stats().importFallbacks === 0)).toBe(true);
  });

  it('seeded sampling streams identically to the reference through the cluster', async () => {
    const ids = tokenizer.encode('Seeded through the cluster');
    const ref = await referenceGenerate(runner, ids, samplingParams({ temperature: 0.8, seed: 5, maxTokens: 10, stopTokenIds: tokenizer.eosTokenIds }));
    let text = '';
    const stream = await client.completions.create({ model: 'tiny', prompt: 'Seeded through the cluster', max_tokens: 10, temperature: 0.8, seed: 5, stream: true });
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(text).toBe(completion(tokenizer, ids, ref.tokenIds));
  });

  it('chat works through the cluster', async () => {
    const res = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5, temperature: 0 });
    expect(res.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(res.usage?.completion_tokens).toBe(5);
  });
});
