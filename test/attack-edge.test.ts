// Attack suite, at the edge. Against `pdserve serve` (one engine) as a real process started with API keys (on
// the command line and in a key file), per-key limits and caches isolated per key: a missing or wrong key
// gets 401, a burst over the rate 429 with Retry-After, too many streams in flight 429; tenants never hit
// each other's cache, a cache_salt changes sharing but not the tokens. Against `pdserve gateway` as a real
// process with keys: 1,000 made-up paths, with and without a key, leave its HTTP metrics a bounded set of
// series. And, over the real engine in this process (to watch its KV pool): a client that stops reading its
// stream has its request aborted at the write timeout and the engine's KV blocks return to idle.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer, silentLogger, type ApiServer } from '@pdserve/api';
import { LLMEngine } from '@pdserve/engine';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion, spawnService, waitFor, type ServiceProcess } from '@pdserve/testkit';

const KEYS = { burst: 'sk-burst-4f1c2a', conc: 'sk-conc-9b3e77', a: 'sk-tenant-a-51d0', b: 'sk-tenant-b-c2e8' } as const;
const BURST = 10;

describe('pdserve serve with API keys, limits and per-key cache isolation (a real process)', () => {
  let serve: ServiceProcess;
  let base: string;
  let keyDir: string;
  let tokenizer: Tokenizer;
  let runner: ModelRunner;

  beforeAll(async () => {
    const dir = await ensureTinyModel();
    tokenizer = await Tokenizer.fromDir(dir);
    runner = await ModelRunner.create(loadModelSpec(dir));
    keyDir = mkdtempSync(join(tmpdir(), 'pdserve-keys-'));
    const keyFile = join(keyDir, 'api-keys');
    writeFileSync(keyFile, `# tenants\n${KEYS.a}\n\n${KEYS.b}\n`, { mode: 0o600 });
    serve = await spawnService(
      'serve',
      'serve',
      [
        '--model',
        dir,
        '--served-model-name',
        'tiny',
        '--kv-cache-bytes',
        '64M',
        '--log-level',
        'warn',
        '--api-key',
        KEYS.burst,
        '--api-key',
        KEYS.conc,
        '--api-key-file',
        keyFile,
        '--rate-limit',
        '0.5',
        '--rate-limit-burst',
        String(BURST),
        '--max-concurrent-per-key',
        '2',
        '--isolate-cache-per-key',
      ],
      '--port',
    );
    base = `http://127.0.0.1:${serve.port}`;
    await waitFor('serve to be ready', async () => (await fetch(`${base}/ready`)).status === 200, 60_000, 100).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${serve.output()}`);
    });
  }, 120_000);

  afterAll(async () => {
    await serve?.kill();
    await runner?.release();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  const call = (path: string, key: string | undefined, body?: unknown, signal?: AbortSignal): Promise<Response> =>
    fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  const errorOf = async (res: Response): Promise<{ status: number; code: string; type: string }> => ({
    status: res.status,
    ...((await res.json()) as { error: { code: string; type: string } }).error,
  });

  it('a missing or wrong key gets 401 invalid_api_key on every /v1/* route; /health and /ready stay open', async () => {
    for (const path of ['/v1/models', '/v1/completions', '/v1/chat/completions', '/v1/made-up']) {
      const body = path === '/v1/models' ? undefined : { model: 'tiny', prompt: 'x' };
      expect(await errorOf(await call(path, undefined, body))).toMatchObject({
        status: 401,
        code: 'invalid_api_key',
        type: 'invalid_request_error',
      });
      expect(await errorOf(await call(path, 'sk-wrong', body))).toMatchObject({ status: 401, code: 'invalid_api_key' });
      expect(await errorOf(await call(path, `${KEYS.a}x`, body))).toMatchObject({ status: 401 });
    }
    expect((await fetch(`${base}/health`)).status).toBe(200);
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    // Keys from the command line and from the file both work, as a Bearer token or in x-api-key.
    expect((await call('/v1/models', KEYS.conc)).status).toBe(200);
    expect((await fetch(`${base}/v1/models`, { headers: { 'x-api-key': KEYS.b } })).status).toBe(200);
  });

  it('a burst over the rate limit gets 429 with a Retry-After from the bucket', async () => {
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < BURST + 3; i++) {
      const res = await call('/v1/models', KEYS.burst);
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers.get('retry-after');
        expect(await errorOf(res)).toMatchObject({ code: 'rate_limit_exceeded', type: 'rate_limit_error' });
      } else await res.arrayBuffer();
    }
    // The burst passes (at 0.5/s, at most one more token refills meanwhile), the rest is refused.
    expect(statuses.slice(0, BURST).every((s) => s === 200)).toBe(true);
    expect(statuses.slice(-2)).toEqual([429, 429]);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(2); // a token every 2 s
    // Other keys have buckets of their own.
    expect((await call('/v1/models', KEYS.a)).status).toBe(200);
  });

  it('too many requests in flight for one key get 429 concurrency_limit_exceeded', async () => {
    const ac = new AbortController();
    const long = { model: 'tiny', prompt: 'Keep streaming', max_tokens: 3000, ignore_eos: true, stream: true };
    const streams = await Promise.all([
      call('/v1/completions', KEYS.conc, long, ac.signal),
      call('/v1/completions', KEYS.conc, long, ac.signal),
    ]);
    try {
      expect(streams.map((r) => r.status)).toEqual([200, 200]);
      const third = await call('/v1/completions', KEYS.conc, { model: 'tiny', prompt: 'One more', max_tokens: 2 });
      expect(third.headers.get('retry-after')).toBe('1');
      expect(await errorOf(third)).toMatchObject({ status: 429, code: 'concurrency_limit_exceeded' });
    } finally {
      ac.abort();
    }
    await waitFor("the key's slots to free", async () => (await call('/v1/models', KEYS.conc)).status === 200, 10_000, 50);
  });

  it("tenant B gets no cache hit on tenant A's prompt, each hits its own, a cache_salt only changes sharing: the tokens are the reference's", async () => {
    const prompt = 'Single-engine tenants: this prompt is long enough to fill a few KV blocks of sixteen tokens each. '.repeat(2);
    const ids = tokenizer.encode(prompt);
    const want = completion(
      tokenizer,
      ids,
      (await referenceGenerate(runner, ids, samplingParams({ temperature: 0, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds })))
        .tokenIds,
    );
    const ask = async (key: string, extra: Record<string, unknown> = {}): Promise<{ text: string; cached: number }> => {
      const res = await call('/v1/completions', key, { model: 'tiny', prompt, max_tokens: 8, temperature: 0, ...extra });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: { text: string }[]; usage: { prompt_tokens_details: { cached_tokens: number } } };
      return { text: body.choices[0]!.text, cached: body.usage.prompt_tokens_details.cached_tokens };
    };
    const a1 = await ask(KEYS.a);
    const b1 = await ask(KEYS.b);
    const a2 = await ask(KEYS.a);
    const b2 = await ask(KEYS.b);
    const aSalted = await ask(KEYS.a, { cache_salt: 'another-project' });
    const aSalted2 = await ask(KEYS.a, { cache_salt: 'another-project' });
    expect([a1, b1, a2, b2, aSalted, aSalted2].map((r) => r.text)).toEqual(Array(6).fill(want));
    expect([a1.cached, b1.cached, aSalted.cached]).toEqual([0, 0, 0]);
    expect(a2.cached).toBeGreaterThan(0);
    expect(b2.cached).toBeGreaterThan(0);
    expect(aSalted2.cached).toBeGreaterThan(0);
  });
});

describe('pdserve gateway with API keys (a real process): made-up paths', () => {
  const KEY = 'sk-gateway-7e2d91';
  let gateway: ServiceProcess;

  beforeAll(async () => {
    // No worker joins: generation would answer 503, but routes, keys and metrics are all there.
    gateway = await spawnService(
      'gateway',
      'gateway',
      ['--model', await ensureTinyModel(), '--served-model-name', 'tiny', '--log-level', 'warn', '--api-key', KEY],
      '--port',
    );
    await waitFor(
      'the gateway API',
      async () => (await fetch(`http://127.0.0.1:${gateway.port}/health`)).status === 200,
      60_000,
      100,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${gateway.output()}`);
    });
  }, 120_000);

  afterAll(async () => {
    await gateway?.kill();
  });

  /** The HTTP series of the gateway's /metrics: `name{labels}` of each line of the two HTTP families. */
  async function httpSeries(): Promise<string[]> {
    const text = await (await fetch(`http://127.0.0.1:${gateway.adminPort}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => /^pdserve_(requests_total|request_duration_seconds_(bucket|sum|count))\{/.test(l))
      .map((l) => l.slice(0, l.lastIndexOf(' ')));
  }

  it('1,000 random paths, with and without a key, leave a bounded set of metric series', async () => {
    const word = (): string => randomBytes(6).toString('hex');
    const send = async (from: number, n: number): Promise<void> => {
      let next = from;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < from + n) {
            const i = next++;
            const path = [`/v1/${word()}`, `/v1/models/${word()}`, `/${word()}/${word()}`, `/v1/${word()}/${word()}?q=${word()}`][i % 4]!;
            const headers: Record<string, string> = i % 3 === 0 ? {} : { authorization: `Bearer ${i % 3 === 1 ? KEY : word()}` };
            await (
              await fetch(`http://127.0.0.1:${gateway.port}${path}`, {
                method: i % 5 === 0 ? 'POST' : 'GET',
                headers,
                body: i % 5 === 0 ? '{}' : undefined,
              })
            ).arrayBuffer();
          }
        }),
      );
    };
    await send(0, 100);
    const after100 = await httpSeries();
    await send(100, 900);
    const after1000 = await httpSeries();
    expect(after1000).toEqual(after100); // the same series; only their values grew
    const pairs = after1000
      .filter((l) => l.startsWith('pdserve_requests_total{'))
      .map((l) => {
        const labels = Object.fromEntries([...l.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
        return `${labels['route']} ${labels['status']}`;
      });
    // Keyless and wrong-key requests are 401 on whatever path; keyed ones 404 (405 for a POST to a model); all under
    // two route templates.
    expect(pairs.sort()).toEqual([
      '/v1/models/{model} 401',
      '/v1/models/{model} 404',
      '/v1/models/{model} 405',
      'unmatched 401',
      'unmatched 404',
    ]);
    expect(after1000.join('\n')).not.toMatch(/[0-9a-f]{12}/);
  });
});

/**
 * A served model name of 8 KB: every streamed chunk repeats it, so a stream fills the socket buffers (about
 * 4 MB on loopback) within a few dozen engine steps, whatever the machine's speed.
 */
const BIG_NAME = `tiny-${'x'.repeat(8 * 1024)}`;

describe('a stalled stream reader (the real engine in this process)', () => {
  let engine: LLMEngine;
  let api: ApiServer;
  let url: string;

  beforeAll(async () => {
    const dir = await ensureTinyModel();
    const tokenizer = await Tokenizer.fromDir(dir);
    engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', kvCacheBytes: 64 << 20 });
    api = createApiServer({
      models: [{ id: BIG_NAME, engine, tokenizer, maxModelLen: engine.maxModelLen }],
      port: 0,
      logger: silentLogger,
      writeTimeoutMs: 500,
    });
    url = (await api.listen()).url;
  }, 120_000);

  afterAll(async () => {
    await api?.close();
    await engine?.close();
  });

  it("has its request aborted at the write timeout: the engine's KV blocks return to idle long before the request could finish", async () => {
    const n = 16;
    const maxTokens = 2000;
    const sock = net.connect(Number(new URL(url).port), '127.0.0.1');
    sock.on('error', () => undefined);
    const body = JSON.stringify({
      model: BIG_NAME,
      prompt: 'Stream a lot',
      max_tokens: maxTokens,
      n,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    });
    sock.write(
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    const head = await new Promise<string>((resolve) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (!got.includes('data: ')) return;
        sock.off('data', onData);
        sock.pause(); // the reader stops reading mid-stream
        resolve(got);
      };
      sock.on('data', onData);
    });
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(engine.stats().running).toBe(n);
    const steps0 = engine.stats().steps;
    await waitFor(
      'the engine to be idle',
      () => {
        const s = engine.stats();
        return s.running === 0 && s.waiting === 0 && s.usedBlocks === 0;
      },
      50_000,
      20,
    );
    // Far fewer steps than max_tokens: the requests were aborted, not finished.
    expect(engine.stats().steps - steps0).toBeLessThan(maxTokens / 2);
    // The server cut the connection: once the client reads again, the stream ends without [DONE].
    let tail = '';
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-64)));
    sock.resume();
    await closed;
    expect(tail).not.toContain('[DONE]');
  }, 60_000);
});
