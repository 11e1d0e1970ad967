// `serve --prefill N --decode M --redis … --nats …`: separate processes on real Redis and NATS (started by
// this test on free loopback ports). The URL is printed only once a completion can be served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel } from '@pdserve/model';
import { spawnService, startNats, startRedis, waitFor, type ServiceProcess, type TestServer } from '@pdserve/testkit';

let redis: TestServer;
let nats: TestServer;
let serve: ServiceProcess | undefined;

beforeAll(async () => {
  await ensureTinyModel();
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
});

afterAll(async () => {
  await serve?.kill();
  await Promise.all([redis?.stop(), nats?.stop()]);
});

describe('serve as separate processes', () => {
  it('prints its URL only once a completion can be served, and serves one at once', async () => {
    serve = await spawnService(
      'serve',
      'serve',
      [
        '--prefill',
        '1',
        '--decode',
        '1',
        '--redis',
        redis.url,
        '--nats',
        nats.url,
        '--cluster',
        'serve-ready',
        '--kv-cache-bytes',
        '32M',
        '--log-level',
        'warn',
      ],
      '--port',
    );
    const s = serve;
    await waitFor('the serving line', () => s.output().includes('pdserve is serving'), 90_000, 20);
    const res = await fetch(`http://127.0.0.1:${s.port}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'Hello', max_tokens: 4, temperature: 0 }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } };
    expect(body.usage.completion_tokens).toBe(4);
    expect(s.output()).toContain(`at http://127.0.0.1:${s.port}/v1`);
    expect(s.output(), 'a local cluster runs mTLS inside by default (a throwaway CA)').toContain('mTLS inside');
  }, 120_000);
});
