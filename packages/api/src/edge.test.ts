// The edge over raw HTTP: API keys, per-key limits, server timeouts and caps, a reader that stops reading,
// the character cap before tokenizing, and the cache salt each request reaches the engine with.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineError } from './deps';
import { startTestServer, ToyTokenizer, type FakeEngineOptions, type TestServer } from './testing';

const tok = new ToyTokenizer();
const words = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });

let s: TestServer | undefined;
afterEach(async () => {
  await s?.api.close();
  s = undefined;
});

async function setup(
  server: Parameters<typeof startTestServer>[1] = {},
  engine: FakeEngineOptions = { reply: () => words(' Hello world!') },
): Promise<TestServer> {
  s = await startTestServer(engine, server);
  return s;
}

function call(
  path: string,
  init: { method?: string; key?: string; header?: 'bearer' | 'x-api-key'; body?: unknown } = {},
): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (init.key !== undefined) {
    if (init.header === 'x-api-key') headers['x-api-key'] = init.key;
    else headers['authorization'] = `Bearer ${init.key}`;
  }
  return fetch(`${s!.url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
}

async function errorOf(
  res: Response,
): Promise<{ status: number; code: string | null; type: string; message: string; param?: string | null }> {
  const body = (await res.json()) as { error: { code: string | null; type: string; message: string; param?: string | null } };
  return { status: res.status, ...body.error };
}

const completion = { model: 'toy', prompt: 'Hello', max_tokens: 3 };

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('API keys', () => {
  it('every /v1/* request needs one of the keys (Bearer or x-api-key); /health and /ready stay open', async () => {
    await setup({ apiKeys: ['key-a', 'key-b'] });
    const missing = await call('/v1/models');
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect(await errorOf(missing)).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'invalid_request_error' });
    const wrong = await errorOf(await call('/v1/completions', { key: 'key-c', body: completion }));
    expect(wrong).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(wrong.message).not.toContain('key-c');
    expect((await errorOf(await call('/v1/completions', { key: 'KEY-A', header: 'x-api-key', body: completion }))).status).toBe(401);
    // A made-up path under /v1 is refused before routing: nothing about the API shows without a key.
    expect((await errorOf(await call('/v1/secret-admin'))).status).toBe(401);
    expect(s!.engine.requests).toEqual([]);

    expect((await call('/v1/models', { key: 'key-a' })).status).toBe(200);
    expect((await call('/v1/completions', { key: 'key-b', header: 'x-api-key', body: completion })).status).toBe(200);
    expect((await errorOf(await call('/v1/secret-admin', { key: 'key-b' }))).status).toBe(404);
    expect((await call('/health')).status).toBe(200);
    expect((await call('/ready')).status).toBe(200);
  });

  it('without keys the API is open', async () => {
    await setup();
    expect((await call('/v1/models')).status).toBe(200);
  });
});

describe('per-key limits', () => {
  it('a burst over the rate gets 429 with Retry-After, per key', async () => {
    await setup({ apiKeys: ['key-a', 'key-b'], limits: { ratePerSecond: 0.2, burst: 2 } });
    expect((await call('/v1/models', { key: 'key-a' })).status).toBe(200);
    expect((await call('/v1/completions', { key: 'key-a', body: completion })).status).toBe(200);
    const over = await call('/v1/models', { key: 'key-a' });
    expect(Number(over.headers.get('retry-after'))).toBe(5);
    expect(await errorOf(over)).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error' });
    expect((await call('/v1/models', { key: 'key-b' })).status).toBe(200);
    // A wrong key is refused (401) before any limit: it spends nobody's tokens.
    expect((await call('/v1/models', { key: 'nope' })).status).toBe(401);
  });

  it('too many requests in flight for one key get 429; a finished one frees its slot', async () => {
    await setup({ apiKeys: ['key-a', 'key-b'], limits: { maxConcurrent: 1 } }, { endless: true, delayMs: 5, maxModelLen: 100_000 });
    const ac = new AbortController();
    const first = await fetch(`${s!.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer key-a' },
      body: JSON.stringify({ ...completion, max_tokens: 10_000, stream: true }),
      signal: ac.signal,
    });
    expect(first.status).toBe(200);
    const second = await call('/v1/completions', { key: 'key-a', body: completion });
    expect(second.headers.get('retry-after')).toBe('1');
    expect(await errorOf(second)).toMatchObject({ status: 429, code: 'concurrency_limit_exceeded' });
    expect((await call('/v1/completions', { key: 'key-b', body: completion })).status).toBe(200);
    ac.abort();
    await waitFor(() => s!.engine.aborted.length === 1, 'the stream to be aborted');
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await call('/v1/models', { key: 'key-a' })).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 10));
    }
    expect(status).toBe(200);
  });

  it('without keys, limits apply per client address', async () => {
    await setup({ limits: { ratePerSecond: 0.1, burst: 1 } });
    expect((await call('/v1/models')).status).toBe(200);
    expect((await call('/v1/models')).status).toBe(429);
    expect((await call('/health')).status).toBe(200);
  });
});

describe('server timeouts and caps', () => {
  function rawSocket(): Promise<net.Socket> {
    const { port } = new URL(s!.url);
    return new Promise((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1', () => resolve(sock));
      sock.once('error', reject);
    });
  }
  const closed = (sock: net.Socket): Promise<string> =>
    new Promise((resolve) => {
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('error', () => undefined);
      sock.once('close', () => resolve(data));
    });

  it('a client that never finishes its headers gets 408 and is cut off', async () => {
    await setup({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const sock = await rawSocket();
    const done = closed(sock);
    sock.write('GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    expect((await done).split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  });

  it('a body that never finishes arriving is cut off at the request timeout', async () => {
    await setup({ headersTimeoutMs: 100, requestTimeoutMs: 300 });
    const sock = await rawSocket();
    const done = closed(sock);
    sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":');
    const answer = await done;
    expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
    expect(s!.engine.requests).toEqual([]);
  });

  it('connections past the cap are closed at once; the others are served', async () => {
    await setup({ maxConnections: 2 });
    const a = await rawSocket();
    const b = await rawSocket();
    const c = await rawSocket();
    expect(await closed(c)).toBe('');
    a.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect((await closed(a)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    b.destroy();
  });

  it('a stream whose reader stops reading is aborted after the write timeout, freeing its engine requests', async () => {
    // Big events (20 logprobs, 16 choices) fill the socket buffers quickly; then a write waits for a drain.
    await setup({ writeTimeoutMs: 300 }, { endless: true, chunkSize: 4, maxModelLen: 1_000_000 });
    const sock = await rawSocket();
    const body = JSON.stringify({ model: 'toy', prompt: 'Hello', max_tokens: 900_000, n: 16, logprobs: 20, stream: true });
    sock.write(
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    let head = '';
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        head += d.toString();
        if (head.includes('\r\n\r\n')) {
          sock.off('data', onData);
          resolve();
        }
      };
      sock.on('data', onData);
    });
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    sock.pause(); // stops reading: the kernel buffers fill, then the server's writes wait
    await waitFor(() => s!.engine.aborted.length === 16, 'every choice to be aborted', 30_000);
    expect(s!.engine.finished).toEqual([]);
    sock.destroy();
    expect((await call('/v1/completions', { body: completion })).status).toBe(200);
  });
});

describe('prompt size before tokenizing', () => {
  it('a prompt longer than the character cap is refused before the tokenizer and the engine see it', async () => {
    await setup({ maxPromptChars: 100 });
    const tooLong = await errorOf(await call('/v1/completions', { body: { ...completion, prompt: 'x'.repeat(101) } }));
    expect(tooLong).toMatchObject({ status: 400, code: 'string_above_max_length' });
    const batch = await errorOf(await call('/v1/completions', { body: { ...completion, prompt: ['ok', 'y'.repeat(200)] } }));
    expect(batch).toMatchObject({ status: 400, code: 'string_above_max_length' });
    const chat = await errorOf(
      await call('/v1/chat/completions', {
        body: {
          model: 'toy',
          messages: [
            { role: 'user', content: 'z'.repeat(60) },
            { role: 'user', content: 'z'.repeat(60) },
          ],
        },
      }),
    );
    expect(chat).toMatchObject({ status: 400, code: 'string_above_max_length' });
    expect(s!.engine.requests).toEqual([]);
    expect((await call('/v1/completions', { body: { ...completion, prompt: 'x'.repeat(90) } })).status).toBe(200);
  });

  it('defaults to 16 characters per token of context', async () => {
    await setup({}, { maxModelLen: 10, reply: () => [] });
    expect((await errorOf(await call('/v1/completions', { body: { ...completion, prompt: 'x'.repeat(161), max_tokens: 1 } }))).code).toBe(
      'string_above_max_length',
    );
    // Under the cap, the token count decides.
    expect((await errorOf(await call('/v1/completions', { body: { ...completion, prompt: 'x'.repeat(160), max_tokens: 1 } }))).code).toBe(
      'context_length_exceeded',
    );
  });
});

describe('cache salts', () => {
  const saltsSeen = (): string[] => s!.engine.requests.map((r) => r.cacheSalt ?? '');

  it('cache_salt reaches the engine; none is the unsalted chain', async () => {
    await setup();
    expect((await call('/v1/completions', { body: completion })).status).toBe(200);
    expect((await call('/v1/completions', { body: { ...completion, cache_salt: 'tenant-a' } })).status).toBe(200);
    expect(
      (
        await call('/v1/chat/completions', {
          body: { model: 'toy', messages: [{ role: 'user', content: 'Hi' }], cache_salt: 'tenant-a', n: 2 },
        })
      ).status,
    ).toBe(200);
    const [none, a, c1, c2] = saltsSeen();
    expect(none).toBe('');
    expect(a).not.toBe('');
    expect([c1, c2]).toEqual([a, a]);
    expect(await errorOf(await call('/v1/completions', { body: { ...completion, cache_salt: '' } }))).toMatchObject({ status: 400 });
    expect(await errorOf(await call('/v1/completions', { body: { ...completion, cache_salt: 7 } }))).toMatchObject({
      status: 400,
      code: 'invalid_type',
    });
    expect(await errorOf(await call('/v1/completions', { body: { ...completion, cache_salt: 's'.repeat(1025) } }))).toMatchObject({
      status: 400,
    });
  });

  it("isolated per key: each key salts its own chain, and no cache_salt reaches another key's", async () => {
    await setup({ apiKeys: ['key-a', 'key-b'], isolateCachePerKey: true });
    for (const key of ['key-a', 'key-a', 'key-b']) expect((await call('/v1/completions', { key, body: completion })).status).toBe(200);
    expect((await call('/v1/completions', { key: 'key-a', body: { ...completion, cache_salt: 'x' } })).status).toBe(200);
    expect((await call('/v1/completions', { key: 'key-b', body: { ...completion, cache_salt: 'x' } })).status).toBe(200);
    const [a1, a2, b, ax, bx] = saltsSeen();
    expect(a1).toBe(a2);
    expect(new Set([a1, b, ax, bx, '']).size).toBe(5);
  });

  it('isolation without keys is refused at startup', async () => {
    await expect(setup({ isolateCachePerKey: true })).rejects.toThrow(/needs API keys/);
  });
});

describe('service tiers', () => {
  it('service_tier reaches the engine as a class (auto = default, scale = priority); anything else is a 400', async () => {
    await setup();
    for (const tier of [undefined, 'auto', 'default', 'flex', 'priority', 'scale']) {
      expect((await call('/v1/completions', { body: { ...completion, ...(tier ? { service_tier: tier } : {}) } })).status).toBe(200);
    }
    expect(s!.engine.requests.map((r) => r.serviceTier)).toEqual([undefined, undefined, 'default', 'flex', 'priority', 'priority']);
    expect(await errorOf(await call('/v1/completions', { body: { ...completion, service_tier: 'gold' } }))).toMatchObject({
      status: 400,
      param: 'service_tier',
    });
  });

  it('an admission refusal is a 429 whose Retry-After is the one computed', async () => {
    await setup();
    s!.engine.refuseWith = new EngineError('queue_full', 'predicted time to first token misses the SLO', undefined, 7.2);
    const res = await call('/v1/completions', { body: completion });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('8');
    s!.engine.refuseWith = undefined;
  });
});
