// Speculative decoding in the disaggregated cluster (embedded control plane, gRPC over loopback): the
// decode worker runs the draft model, whose prompt KV it builds at import (the prefill worker ships only
// the target's KV); greedy and seeded output through the official client equal the reference loop.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { LLMEngine } from '@pdserve/engine';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { draftPair, ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion } from '@pdserve/testkit';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

const PAIR = draftPair({}, 1, 0.3);
let dir: string;
let draft: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let cp: ControlPlane;
let gateway: Gateway;
let prefill: WorkerService;
let decode: WorkerService;
let client: OpenAI;

beforeAll(async () => {
  dir = await ensureTinyModel(PAIR.target);
  draft = await ensureTinyModel(PAIR.draft);
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  cp = await connectControlPlane({ cluster: 'spec', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024, blockSize: 4 };
  prefill = await startWorkerService({ role: 'prefill', instanceId: 'p0', engine, controlPlane: cp, logger: cpSilent });
  decode = await startWorkerService({
    role: 'decode',
    instanceId: 'd0',
    engine: { ...engine, speculative: { method: 'draft', modelDir: draft, numTokens: 4 } },
    controlPlane: cp,
    logger: cpSilent,
  });
  gateway = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    disagg: { remotePrefillMinTokens: 1 },
  });
  for (let i = 0; i < 100 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all([prefill, decode].map((w) => w?.close()));
  await cp?.close();
  await runner?.release();
});

describe('speculative decoding on the decode worker of a disaggregated cluster', () => {
  it('greedy output equals the reference; the prompt is prefilled on the prefill worker, the draft catches up on the decode worker', async () => {
    const prompts = [
      'Speculate on the decode worker',
      'A second prompt, somewhat longer than the first one, to fill a few blocks',
      'Third',
    ];
    const want = await Promise.all(
      prompts.map(async (p) => {
        const ids = tokenizer.encode(p);
        return completion(
          tokenizer,
          ids,
          (await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true }))).tokenIds,
        );
      }),
    );
    const got = await Promise.all(
      prompts.map(
        async (p) =>
          (await client.completions.create({ model: 'tiny', prompt: p, max_tokens: 24, temperature: 0, ignore_eos: true } as never))
            .choices[0]!.text,
      ),
    );
    expect(got).toEqual(want);
    const d = decode.engine.stats();
    expect(prefill.engine.stats().prefillTokensComputed).toBeGreaterThan(0);
    // The target's prompt KV came from the prefill worker: all of it for a prompt of one block, else every block
    // below the one holding the last prompt token, which the decode worker computed itself (--decode-computes-tail)...
    const tails = prompts.map((p) => tokenizer.encode(p).length).map((n) => (n > 16 ? n - Math.floor((n - 1) / 16) * 16 : 0));
    expect(tails.some((t) => t > 0)).toBe(true);
    expect(d.prefillTokensComputed).toBe(tails.reduce((a, b) => a + b, 0));
    expect(d.importFallbacks).toBe(0);
    const s = d.speculation!;
    expect(s.draftCatchUpTokens).toBeGreaterThan(0); // ...the draft's was computed here
    expect(s.acceptedTokens).toBeGreaterThan(0);
    expect(d.usedBlocks).toBe(0);
    expect(s.draftSequences).toBe(0);
  });

  it("seeded sampling on a speculating decode worker: reproducible, and the reference loop's tokens", async () => {
    const run = async (): Promise<string> =>
      (await client.completions.create({ model: 'tiny', prompt: 'Seeded and speculated', max_tokens: 16, temperature: 0.8, seed: 7 }))
        .choices[0]!.text;
    const a = await run();
    expect(await run()).toBe(a);
    // Seeded sampled requests decode one token at a time (see SpeculativeOptions.seeded): the contract holds.
    const ids = tokenizer.encode('Seeded and speculated');
    const ref = await referenceGenerate(
      runner,
      ids,
      samplingParams({ temperature: 0.8, seed: 7, maxTokens: 16, stopTokenIds: tokenizer.eosTokenIds }),
    );
    expect(a).toBe(completion(tokenizer, ids, ref.tokenIds));
  });

  it('seeded: true makes them speculate, as one speculating engine would', async () => {
    const ids = tokenizer.encode('Seeded and speculated');
    const speculating = () =>
      LLMEngine.create({
        modelDir: dir,
        modelId: 'tiny',
        kvCacheBytes: 64 << 20,
        blockSize: 4,
        speculative: { method: 'draft', modelDir: draft, numTokens: 4, seeded: true },
      });
    const local = await speculating();
    try {
      const tokens: number[] = [];
      const sampling = samplingParams({ temperature: 0.8, seed: 7, maxTokens: 16, stopTokenIds: tokenizer.eosTokenIds });
      for await (const o of local.generate({ requestId: 'local', promptTokenIds: ids, sampling })) tokens.push(...o.tokenIds);
      expect(local.stats().speculation!.verifiedSequenceSteps).toBeGreaterThan(0);
      // Run to run: the same request on a fresh engine (within one engine the second request would hit the
      // first one's cached prompt block: KV computed another way rounds p and q differently in their last
      // bits, which the residual max(0, p - q) magnifies; see README "Speculative decoding").
      const fresh = await speculating();
      const again: number[] = [];
      try {
        for await (const o of fresh.generate({ requestId: 'again', promptTokenIds: ids, sampling })) again.push(...o.tokenIds);
      } finally {
        await fresh.close();
      }
      expect(again).toEqual(tokens);
    } finally {
      await local.close();
    }
  });
});
