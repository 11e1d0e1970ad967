// `bench --report` and `simulate --report` through the CLI, opened from disk in a real headless Chromium:
// the pages draw every chart (canvas elements of nonzero size), log no console errors, and request nothing
// from the network. Screenshots go to the test's temp folder (PDSERVE_KEEP_SCREENSHOTS=1 keeps it).
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MOONCAKE_TRACE } from '@pdserve/bench';
import { runCli } from '@pdserve/cli';
import { chartSizes, launchChromium, type HeadlessChromium } from '@pdserve/testkit';
// The bench package's own fake OpenAI streaming server (a test helper, not part of its interface).
import { startFakeServer, type FakeServer } from '../packages/bench/src/test-support';

let tmp: string;
let server: FakeServer;
let browser: HeadlessChromium;

async function cli(args: readonly string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    return { code: await runCli(args), out };
  } finally {
    spy.mockRestore();
  }
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'pdserve-report-pages-'));
  server = await startFakeServer({ ttftMs: 20, itlMs: 3 });
  browser = await launchChromium({ dir: tmp });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (process.env['PDSERVE_KEEP_SCREENSHOTS'] === '1') process.stdout.write(`report screenshots kept in ${tmp}\n`);
  else if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Opens a report file, waits for its charts, screenshots it; returns the chart titles and sizes. */
async function open(file: string): Promise<{ titles: string[]; charts: { width: number; height: number }[]; legends: string[][] }> {
  const { page, problems } = await browser.newPage({ width: 1280, height: 900 });
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('.uplot canvas');
  const titles = await page.$$eval('section h2', (hs) => hs.map((h) => h.textContent ?? ''));
  const charts = await chartSizes(page);
  const legends = await page.$$eval('.uplot', (plots) =>
    plots.map((p) => [...p.querySelectorAll('.u-legend .u-series .u-label')].map((l) => l.textContent ?? '')),
  );
  await page.screenshot({ path: file.replace(/\.html$/, '.png'), fullPage: true });
  expect(problems()).toEqual({ consoleErrors: [], pageErrors: [], offLoopbackRequests: [], failedRequests: [] });
  await page.close();
  return { titles, charts, legends };
}

describe('HTML reports in Chromium', () => {
  it('bench --report, and --compare --report with both runs overlaid', async () => {
    const run = (name: string, workload: string) =>
      cli([
        'bench',
        '--url',
        server.url,
        '--model',
        'tiny',
        '--workload',
        workload,
        '--requests',
        '12',
        '--concurrency',
        '4',
        '--max-tokens',
        '6',
        '--output',
        join(tmp, `${name}.json`),
        '--report',
        join(tmp, `${name}.html`),
      ]);
    expect((await run('a', 'shared-prefix')).code).toBe(0);
    expect((await run('b', 'random')).code).toBe(0);
    const cmp = await cli(['bench', '--compare', join(tmp, 'a.json'), join(tmp, 'b.json'), '--report', join(tmp, 'compare.html')]);
    expect(cmp.code).toBe(0);
    expect(cmp.out).toContain(`wrote ${join(tmp, 'compare.html')}`);

    const one = await open(join(tmp, 'a.html'));
    expect(one.titles).toEqual([
      'Summary',
      'TTFT distribution',
      'ITL distribution',
      'Output throughput over time',
      'Prefix cache hit rate',
    ]);
    expect(one.charts).toHaveLength(4);
    for (const c of one.charts) expect(c.width * c.height).toBeGreaterThan(0);

    const both = await open(join(tmp, 'compare.html'));
    expect(both.charts).toHaveLength(4);
    for (const c of both.charts) expect(c.width * c.height).toBeGreaterThan(0);
    // Each line chart carries one series per run; the hit-rate bars one bar per run.
    expect(both.legends.slice(0, 3).map((l) => l.slice(1))).toEqual(Array(3).fill(['A: a.json', 'B: b.json']));
    expect(statSync(join(tmp, 'compare.png')).size).toBeGreaterThan(20_000);
    // Self-contained: the charting library is inlined, nothing is linked.
    const html = readFileSync(join(tmp, 'compare.html'), 'utf8');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/);
  }, 60_000);

  it('simulate --report: every policy overlaid', async () => {
    const file = join(tmp, 'sim.html');
    const res = await cli([
      'simulate',
      '--trace',
      MOONCAKE_TRACE,
      '--decode',
      '4',
      '--policy',
      'round-robin,kv-aware',
      '--max-requests',
      '150',
      '--cache-tokens',
      '200k',
      '--report',
      file,
    ]);
    expect(res.code).toBe(0);
    const sim = await open(file);
    expect(sim.titles).toEqual([
      'Summary',
      'TTFT distribution',
      'Inter-token latency distribution (per request)',
      'Output throughput over time',
      'Prefix hit rate per policy',
    ]);
    expect(sim.charts).toHaveLength(4);
    for (const c of sim.charts) expect(c.width * c.height).toBeGreaterThan(0);
    expect(sim.legends[0]!.slice(1)).toEqual(['round-robin, local caches', 'kv-aware, local caches']);
    expect(sim.legends[3]).toEqual(['own cache', 'fetched']); // bars: no x entry in the legend
  }, 60_000);
});
