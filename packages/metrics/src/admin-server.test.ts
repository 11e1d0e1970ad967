import { afterEach, describe, expect, it } from 'vitest';
import { Registry, gatewayMetrics, startAdminServer, type AdminServer } from './index';

describe('admin server', () => {
  let server: AdminServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves /metrics, /health and a /ready that follows isReady', async () => {
    const registry = new Registry();
    gatewayMetrics(registry).requests.inc({ model: 'tiny', route: '/v1/completions', status: '200' });
    let ready = false;
    server = await startAdminServer({ port: 0, registry, isReady: () => ready });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    expect(await metrics.text()).toContain('pdserve_requests_total{model="tiny",route="/v1/completions",status="200"} 1');

    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect((await fetch(`${server.url}/ready`)).status).toBe(503);
    ready = true;
    expect((await fetch(`${server.url}/ready?verbose=1`)).status).toBe(200);
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('serves extra GET routes with their own type and headers, and names them on a 404', async () => {
    const routes = new Map([
      [
        '/status.json',
        () =>
          Promise.resolve({
            status: 200,
            contentType: 'application/json',
            body: '{"ok":true}',
            headers: { 'x-content-type-options': 'nosniff' },
          }),
      ],
    ]);
    server = await startAdminServer({ port: 0, registry: new Registry(), isReady: () => true, routes });
    const res = await fetch(`${server.url}/status.json?x=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.json()).toEqual({ ok: true });
    const missing = await fetch(`${server.url}/status.html`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('/status.json');
    expect((await fetch(`${server.url}/status.json`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 503 when the readiness check throws', async () => {
    server = await startAdminServer({
      port: 0,
      registry: new Registry(),
      isReady: () => {
        throw new Error('model not loaded');
      },
    });
    expect((await fetch(`${server.url}/ready`)).status).toBe(503);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('closes promptly with a keep-alive connection open', async () => {
    server = await startAdminServer({ port: 0, registry: new Registry(), isReady: () => true });
    await fetch(`${server.url}/health`);
    const s = server;
    server = undefined;
    const t0 = performance.now();
    await s.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
  });
});
