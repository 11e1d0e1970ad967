// The gateway's status page in a real headless Chromium, over a real in-process cluster (embedded control
// plane, gRPC over loopback): a prefill worker, a decode worker and a kv-store node. The page lists every
// one with its live numbers, draws without console errors, refreshes itself, and shows hostile registry
// data as text. Screenshots go to the test's temp folder (PDSERVE_KEEP_SCREENSHOTS=1 keeps it).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane, type Registration } from '@pdserve/control-plane';
import { startGateway, type ClusterStatus, type Gateway } from '@pdserve/gateway';
import { startKvStoreService, type KvStoreService } from '@pdserve/kv-store';
import { ensureTinyModel } from '@pdserve/model';
import { launchChromium, waitFor, type HeadlessChromium } from '@pdserve/testkit';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

let tmp: string;
let cp: ControlPlane;
let prefill: WorkerService;
let decode: WorkerService;
let store: KvStoreService;
let gateway: Gateway;
let browser: HeadlessChromium;
const registrations: Registration[] = [];

const statusJson = async (): Promise<ClusterStatus> => (await fetch(`${gateway.adminUrl}/status.json`)).json() as Promise<ClusterStatus>;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pdserve-status-page-'));
  const dir = await ensureTinyModel();
  cp = await connectControlPlane({ cluster: 'status', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 16 * 1024 * 1024 };
  store = await startKvStoreService({
    nodeId: 'kv-0',
    controlPlane: cp,
    logger: cpSilent,
    memoryBytes: 8 << 20,
    diskBytes: 16 << 20,
    diskDir: join(tmp, 'kv-0'),
    models: [{ id: 'tiny' }],
  });
  prefill = await startWorkerService({
    role: 'prefill',
    instanceId: 'p0',
    engine,
    controlPlane: cp,
    logger: cpSilent,
    kvStore: { replicas: 1 },
  });
  decode = await startWorkerService({
    role: 'decode',
    instanceId: 'd0',
    engine,
    controlPlane: cp,
    logger: cpSilent,
    kvStore: { replicas: 1 },
  });
  gateway = await startGateway({
    modelDir: dir,
    modelId: 'tiny',
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    adminPort: 0,
    disagg: { remotePrefillMinTokens: 1 },
  });
  await waitFor('the gateway routes to both workers', () => gateway.view.workers().length === 2, 20_000, 20);
  // The same prompt twice: the second finds its prefix cached on the prefill worker.
  const prompt = 'The status page lists every worker of the cluster, with its role, address and health.';
  for (let i = 0; i < 2; i++) {
    const res = await fetch(`${gateway.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt, max_tokens: 4, temperature: 0 }),
    });
    expect(res.status).toBe(200);
  }
  browser = await launchChromium({ dir: tmp });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  for (const r of registrations) await r.deregister().catch(() => undefined);
  await gateway?.close();
  await Promise.all([prefill?.close(), decode?.close()]);
  await store?.close();
  await cp?.close();
  if (process.env['PDSERVE_KEEP_SCREENSHOTS'] === '1') process.stdout.write(`status page screenshots kept in ${tmp}\n`);
  else if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('gateway status', () => {
  it('/status.json lists every worker and kv-store node with live numbers', async () => {
    const s = await statusJson();
    expect(s).toMatchObject({ object: 'pdserve.status', model: 'tiny', gateway: { ready: true, routing: { decisions: 2 } } });
    expect(s.workers.map((w) => [w.id, w.role, w.address, w.health, w.routed])).toEqual([
      ['d0', 'decode', decode.grpcAddress, 'serving', true],
      ['p0', 'prefill', prefill.grpcAddress, 'serving', true],
    ]);
    const [d0, p0] = s.workers;
    expect(d0!.picks).toEqual({ decode: 2, prefill: 0 });
    expect(p0!.picks).toEqual({ decode: 0, prefill: 2 });
    expect(d0!.kv!.totalBlocks).toBe(decode.engine.pool.numBlocks);
    // The prefill worker computed the prompt once and found it cached the second time.
    expect(p0!.prefixCache!.hitTokens).toBeGreaterThan(0);
    expect(p0!.prefixCache!.hitRate).toBeGreaterThan(0);
    expect(s.kvStores.map((n) => [n.id, n.address, n.health, n.tiers.map((t) => [t.tier, t.capacityBytes])])).toEqual([
      [
        'kv-0',
        store.grpcAddress,
        'serving',
        [
          ['memory', 8 << 20],
          ['disk', 16 << 20],
        ],
      ],
    ]);
    // An operator page: on the admin port, not the OpenAI port (where API keys will be required).
    expect((await fetch(`${gateway.url}/status`)).status).toBe(404);
  });

  it('draws every worker and the kv-store in Chromium, without console errors', async () => {
    const { page, problems } = await browser.newPage({ width: 1400, height: 640 });
    await page.goto(`${gateway.adminUrl}/status`);
    await page.waitForSelector('body[data-loaded="true"]');
    const rows = await page.$$eval('tr.worker', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    expect(rows.map((r) => r.slice(0, 5))).toEqual([
      ['d0', 'decode', decode.grpcAddress, 'serving', 'yes'],
      ['p0', 'prefill', prefill.grpcAddress, 'serving', 'yes'],
    ]);
    expect(rows[0]![7]).toContain(`/ ${decode.engine.pool.numBlocks} blocks`);
    expect(await page.$$eval('tr.store', (trs) => trs.map((tr) => tr.querySelector('td.mono')?.textContent ?? ''))).toEqual([
      store.grpcAddress,
      '',
    ]);
    expect(await page.textContent('#ready')).toBe('ready');
    const shot = join(tmp, 'status.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    expect(problems()).toEqual({ consoleErrors: [], pageErrors: [], offLoopbackRequests: [], failedRequests: [] });
    await page.close();
  }, 30_000);

  it('refreshes itself, and shows hostile registry data as text', async () => {
    const { page, problems } = await browser.newPage({ width: 1400, height: 640 });
    await page.goto(`${gateway.adminUrl}/status?refresh=1`);
    await page.waitForSelector('body[data-loaded="true"]');
    const evil = '<img src=x onerror="document.title=\'pwned\'">';
    const base = { model: 'tiny', adminAddress: '', capacity: { totalBlocks: 1, blockSize: 16, maxNumSeqs: 1 }, startedAt: Date.now() };
    registrations.push(
      await cp.registry.register({
        ...base,
        id: 'evil-worker',
        role: 'decode',
        grpcAddress: `${evil}:1`,
        incarnation: '</script><script>document.title="pwned"</script>',
      }),
      await cp.registry.register({
        ...base,
        id: 'evil-store',
        role: 'kv-store',
        grpcAddress: `"><svg onload="document.title='pwned'">`,
        incarnation: 'x',
      }),
    );
    // No reload: the page picks the new nodes up on its own.
    await page.waitForSelector('tr.worker[data-worker="evil-worker"]', { timeout: 15_000 });
    await page.waitForSelector('tr.store[data-store="evil-store"]', { timeout: 15_000 });
    const cells = await page.$$eval('tr.worker[data-worker="evil-worker"] td', (tds) => tds.map((td) => td.textContent ?? ''));
    expect(cells.slice(0, 4)).toEqual(['evil-worker', 'decode', `${evil}:1`, 'unreachable']);
    expect(await page.$eval('tr.store[data-store="evil-store"] td.mono', (td) => td.textContent)).toBe(
      `"><svg onload="document.title='pwned'">`,
    );
    expect(await page.$$eval('main img, main svg, main script', (els) => els.length)).toBe(0);
    expect(await page.title()).toBe('pdserve status');
    await page.screenshot({ path: join(tmp, 'status-hostile.png'), fullPage: true });
    expect(problems()).toEqual({ consoleErrors: [], pageErrors: [], offLoopbackRequests: [], failedRequests: [] });
    await page.close();
  }, 30_000);
});
