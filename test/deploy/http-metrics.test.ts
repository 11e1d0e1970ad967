// The gateway's HTTP metrics are labelled by route template: whatever paths clients make up, the number of
// series stays what the routes and statuses allow (before, every unknown /v1/... path made a series of its own).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, UNMATCHED_ROUTE } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel } from '@pdserve/model';

const ROUTES = new Set(['/v1/completions', '/v1/chat/completions', '/v1/models', '/v1/models/{model}', UNMATCHED_ROUTE]);

let cp: ControlPlane;
let gateway: Gateway;

beforeAll(async () => {
  const dir = await ensureTinyModel();
  cp = await connectControlPlane({ cluster: 'http-metrics', hub: new InProcessHub(), logger: cpSilent });
  // No worker joins: completions answer 503, which is a status like any other here.
  gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, adminPort: 0 });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await cp?.close();
});

/** The HTTP series of the gateway's /metrics: each `name{labels}` line of the two HTTP families. */
async function httpSeries(): Promise<string[]> {
  const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => /^pdserve_(requests_total|request_duration_seconds_(bucket|sum|count))\{/.test(l))
    .map((l) => l.slice(0, l.lastIndexOf(' ')));
}

const word = (): string => randomBytes(6).toString('hex');

/** A request a scanner or a buggy client might send: made-up paths under /v1 and elsewhere, wrong methods. */
function randomRequest(i: number): { path: string; method: string } {
  switch (i % 6) {
    case 0:
      return { path: `/v1/${word()}`, method: 'GET' };
    case 1:
      return { path: `/v1/${word()}/${word()}?x=${word()}`, method: 'POST' };
    case 2:
      return { path: `/v1/models/${word()}`, method: 'GET' };
    case 3:
      return { path: `/${word()}`, method: 'GET' };
    case 4:
      return { path: '/v1/completions', method: ['GET', 'DELETE', 'PUT'][i % 3]! };
    default:
      return { path: `/v1/models/${encodeURIComponent(`${word()} ${word()}`)}`, method: 'HEAD' };
  }
}

async function send(n: number, from: number, concurrency = 16): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < from + n) {
        const { path, method } = randomRequest(next++);
        const res = await fetch(`${gateway.url}${path}`, {
          method,
          body: method === 'POST' ? '{}' : undefined,
          headers: { 'content-type': 'application/json' },
        });
        await res.arrayBuffer();
      }
    }),
  );
}

describe('the gateway HTTP metrics', () => {
  it('keep a bounded series count over 1,000 made-up paths, labelled by route template', async () => {
    await send(100, 0);
    const after100 = await httpSeries();
    await send(900, 100);
    const after1000 = await httpSeries();
    // The same series, only their values grew.
    expect(after1000).toEqual(after100);
    const requests = after1000.filter((l) => l.startsWith('pdserve_requests_total{'));
    const labels = requests.map((l) => Object.fromEntries([...l.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!])));
    for (const l of labels) {
      expect(ROUTES.has(l['route']!), l['route']).toBe(true);
      expect(l['model']).toBe('tiny');
      expect(l['status']).toMatch(/^[1-5]\d\d$/);
    }
    // unmatched 404, /v1/models/{model} 404, /v1/completions 405: three route × status pairs, and nothing else.
    expect(labels.map((l) => `${l['route']} ${l['status']}`).sort()).toEqual([
      '/v1/completions 405',
      '/v1/models/{model} 404',
      'unmatched 404',
    ]);
    // No raw path reached the exposition.
    expect(after1000.join('\n')).not.toMatch(/\/v1\/[0-9a-f]{12}/);
  });

  it('count every request once, and leave /health and /ready probes out', async () => {
    const text = async (): Promise<string> => (await fetch(`${gateway.adminUrl}/metrics`)).text();
    const count = (t: string): number =>
      t
        .split('\n')
        .filter((l) => l.startsWith('pdserve_requests_total{'))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const before = count(await text());
    for (const path of ['/health', '/ready', '/v1/models']) await (await fetch(`${gateway.url}${path}`)).arrayBuffer();
    const after = await text();
    expect(count(after) - before).toBe(1);
    expect(after).toContain('pdserve_requests_total{model="tiny",route="/v1/models",status="200"} 1');
  });
});
