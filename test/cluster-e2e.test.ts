// The cluster as separate processes on real Redis and NATS (each started by this test on free loopback
// ports): a gateway, 2 prefill and 2 decode workers, driven with the official openai client; then the
// failures an operator meets: NATS down, Redis restarted, the prefill pool killed, a decode worker killed.
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, silentLogger, type ControlPlane } from '@pdserve/control-plane';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, transparentHugePages } from '@pdserve/model';
import { completion, spawnService, startNats, startRedis, waitFor, type ServiceProcess, type TestServer } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { samplingToWire, WorkerClient } from '@pdserve/worker';
import { workerStats as workerStatsOf } from './lib/workers';

const LEASE_MS = 1500;
let redis: TestServer;
let nats: TestServer;
let cp: ControlPlane;
let dir: string;
let runner: ModelRunner;
let tokenizer: Tokenizer;
let gateway: ServiceProcess;
const workers = new Map<string, ServiceProcess>();
let client: OpenAI;

async function liveWorkers(): Promise<string[]> {
  return (await cp.registry.list()).map((r) => r.id).sort();
}

const workerStats = (id: string) => workerStatsOf(cp, id);

async function expected(prompt: string, maxTokens: number, seed?: number, temperature = 0): Promise<string> {
  const ids = tokenizer.encode(prompt);
  const ref = await referenceGenerate(runner, ids, samplingParams({ temperature, seed, maxTokens, stopTokenIds: tokenizer.eosTokenIds }));
  return completion(tokenizer, ids, ref.tokenIds);
}

beforeAll(async () => {
  dir = await ensureTinyModel();
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
  runner = await ModelRunner.create(loadModelSpec(dir));
  tokenizer = await Tokenizer.fromDir(dir);
  cp = await connectControlPlane({ cluster: 'e2e', redisUrl: redis.url, natsUrl: nats.url, logger: silentLogger });
  const shared = [
    '--model',
    dir,
    '--served-model-name',
    'tiny',
    '--cluster',
    'e2e',
    '--redis',
    redis.url,
    '--nats',
    nats.url,
    '--lease-ttl-ms',
    String(LEASE_MS),
    '--log-level',
    'warn',
  ];
  const specs: [string, string, string[]][] = [
    ['prefill-0', 'prefill-worker', []],
    ['prefill-1', 'prefill-worker', []],
    ['decode-0', 'decode-worker', ['--transports', 'tcp,grpc']],
    ['decode-1', 'decode-worker', ['--transports', 'shm,tcp,grpc']],
  ];
  const started = await Promise.all(
    specs.map(([id, cmd, extra]) =>
      spawnService(id, cmd, [...shared, '--kv-cache-bytes', '64M', '--instance-id', id, ...extra], '--grpc-port'),
    ),
  );
  started.forEach((s) => workers.set(s.name, s));
  gateway = await spawnService('gateway', 'gateway', [...shared, '--remote-prefill-min-tokens', '8'], '--port');
  const all = [gateway, ...started];
  const died = (): boolean => all.some((s) => s.proc.exitCode !== null);
  const dump = (): string => all.map((s) => `--- ${s.name}\n${s.output().slice(-2000)}`).join('\n');
  await waitFor('4 workers registered', async () => !died() && (await liveWorkers()).length === 4, 90_000).catch((e) =>
    Promise.reject(new Error(`${e.message}\n${dump()}`)),
  );
  await waitFor(
    'gateway ready',
    async () => !died() && (await fetch(`http://127.0.0.1:${gateway.port}/ready`)).status === 200,
    60_000,
  ).catch((e) => Promise.reject(new Error(`${e.message}\n${dump()}`)));
  // The gateway polls membership every lease/3: after one more poll it knows every registered worker.
  await new Promise((r) => setTimeout(r, LEASE_MS));
  client = new OpenAI({ baseURL: `http://127.0.0.1:${gateway.port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 });
}, 180_000);

afterAll(async () => {
  await Promise.all([gateway, ...workers.values()].map((s) => s?.kill()));
  await cp?.close();
  await Promise.all([redis?.stop(), nats?.stop()]);
  await runner?.release();
});

/** Whether the kernel gives transparent huge pages to memory that asks (huge-pages.ts). */
const thpOnRequest = ['madvise', 'always'].includes(transparentHugePages() ?? 'never');

describe('cluster of separate processes on real Redis and NATS', () => {
  it.skipIf(!thpOnRequest)('every worker holds its model on transparent huge pages (started with the glibc tunable)', () => {
    for (const w of workers.values()) {
      const rollup = readFileSync(`/proc/${w.proc.pid}/smaps_rollup`, 'utf8');
      const huge = Number(/^AnonHugePages:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
      expect(huge, w.name).toBeGreaterThan(16 * 1024); // kB: the tiny model's embedding alone is ≈ 150 MB
    }
  });

  it('serves chat and completions, streaming and not, token-identical to the reference (prefilled remotely)', async () => {
    const prompt = 'Disaggregated serving across processes keeps tokens identical';
    const want = await expected(prompt, 10);
    const plain = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0 });
    expect(plain.choices[0]!.text).toBe(want);
    let streamed = '';
    for await (const c of await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0, stream: true }))
      streamed += c.choices[0]?.text ?? '';
    expect(streamed).toBe(want);
    const chat = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: prompt }],
      max_tokens: 6,
      temperature: 0,
    });
    let chatStreamed = '';
    for await (const c of await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: prompt }],
      max_tokens: 6,
      temperature: 0,
      stream: true,
    })) {
      chatStreamed += c.choices[0]?.delta.content ?? '';
    }
    expect(chatStreamed).toBe(chat.choices[0]!.message.content);
    // Seeded sampling crosses the prefill → decode handoff with its RNG state.
    const seeded = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0.9, seed: 11 });
    expect(seeded.choices[0]!.text).toBe(await expected(prompt, 10, 11, 0.9));
    const prefilled = (await workerStats('prefill-0')).prefill_tokens_computed + (await workerStats('prefill-1')).prefill_tokens_computed;
    expect(prefilled).toBeGreaterThan(0);
  });

  it('a client that disconnects mid-stream cancels the request on every hop and frees its blocks', async () => {
    const ac = new AbortController();
    const stream = await client.completions.create(
      {
        model: 'tiny',
        prompt: 'Long running generation that the client abandons',
        max_tokens: 2000,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsStreaming,
      { signal: ac.signal },
    );
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 5) ac.abort();
    } catch {
      // The client's own abort surfaces here or ends the iteration; either way the socket is gone.
    }
    expect(n).toBeGreaterThanOrEqual(5);
    expect(n).toBeLessThan(2000);
    await waitFor(
      'every worker idle with no blocks in use',
      async () => {
        const s = await Promise.all([...workers.keys()].map(workerStats));
        return s.every((x) => x.running === 0 && x.waiting === 0 && x.used_blocks === 0);
      },
      10_000,
    );
  });

  it('SIGTERM drains a worker: its in-flight stream finishes, it deregisters at once and exits 0', async () => {
    const extra = await spawnService(
      'decode-9',
      'decode-worker',
      [
        '--model',
        dir,
        '--served-model-name',
        'tiny',
        '--cluster',
        'e2e',
        '--redis',
        redis.url,
        '--nats',
        nats.url,
        '--lease-ttl-ms',
        '60000',
        '--log-level',
        'warn',
        '--kv-cache-bytes',
        '64M',
        '--instance-id',
        'decode-9',
      ],
      '--grpc-port',
    );
    try {
      await waitFor('decode-9 registered', async () => (await liveWorkers()).includes('decode-9'), 60_000);
      const direct = new WorkerClient(`127.0.0.1:${extra.port}`);
      const prompt = tokenizer.encode('Finish what you started before leaving');
      const want = (await referenceGenerate(runner, prompt, samplingParams({ temperature: 0, maxTokens: 300, ignoreEos: true }))).tokenIds;
      const got: number[] = [];
      let signalled = false;
      for await (const chunk of direct.generate({
        request_id: 'drain-1',
        prompt_token_ids: prompt,
        sampling: samplingToWire(samplingParams({ temperature: 0, maxTokens: 300, ignoreEos: true })),
        priority: 0,
        prefill: null,
      })) {
        got.push(...chunk.token_ids);
        if (!signalled && got.length >= 5) {
          signalled = true;
          extra.proc.kill('SIGTERM');
        }
      }
      direct.close();
      expect(got).toEqual(want);
      // Deregistered on drain, long before its 60 s lease would have run out.
      await waitFor('decode-9 deregistered', async () => !(await liveWorkers()).includes('decode-9'), 10_000);
      await waitFor('decode-9 exited', () => extra.proc.exitCode !== null, 30_000);
      expect(extra.proc.exitCode).toBe(0);
    } finally {
      await extra.kill('SIGKILL');
    }
  }, 120_000); // its waits are bounded one by one (a stuck one names itself); under a loaded suite start-up is slow

  it('NATS down: the cluster keeps serving (load-based, snapshots by gRPC); when NATS returns events flow again', async () => {
    await nats.stop();
    const prompt = 'Serving while the event bus is down';
    const want = await expected(prompt, 6);
    for (let i = 0; i < 3; i++) {
      const r = await client.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0 });
      expect(r.choices[0]!.text).toBe(want);
    }
    await nats.restart();
    await waitFor('our own NATS client reconnected', () => cp.events.status === 'connected', 30_000);
    // A load report from a worker proves the workers reconnected and publish again.
    let reports = 0;
    const sub = cp.events.subscribeLoad(() => void reports++);
    await waitFor('load reports flowing again', () => reports > 2, 30_000);
    sub.unsubscribe();
    const r = await client.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0 });
    expect(r.choices[0]!.text).toBe(want);
  });

  it('Redis restarted (empty): workers re-register and the cluster keeps serving', async () => {
    await redis.restart();
    await waitFor('workers re-registered in the new Redis', async () => (await liveWorkers()).length === 4, 30_000);
    const r = await client.completions.create({ model: 'tiny', prompt: 'After the registry restart', max_tokens: 5, temperature: 0 });
    expect(r.choices[0]!.text).toBe(await expected('After the registry restart', 5));
  });

  it('the prefill pool killed: requests fall back to local prefill on the decode workers', async () => {
    const before = (await workerStats('decode-0')).prefill_tokens_computed + (await workerStats('decode-1')).prefill_tokens_computed;
    await Promise.all([workers.get('prefill-0')!.kill('SIGKILL'), workers.get('prefill-1')!.kill('SIGKILL')]);
    // Right away (the gateway still lists them) and after their leases ran out.
    const prompt = 'The prefill pool is gone but this prompt still gets an answer';
    const want = await expected(prompt, 6);
    const r1 = await client.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0 });
    expect(r1.choices[0]!.text).toBe(want);
    await waitFor(
      'prefill workers left the registry',
      async () => (await liveWorkers()).every((id) => id.startsWith('decode')),
      LEASE_MS * 4,
    );
    const r2 = await client.completions.create({ model: 'tiny', prompt: `${prompt} again`, max_tokens: 6, temperature: 0 });
    expect(r2.choices[0]!.text).toBe(await expected(`${prompt} again`, 6));
    const after = (await workerStats('decode-0')).prefill_tokens_computed + (await workerStats('decode-1')).prefill_tokens_computed;
    expect(after).toBeGreaterThan(before);
  });

  it('kill -9 a decode worker mid-stream: its streams migrate to the other one and go on, new requests succeed on the rest', async () => {
    // Two long streams land on the two decode workers (kv-aware spreads load when nothing is cached).
    const open = async (tag: string) => {
      const s = await client.completions.create({
        model: 'tiny',
        prompt: `Stream ${tag} that outlives its worker`,
        max_tokens: 3000,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsStreaming);
      const it = s[Symbol.asyncIterator]();
      await it.next();
      return it;
    };
    const streams = [];
    for (const tag of ['a', 'b', 'c', 'd']) {
      streams.push(await open(tag));
      const [d0, d1] = [(await workerStats('decode-0')).running, (await workerStats('decode-1')).running];
      if (d0 > 0 && d1 > 0) break;
    }
    const onVictim = (await workerStats('decode-0')).running;
    expect(onVictim).toBeGreaterThan(0);
    expect((await workerStats('decode-1')).running).toBeGreaterThan(0);
    const t0 = Date.now();
    await workers.get('decode-0')!.kill('SIGKILL');
    const outcomes = await Promise.all(
      streams.map(async (it) => {
        try {
          for (let i = 0; i < 100_000; i++) {
            const r = await it.next();
            if (r.done) return 'ended';
            if (Date.now() - t0 > 3000) {
              await it.return?.();
              return 'still streaming';
            }
          }
          return 'ended';
        } catch (err) {
          return `error: ${(err as Error).message}`;
        }
      }),
    );
    // Migrated (test/migration.test.ts checks they stay token-identical): nobody sees an error.
    expect(outcomes).toEqual(streams.map(() => 'still streaming'));
    expect(Date.now() - t0).toBeLessThan(10_000);
    await waitFor('decode-0 left the registry', async () => !(await liveWorkers()).includes('decode-0'), LEASE_MS * 4);
    for (let i = 0; i < 3; i++) {
      const r = await client.completions.create({ model: 'tiny', prompt: `after the crash ${i}`, max_tokens: 4, temperature: 0 });
      expect(r.choices[0]!.text).toBe(await expected(`after the crash ${i}`, 4));
    }
  });
});
