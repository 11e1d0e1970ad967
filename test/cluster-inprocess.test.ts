// The disaggregated cluster in one process (embedded control plane, gRPC over loopback between the
// gateway, a prefill worker and a decode worker): greedy output through the official client equals the
// reference loop, prefill really happens on the prefill worker, over each transport; the first token
// reaches the client before the KV does. Every channel and data port runs mTLS (the cluster's own CA), so the
// token-identity checks hold with TLS on.
import { rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ENGINE_DEFAULTS } from '@pdserve/engine';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { makeThrowawayCa, readTlsDir, type TlsMaterial } from '@pdserve/rpc';
import { completion, freePort } from '@pdserve/testkit';
import {
  prefillDone,
  prefillFirst,
  samplingToWire,
  seededSampling,
  startWorkerService,
  toCallError,
  WorkerClient,
  type GenerateChunkMsg,
  type PrefillFirstMsg,
  type WorkerCallError,
  type GenerateRequestMsg,
  type WorkerService,
} from '@pdserve/worker';

let dir: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let cp: ControlPlane;
let gateway: Gateway;
let prefill: WorkerService;
let decodes: WorkerService[] = [];
let client: OpenAI;
let tlsDir: string;
let tls: TlsMaterial;

beforeAll(async () => {
  tlsDir = makeThrowawayCa();
  tls = readTlsDir(tlsDir);
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  const hub = new InProcessHub();
  cp = await connectControlPlane({ cluster: 'test', hub, logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024 };
  prefill = await startWorkerService({ role: 'prefill', instanceId: 'p0', engine, controlPlane: cp, logger: cpSilent, tls });
  // One decode worker per transport the prefill worker may use to reach it.
  decodes = await Promise.all(
    (['tcp', 'shm', 'grpc'] as const).map((t) =>
      startWorkerService({ role: 'decode', instanceId: `d-${t}`, engine, controlPlane: cp, logger: cpSilent, transports: [t], tls }),
    ),
  );
  gateway = await startDisaggGateway();
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
}, 120_000);

/**
 * A gateway in front of the workers on `plane` (round-robin over the decode workers, every prompt prefilled remotely),
 * once it sees all `workers` of them: by default the four of this file's cluster.
 */
async function startDisaggGateway(
  opts: { kvStreaming?: boolean; decodeComputesTail?: boolean } = {},
  plane: ControlPlane = cp,
  workers = 4,
): Promise<Gateway> {
  const g = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: plane,
    logger: silentLogger,
    port: 0,
    disagg: { remotePrefillMinTokens: 1 },
    policy: 'round-robin',
    tls,
    ...opts,
  });
  for (let i = 0; i < 100 && g.view.workers().length < workers; i++) await new Promise((r) => setTimeout(r, 20));
  return g;
}

afterAll(async () => {
  await gateway?.close();
  await Promise.all([prefill, ...decodes].map((w) => w?.close()));
  await cp?.close();
  await runner?.release();
  if (tlsDir) rmSync(tlsDir, { recursive: true, force: true });
});

describe('disaggregated cluster, one process', () => {
  it('greedy output equals the reference over every transport, prefilled on the prefill worker', async () => {
    const prompts = ['Route me to a decode worker', 'A second prompt, somewhat longer than the first one, to fill blocks', 'Third'];
    const want = await Promise.all(
      prompts.map(async (p) =>
        completion(
          tokenizer,
          tokenizer.encode(p),
          (
            await referenceGenerate(
              runner,
              tokenizer.encode(p),
              samplingParams({ temperature: 0, maxTokens: 12, stopTokenIds: tokenizer.eosTokenIds }),
            )
          ).tokenIds,
        ),
      ),
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
    const ref = await referenceGenerate(
      runner,
      ids,
      samplingParams({ temperature: 0.8, seed: 5, maxTokens: 10, stopTokenIds: tokenizer.eosTokenIds }),
    );
    let text = '';
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'Seeded through the cluster',
      max_tokens: 10,
      temperature: 0.8,
      seed: 5,
      stream: true,
    });
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(text).toBe(completion(tokenizer, ids, ref.tokenIds));
  });

  // 3 chunks of ENGINE_DEFAULTS.prefillChunkTokens each (and a partial block): the prefill worker computes the
  // prompt in several steps, and every one of its blocks reaches the decode worker.
  const longLen = 2 * ENGINE_DEFAULTS.prefillChunkTokens + 77;
  const longCases = [
    { temperature: 0 },
    { temperature: 0 },
    { temperature: 0 },
    { temperature: 0.8, seed: 11 },
    { temperature: 0.8, seed: 12 },
    { temperature: 0.8, seed: 13 },
  ];
  /** The long cases through `c` (three requests in a row reach the three decode workers, round-robin: each kind, every transport). */
  async function longPrompts(c: OpenAI, seed: number) {
    const stats = () => ({
      prefill: prefill.engine.stats().prefillTokensComputed,
      decode: decodes.map((d) => d.engine.stats().prefillTokensComputed),
      streamed: decodes.map((d) => d.engine.stats().streamedTokens),
    });
    const before = stats();
    const used = [prefill, ...decodes].map((w) => w.engine.stats().usedBlocks);
    for (const [i, k] of longCases.entries()) {
      const ids = seededTokens(longLen, seed + i);
      const ref = await referenceGenerate(runner, ids, samplingParams({ ...k, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }));
      const res = await c.completions.create({ model: 'tiny', prompt: ids, max_tokens: 8, ...k });
      expect(res.choices[0]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
      expect(res.usage?.prompt_tokens_details?.cached_tokens ?? 0).toBe(0); // cold on the prefill worker
    }
    expect(decodes.every((d) => d.engine.stats().importFallbacks === 0)).toBe(true);
    await blocksBackTo(used);
    const after = stats();
    return {
      prefill: after.prefill - before.prefill,
      decode: after.decode.map((n, i) => n - before.decode[i]!),
      streamed: after.streamed.map((n, i) => n - before.streamed[i]!),
    };
  }
  /** Every full block below the one holding the last prompt token. */
  const belowLast = Math.floor((longLen - 1) / 16) * 16;

  it('prompts longer than the prefill chunk: greedy and seeded output equals the reference over every transport; the decode worker computes the last block', async () => {
    const got = await longPrompts(client, 900);
    // The prefill worker computed every block below the last prompt token's, and each reached the decode
    // worker (as parts while the prefill went on, and the last transfer) and entered its prefix cache; the
    // decode worker computed the rest (two requests each) and sampled the first token itself.
    expect(got.prefill).toBe(longCases.length * belowLast);
    expect(got.streamed).toEqual(decodes.map(() => 2 * belowLast));
    expect(got.decode).toEqual(decodes.map(() => 2 * (longLen - belowLast)));
  });

  it('with --decode-computes-tail off, the prefill worker samples the first token and the last block moves after it: the same tokens', async () => {
    const g = await startDisaggGateway({ decodeComputesTail: false });
    try {
      const got = await longPrompts(new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 }), 920);
      expect(got.prefill).toBe(longCases.length * longLen);
      expect(got.decode).toEqual([0, 0, 0]);
      // The first chunk's blocks reached each decode worker as a part while the prefill went on, and entered
      // its prefix cache before the first token (the part in flight is always waited for). How many of the
      // later parts go as parts depends on timing — one still waiting when the prefill ends rides with the
      // last transfer — so between that and every full block below the last prompt token's (two requests each).
      for (const s of got.streamed) {
        expect(s % 16).toBe(0);
        expect(s).toBeGreaterThanOrEqual(2 * ENGINE_DEFAULTS.prefillChunkTokens);
        expect(s).toBeLessThanOrEqual(2 * belowLast);
      }
    } finally {
      await g.close();
    }
  });

  it('with --kv-streaming off, the whole prompt goes after the first token: the same tokens, no part', async () => {
    const whole = await startDisaggGateway({ kvStreaming: false });
    try {
      const used = [prefill, ...decodes].map((w) => w.engine.stats().usedBlocks);
      const stats = () => decodes.map((d) => d.engine.stats());
      const before = stats();
      const wholeClient = new OpenAI({ baseURL: `${whole.url}/v1`, apiKey: 'x', maxRetries: 0 });
      const ids = seededTokens(2 * ENGINE_DEFAULTS.prefillChunkTokens + 5, 950);
      const ref = await referenceGenerate(
        runner,
        ids,
        samplingParams({ temperature: 0, maxTokens: 6, stopTokenIds: tokenizer.eosTokenIds }),
      );
      const res = await wholeClient.completions.create({ model: 'tiny', prompt: ids, max_tokens: 6, temperature: 0 });
      expect(res.choices[0]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
      const after = stats();
      expect(after.map((a, i) => a.streamedTokens - before[i]!.streamedTokens)).toEqual([0, 0, 0]);
      expect(after.map((a, i) => a.prefillTokensComputed - before[i]!.prefillTokensComputed)).toEqual([0, 0, 0]);
      expect(after.every((a) => a.importFallbacks === 0)).toBe(true);
      await blocksBackTo(used);
    } finally {
      await whole.close();
    }
  });

  it('a streamed prefill the client abandons mid-prompt leaves no block held on either worker', async () => {
    const used = [prefill, ...decodes].map((w) => w.engine.stats().usedBlocks);
    const prefillBefore = prefill.engine.stats().prefillTokensComputed;
    const streamed = (): number => decodes.reduce((n, d) => n + d.engine.stats().streamedTokens, 0);
    const before = streamed();
    const ids = seededTokens(12 * ENGINE_DEFAULTS.prefillChunkTokens, 1900);
    const ac = new AbortController();
    // Not awaited: the response (its headers) starts with the first token, and the abort is to come before it.
    const read = (async () => {
      const stream = await client.completions.create(
        { model: 'tiny', prompt: ids, max_tokens: 8, temperature: 0, stream: true },
        { signal: ac.signal },
      );
      for await (const _ of stream) {
        /* whatever comes before the abort */
      }
    })().catch(() => undefined);
    // Aborted once the first part is in, while the prefill worker still computes.
    for (let i = 0; i < 2_000 && streamed() === before; i++) await new Promise((r) => setTimeout(r, 2));
    expect(streamed()).toBeGreaterThan(before);
    ac.abort();
    await read;
    await blocksBackTo(used);
    expect(prefill.engine.stats().prefillTokensComputed).toBeLessThan(prefillBefore + ids.length); // cut short
  });

  it('chat works through the cluster', async () => {
    const res = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 5,
      temperature: 0,
    });
    expect(res.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(res.usage?.completion_tokens).toBe(5);
  });
});

describe('streamed handoff, its parts refused', () => {
  it('a part the decode worker refuses goes again with the last transfer: the same tokens, nothing computed or held on the decode worker', async () => {
    // The decode worker hears of the transfer only well after its first part began: that part waits for its
    // claim, is refused (UNCLAIMED_BEGIN_MS), and the prefill worker stops streaming and sends every block
    // with the first token instead, which the late Generate then admits.
    const d = decodes[0]!;
    const toDecode = new WorkerClient(d.grpcAddress, tls);
    const toPrefill = new WorkerClient(prefill.grpcAddress, tls);
    try {
      const ids = seededTokens(3 * ENGINE_DEFAULTS.prefillChunkTokens + 5, 2900);
      const sampling = seededSampling(
        samplingToWire(samplingParams({ temperature: 0.8, seed: 21, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds })),
      );
      const ref = await referenceGenerate(
        runner,
        ids,
        samplingParams({ temperature: 0.8, seed: 21, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }),
      );
      const used = [prefill, ...decodes].map((w) => w.engine.stats().usedBlocks);
      const before = d.engine.stats();
      const transferId = 'late-claim-0001';
      const { first, rest } = await prefillFirst(
        toPrefill.prefill({
          request_id: 'late-claim',
          prompt_token_ids: ids,
          sampling,
          from_block: 0,
          target: { grpc_address: d.grpcAddress, transfer_id: transferId, transport: 'auto', stream_parts: true },
        }),
      );
      await new Promise((r) => setTimeout(r, 2_500)); // past UNCLAIMED_BEGIN_MS from the first part's Begin
      const req: GenerateRequestMsg = {
        request_id: 'late-claim',
        prompt_token_ids: ids,
        sampling,
        priority: 0,
        prefill: { mode: 'streamed', prefill_worker: 'p0', transfer_id: transferId },
      };
      const got: number[] = [];
      let prefilledBy = '';
      for await (const c of toDecode.generate(req)) {
        got.push(...c.token_ids);
        prefilledBy ||= c.prefilled_by;
      }
      await rest;
      expect(got).toEqual(ref.tokenIds);
      expect(got[0]).toBe(first.first_token);
      expect(prefilledBy).toBe('p0');
      const after = d.engine.stats();
      expect(after.streamedTokens).toBe(before.streamedTokens); // no part got in
      expect(after.prefillTokensComputed).toBe(before.prefillTokensComputed); // all of it imported
      expect(after.importFallbacks).toBe(before.importFallbacks);
      await blocksBackTo(used);
    } finally {
      toDecode.close();
      toPrefill.close();
    }
  });
});

describe('pushed handoff (the gateway asks the prefill worker; the KV is pushed to the decode worker)', () => {
  const sampling = (): ReturnType<typeof samplingToWire> =>
    samplingToWire(samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }));
  const plan = (mode: 'local' | 'pushed', transferId = ''): GenerateRequestMsg['prefill'] => ({
    mode,
    prefill_worker: mode === 'pushed' ? 'p0' : '',
    transfer_id: transferId,
  });
  async function tokensFrom(c: WorkerClient, req: GenerateRequestMsg): Promise<number[]> {
    const out: number[] = [];
    for await (const chunk of c.generate(req)) out.push(...chunk.token_ids);
    return out;
  }

  it('KV whose transfer begins before its Generate waits for it (nothing pulled), and is imported: same tokens, no prompt token computed', async () => {
    const d = decodes[0]!;
    const ids = tokenizer.encode('This prefill is pushed ahead of the request that will claim it');
    const p = new WorkerClient(prefill.grpcAddress, tls);
    const c = new WorkerClient(d.grpcAddress, tls);
    try {
      const events = p.prefill({
        request_id: 'early',
        prompt_token_ids: ids,
        sampling: sampling(),
        from_block: 0,
        target: { grpc_address: d.grpcAddress, transfer_id: 'pushed-early', transport: 'auto' },
      });
      const { first, rest } = await prefillFirst(events);
      // The transfer begins now, before any request names it: held at Begin, it waits for the Generate below.
      for (let i = 0; i < 100 && d.server.transfersPending.unclaimed === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(d.server.transfersPending).toEqual({ expected: 0, unclaimed: 1 });
      const computed = d.engine.stats().prefillTokensComputed;
      const base = { request_id: 'early-claim', prompt_token_ids: ids, sampling: sampling(), priority: 0 };
      const got = await tokensFrom(c, { ...base, prefill: plan('pushed', 'pushed-early') });
      await rest; // the prefill worker's receipt: the decode worker admitted the KV
      expect(d.engine.stats().prefillTokensComputed).toBe(computed);
      expect(got[0]).toBe(first.first_token);
      expect(got).toEqual(await tokensFrom(c, { ...base, request_id: 'early-local', prefill: plan('local') }));
    } finally {
      p.close();
      c.close();
    }
  });

  it('a transfer no request names is refused, not kept', async () => {
    const d = decodes[0]!;
    const ids = tokenizer.encode('Nobody will ever ask for the KV of this prompt');
    const p = new WorkerClient(prefill.grpcAddress, tls);
    try {
      const before = await counter(d, 'pdserve_kv_transfer_bytes_total{direction="in",peer_role="prefill"}');
      const events = p.prefill({
        request_id: 'unclaimed',
        prompt_token_ids: ids,
        sampling: sampling(),
        from_block: 0,
        target: { grpc_address: d.grpcAddress, transfer_id: 'pushed-unclaimed', transport: 'auto' },
      });
      const { rest } = await prefillFirst(events);
      const err = await rest.then(() => undefined, toCallError);
      expect(err?.message).toMatch(/unexpected transfer pushed-unclaimed/);
      expect(await counter(d, 'pdserve_kv_transfer_bytes_total{direction="in",peer_role="prefill"}')).toBe(before);
      expect(d.server.transfersPending).toEqual({ expected: 0, unclaimed: 0 });
    } finally {
      p.close();
    }
  });

  it('KV that never comes: the decode worker prefills locally soon after, with the same tokens', async () => {
    const d = decodes[1]!;
    const c = new WorkerClient(d.grpcAddress, tls);
    try {
      const ids = tokenizer.encode('Nobody pushes this prompt');
      const base = { request_id: 'never', prompt_token_ids: ids, sampling: sampling(), priority: 0 };
      const t0 = performance.now();
      const got = await tokensFrom(c, { ...base, prefill: plan('pushed', 'pushed-never') });
      expect(performance.now() - t0).toBeLessThan(5_000);
      expect(got).toEqual(await tokensFrom(c, { ...base, request_id: 'never-local', prefill: plan('local') }));
    } finally {
      c.close();
    }
  });
});

describe('errors keep their class between processes', () => {
  it("a worker's engine error reaches its caller with its class and parameter, not just a gRPC status", async () => {
    const d = decodes[0]!;
    const c = new WorkerClient(d.grpcAddress, tls);
    const run = async (req: GenerateRequestMsg): Promise<WorkerCallError | undefined> => {
      try {
        for await (const _ of c.generate(req)) void _;
      } catch (err) {
        return toCallError(err);
      }
      return undefined;
    };
    try {
      const sampling = samplingToWire(samplingParams({ temperature: 0, maxTokens: 4 }));
      const long = await run({
        request_id: 'too-long',
        prompt_token_ids: new Array<number>(d.engine.maxModelLen + 1).fill(1),
        sampling,
        priority: 0,
        prefill: null,
      });
      expect({ code: long?.code, class: long?.engineError?.code }).toEqual({ code: 'INVALID_ARGUMENT', class: 'context_length_exceeded' });
      const bad = await run({
        request_id: 'bad-temp',
        prompt_token_ids: [1, 2, 3],
        sampling: { ...sampling, temperature: -1 },
        priority: 0,
        prefill: null,
      });
      expect({ code: bad?.code, class: bad?.engineError?.code }).toEqual({ code: 'INVALID_ARGUMENT', class: 'invalid_request' });
      expect(bad?.engineError?.param).toBe('temperature');
    } finally {
      c.close();
    }
  });
});

/**
 * A TCP relay on `listen` to a worker's real address. Peers dial the worker through it (it is the address
 * the worker advertises), so a test can hold back or cut what they send, here the prefill worker's KV
 * transfer, while it talks to the worker directly.
 */
interface Relay {
  /** Stops forwarding what peers send until release(). */
  hold(): void;
  release(): void;
  /** Drops every connection, now and from now on. */
  cut(): void;
  close(): Promise<void>;
}

async function startRelay(listenHost: string, port: number, targetHost: string): Promise<Relay> {
  let held: { promise: Promise<void>; release: () => void } | undefined;
  let cut = false;
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    if (cut) return void inbound.destroy();
    const outbound = connect(port, targetHost);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => undefined).on('close', () => {
        inbound.destroy();
        outbound.destroy();
        sockets.delete(s);
      });
    }
    outbound.pipe(inbound);
    inbound.on('data', (data: Buffer) => {
      if (!held) return void outbound.write(data);
      inbound.pause();
      void held.promise.then(() => {
        outbound.write(data);
        inbound.resume();
      });
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, listenHost, resolve));
  return {
    hold() {
      let release!: () => void;
      held = { promise: new Promise((r) => (release = r)), release };
    },
    release() {
      held?.release();
      held = undefined;
    },
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Waits (up to 10 s) for the prefill worker's and every decode worker's used KV blocks to come back to
 * `used`, and for no decode worker to expect a transfer any more, then checks they did.
 */
async function blocksBackTo(used: readonly number[]): Promise<void> {
  const now = (): { used: number[]; expected: number[] } => ({
    used: [prefill, ...decodes].map((w) => w.engine.stats().usedBlocks),
    expected: decodes.map((d) => d.server.transfersPending.expected + d.server.transfersPending.unclaimed),
  });
  const want = { used: [...used], expected: decodes.map(() => 0) };
  for (let i = 0; i < 500 && JSON.stringify(now()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 20));
  expect(now()).toEqual(want);
}

/** A counter of a worker's /metrics exposition, e.g. 'pdserve_kv_transfer_bytes_total{direction="in",peer_role="prefill"}'. */
async function counter(w: WorkerService, series: string): Promise<number> {
  const line = (await w.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const KV_IN = 'pdserve_kv_transfer_bytes_total{direction="in",peer_role="prefill"}';
const KV_IN_FAILED = 'pdserve_kv_transfer_failures_total{direction="in",peer_role="prefill"}';

describe('first token ahead of the KV transfer', () => {
  // A decode worker of its own that advertises a relay: the prefill worker's KV goes through the relay, the
  // test's Generate calls do not. It registers on the cluster's control plane (workers dial only registered
  // peers); the tests above are done by then, and what the gateway may route to it is served all the same.
  let decode: WorkerService;
  let relay: Relay;
  let direct: WorkerClient;
  let toPrefill: WorkerClient;

  beforeAll(async () => {
    const port = await freePort();
    relay = await startRelay('127.0.0.2', port, '127.0.0.1');
    decode = await startWorkerService({
      role: 'decode',
      instanceId: 'd-relayed',
      engine: { modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 * 1024 * 1024 },
      controlPlane: cp,
      logger: cpSilent,
      host: '127.0.0.1',
      advertiseHost: '127.0.0.2',
      grpcPort: port,
      // Every byte of the KV then rides the relayed gRPC connection.
      transports: ['grpc'],
      tls,
    });
    direct = new WorkerClient(`127.0.0.1:${port}`, tls);
    toPrefill = new WorkerClient(prefill.grpcAddress, tls);
  }, 60_000);

  afterAll(async () => {
    direct?.close();
    toPrefill?.close();
    await decode?.drain(1_000); // leaves the registry first: the gateway stops routing to it
    for (let i = 0; i < 100 && gateway.view.workers().some((w) => w.id === 'd-relayed'); i++) await new Promise((r) => setTimeout(r, 20));
    await relay?.close();
  });

  function request(id: string, prompt: string, sampling: Parameters<typeof samplingParams>[0], transferId?: string): GenerateRequestMsg {
    return {
      request_id: id,
      prompt_token_ids: tokenizer.encode(prompt),
      sampling: samplingToWire(samplingParams({ stopTokenIds: tokenizer.eosTokenIds, ...sampling })),
      priority: 0,
      prefill:
        transferId !== undefined
          ? { mode: 'pushed', prefill_worker: 'p0', transfer_id: transferId }
          : { mode: 'local', prefill_worker: '', transfer_id: '' },
    };
  }

  /** What the gateway does: the prefill worker pushes the KV here under `req`'s transfer id and streams its first token. */
  function prefillFor(req: GenerateRequestMsg): Promise<{ readonly first: PrefillFirstMsg; readonly rest: Promise<void> }> {
    const target = { grpc_address: decode.grpcAddress, transfer_id: req.prefill!.transfer_id, transport: 'auto' };
    return prefillFirst(
      toPrefill.prefill({
        request_id: req.request_id,
        prompt_token_ids: req.prompt_token_ids,
        sampling: req.sampling,
        from_block: 0,
        target,
      }),
    );
  }

  /** A whole disaggregated request: the prefill's first token, and the decode worker's stream (which repeats it). */
  async function pushed(req: GenerateRequestMsg): Promise<{ readonly first: PrefillFirstMsg; readonly chunks: GenerateChunkMsg[] }> {
    const { first, rest } = await prefillFor(req);
    const chunks = await chunksOf(req);
    await rest.catch(() => undefined);
    return { first, chunks };
  }

  async function chunksOf(req: GenerateRequestMsg): Promise<GenerateChunkMsg[]> {
    const chunks: GenerateChunkMsg[] = [];
    for await (const c of direct.generate(req)) chunks.push(c);
    return chunks;
  }

  const tokensOf = (chunks: readonly GenerateChunkMsg[]): number[] => chunks.flatMap((c) => c.token_ids);

  it('the prefill worker streams the first token while its KV transfer is held back', async () => {
    const prompt = 'The first token must not wait for the KV blocks of this fairly long prompt to arrive';
    const before = await counter(decode, KV_IN);
    relay.hold();
    const req = request('held-1', prompt, { temperature: 0, maxTokens: 8 }, 'held-1');
    try {
      const { first, rest } = await within(prefillFor(req), 10_000, 'the first token, with the KV transfer held back,');
      expect(first.prompt_tokens).toBe(tokenizer.encode(prompt).length);
      // Nothing of the transfer has reached the decode worker yet.
      expect(await counter(decode, KV_IN)).toBe(before);
      relay.release();
      const got = await chunksOf(req);
      await rest;
      expect(await counter(decode, KV_IN)).toBeGreaterThan(before);
      expect(got[0]).toMatchObject({ prefilled_by: 'p0' });
      expect(tokensOf(got)[0]).toBe(first.first_token);
      const local = await chunksOf(request('held-1-local', prompt, { temperature: 0, maxTokens: 8 }));
      expect(tokensOf(got)).toEqual(tokensOf(local));
      expect(got.at(-1)!.finish_reason).toBe(local.at(-1)!.finish_reason);
    } finally {
      relay.release();
    }
  });

  it('streams the same tokens and logprobs as the local path, greedy and seeded', async () => {
    const prompts = [
      'Remote or local, the tokens are the same',
      'A second prompt that spans a few more blocks than the first one does, to be sure',
    ];
    const samplings = [
      { temperature: 0, maxTokens: 12, logprobs: 2 },
      { temperature: 0.8, seed: 11, maxTokens: 12, logprobs: 2 },
      { temperature: 1, topP: 0.9, seed: 3, maxTokens: 12 },
    ];
    const computedBefore = decode.engine.stats().prefillTokensComputed;
    const remote: { first: PrefillFirstMsg; chunks: GenerateChunkMsg[] }[] = [];
    for (const [i, p] of prompts.entries())
      for (const [j, sp] of samplings.entries()) remote.push(await pushed(request(`same-${i}-${j}`, p, sp, `same-${i}-${j}`)));
    // Every disaggregated request imported its KV: the decode worker computed no prompt token.
    expect(decode.engine.stats().prefillTokensComputed).toBe(computedBefore);
    let k = 0;
    for (const [i, p] of prompts.entries()) {
      for (const [j, sp] of samplings.entries()) {
        const { first, chunks: got } = remote[k++]!;
        const want = await chunksOf(request(`same-${i}-${j}-local`, p, sp));
        expect(tokensOf(got)[0]).toBe(first.first_token);
        expect(tokensOf(got)).toEqual(tokensOf(want));
        expect(got.at(-1)!.finish_reason).toBe(want.at(-1)!.finish_reason);
        const gotLp = got.flatMap((c) => c.logprobs);
        const wantLp = want.flatMap((c) => c.logprobs);
        expect(gotLp).toHaveLength(sp.logprobs === undefined ? 0 : tokensOf(got).length);
        gotLp.forEach((lp, n) => {
          expect(lp.logprob).toBeCloseTo(wantLp[n]!.logprob, 3);
          expect(lp.top.map((t) => t.token_id)).toEqual(wantLp[n]!.top.map((t) => t.token_id));
        });
      }
    }
  });

  it("plan tail, the decode worker computing the last block: the tokens and logprobs of the local path, greedy and seeded; usage counts the prefill worker's cache", async () => {
    const prompt = 'A prompt whose last block the decode worker computes itself, every block before it streamed in from the prefill worker';
    const samplings = [
      { temperature: 0, maxTokens: 10, logprobs: 2 },
      { temperature: 0.8, seed: 5, maxTokens: 10, logprobs: 2 },
    ];
    for (const [j, sp] of samplings.entries()) {
      const id = `tail-${j}`;
      const req: GenerateRequestMsg = { ...request(id, prompt, sp), prefill: { mode: 'tail', prefill_worker: 'p0', transfer_id: id } };
      const n = req.prompt_token_ids.length;
      const below = Math.floor((n - 1) / 16) * 16;
      expect(below).toBeGreaterThan(0);
      const computed = decode.engine.stats().prefillTokensComputed;
      const target = { grpc_address: decode.grpcAddress, transfer_id: id, transport: 'auto', stream_parts: true, leave_tail: true };
      const events = toPrefill.prefill({
        request_id: id,
        prompt_token_ids: req.prompt_token_ids,
        sampling: req.sampling,
        from_block: 0,
        target,
      });
      const [got, done] = await Promise.all([chunksOf(req), prefillDone(events)]);
      expect(done.blocks).toBe(below / 16);
      expect(decode.engine.stats().prefillTokensComputed - computed).toBe(n - below);
      // Cold on the prefill worker the first time; the second time its whole part of the prompt came from its cache.
      expect(got[0]).toMatchObject({ prefilled_by: 'p0', cached_tokens: j === 0 ? 0 : below });
      const want = await chunksOf(request(`${id}-local`, prompt, sp));
      expect(tokensOf(got)).toEqual(tokensOf(want));
      expect(got.at(-1)!.finish_reason).toBe(want.at(-1)!.finish_reason);
      const gotLp = got.flatMap((c) => c.logprobs);
      const wantLp = want.flatMap((c) => c.logprobs);
      expect(gotLp).toHaveLength(tokensOf(got).length);
      gotLp.forEach((lp, k) => {
        expect(lp.logprob).toBeCloseTo(wantLp[k]!.logprob, 3);
        expect(lp.top.map((t) => t.token_id)).toEqual(wantLp[k]!.top.map((t) => t.token_id));
      });
    }
    expect(decode.engine.stats().usedBlocks).toBe(0);
  });

  it('max_tokens 1, and a first token that stops the request, yield exactly that token and a finish reason', async () => {
    const prompt = 'One token only, please, from the prefill worker';
    const [only] = tokensOf(await chunksOf(request('one-local', prompt, { temperature: 0, maxTokens: 1 })));
    const one = (await pushed(request('one', prompt, { temperature: 0, maxTokens: 1 }, 'one'))).chunks;
    expect(tokensOf(one)).toEqual([only]);
    expect(one.at(-1)!.finish_reason).toBe('length');
    const stopped = (await pushed(request('stop-first', prompt, { temperature: 0, maxTokens: 8, stopTokenIds: [only!] }, 'stop-first')))
      .chunks;
    expect(tokensOf(stopped)).toEqual([only]);
    expect(stopped.at(-1)!.finish_reason).toBe('stop');
  });

  it('falls back to local prefill when the transfer fails after the first token was streamed', async () => {
    const prompt = 'The transfer of this prompt is cut after its first token went out';
    const want = await chunksOf(request('cut-local', prompt, { temperature: 0.7, seed: 9, maxTokens: 10 }));
    const failedBefore = await counter(decode, KV_IN_FAILED);
    relay.cut();
    const t0 = performance.now();
    const { first, chunks: got } = await pushed(request('cut', prompt, { temperature: 0.7, seed: 9, maxTokens: 10 }, 'cut'));
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(got.every((c) => c.prefilled_by === '')).toBe(true);
    expect(tokensOf(got)[0]).toBe(first.first_token);
    expect(tokensOf(got)).toEqual(tokensOf(want));
    expect(await counter(decode, KV_IN_FAILED)).toBe(failedBefore + 1);
    // Unseeded sampling too, seeded by the gateway (as here): the local fallback re-samples the same first token.
    const unseeded = request('cut-unseeded', prompt, { temperature: 1, maxTokens: 10, ignoreEos: true }, 'cut-unseeded');
    const again = await pushed({ ...unseeded, sampling: seededSampling(unseeded.sampling!) });
    expect(tokensOf(again.chunks)).toHaveLength(10);
    expect(tokensOf(again.chunks)[0]).toBe(again.first.first_token);
    expect(await counter(decode, KV_IN_FAILED)).toBe(failedBefore + 2);
  });
});

describe('first token ahead of the KV transfer, through the gateway', () => {
  it('max_tokens 1 gives one token and finish_reason length, streamed or not', async () => {
    const prompt = 'Just the first token through the gateway';
    const ids = tokenizer.encode(prompt);
    const ref = await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 1, stopTokenIds: tokenizer.eosTokenIds }));
    const res = await client.completions.create({ model: 'tiny', prompt, max_tokens: 1, temperature: 0 });
    expect(res.choices[0]).toMatchObject({ text: completion(tokenizer, ids, ref.tokenIds), finish_reason: 'length' });
    expect(res.usage?.completion_tokens).toBe(1);
    let text = '';
    let finish: string | null = null;
    const stream = await client.completions.create({ model: 'tiny', prompt, max_tokens: 1, temperature: 0, stream: true });
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect({ text, finish }).toEqual({ text: completion(tokenizer, ids, ref.tokenIds), finish: 'length' });
  });
});

describe('a rolling upgrade: a worker of an older release beside this one', () => {
  /** The control plane as an older worker uses it: its record lists no features (it predates the list). */
  const asOlderRelease = (plane: ControlPlane): ControlPlane => ({
    ...plane,
    registry: {
      register: (record) => plane.registry.register({ ...record, features: undefined }),
      list: () => plane.registry.list(),
      watch: () => plane.registry.watch(),
      close: async () => undefined,
    },
  });

  it.each(['decode', 'prefill'] as const)(
    "no tail plan when the %s worker does not list 'leave-tail': the prefill worker samples the first token, the same tokens",
    async (older) => {
      const hub = new InProcessHub();
      const plane = await connectControlPlane({ cluster: `upgrade-${older}`, hub, logger: cpSilent });
      const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 32 * 1024 * 1024 };
      const start = (role: 'prefill' | 'decode') =>
        startWorkerService({
          role,
          instanceId: `${role}-${older === role ? 'old' : 'new'}`,
          engine,
          controlPlane: older === role ? asOlderRelease(plane) : plane,
          logger: cpSilent,
          tls,
        });
      const [p, d] = await Promise.all([start('prefill'), start('decode')]);
      const g = await startDisaggGateway({}, plane, 2);
      try {
        const ids = seededTokens(2 * ENGINE_DEFAULTS.prefillChunkTokens + 37, 970);
        const ref = await referenceGenerate(
          runner,
          ids,
          samplingParams({ temperature: 0, maxTokens: 6, stopTokenIds: tokenizer.eosTokenIds }),
        );
        const c = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'x', maxRetries: 0 });
        const res = await c.completions.create({ model: 'tiny', prompt: ids, max_tokens: 6, temperature: 0 });
        expect(res.choices[0]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
        // The whole prompt computed on the prefill worker, none of it on the decode worker: no plan 'tail'.
        expect(p.engine.stats().prefillTokensComputed).toBe(ids.length);
        expect(d.engine.stats().prefillTokensComputed).toBe(0);
        expect(d.engine.stats().importFallbacks).toBe(0);
      } finally {
        await g.close();
        await Promise.all([p.close(), d.close()]);
        await plane.close();
      }
    },
  );
});

/** `n` prompt token ids from `seed` (BOS first, then ids that are no special token), none repeated across seeds in practice. */
function seededTokens(n: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  const out = [1];
  while (out.length < n) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(3 + (x % 31_000));
  }
  return out;
}
