import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareReports, formatReport } from './format';
import type { BenchReport } from './report';
import { runBench, type BenchProgress } from './runner';
import { startFakeServer, type FakeServer } from './test-support';

const TTFT = 40;
const ITL = 8;
/** Upper bounds catch a wrong unit (µs would be 1000× off), not slowness: a loaded machine delays timers by 100s of ms. */
const SLACK_MS = 2000;
let server: FakeServer;

beforeAll(async () => {
  server = await startFakeServer({ ttftMs: TTFT, itlMs: ITL, failEvery: 10 });
});
afterAll(async () => {
  await server.close();
});

describe('runBench against a fake streaming server', () => {
  let report: BenchReport;
  const progress: BenchProgress[] = [];

  beforeAll(async () => {
    report = await runBench(
      {
        url: server.url,
        model: 'tiny',
        workload: 'shared-prefix',
        requests: 10,
        concurrency: 5,
        numPrefixes: 2,
        prefixLen: 64,
        inputLen: 8,
        maxTokens: 6,
        ignoreEos: true,
        sloTtftMs: 500,
        sloTpotMs: 1,
        seed: 3,
      },
      (p) => progress.push(p),
    );
  });

  it('sends streaming token-id requests with usage and ignore_eos', () => {
    const b = server.bodies[0]!;
    expect(b).toMatchObject({
      model: 'tiny',
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
      temperature: 0,
    });
    expect(Array.isArray(b['prompt'])).toBe(true);
    expect((b['prompt'] as number[]).length).toBe(72);
  });

  it('counts completions and failures by status', () => {
    expect(report.counts).toEqual({ sent: 10, completed: 9, failed: 1, failedByStatus: { '503': 1 } });
    const bad = report.requests.find((r) => !r.success)!;
    expect(bad).toMatchObject({ status: 503, error: 'HTTP 503: overloaded', ttftMs: null });
  });

  it('measures sane latencies', () => {
    const ok = report.requests.filter((r) => r.success);
    for (const r of ok) {
      expect(r.outputTokens).toBe(6);
      expect(r.promptTokens).toBe(72);
      expect(r.itlMs.length).toBe(5);
      expect(r.ttftMs!).toBeGreaterThanOrEqual(TTFT - 2);
      expect(r.ttftMs!).toBeLessThan(TTFT + SLACK_MS);
      expect(r.e2eMs!).toBeGreaterThanOrEqual(r.ttftMs! + 5 * ITL - 5);
      expect(r.tpotMs!).toBeCloseTo((r.e2eMs! - r.ttftMs!) / 5, 9);
      expect(r.startMs).toBeGreaterThanOrEqual(r.scheduledMs);
    }
    const { ttft, itl, tpot, e2e } = report.latencyMs;
    expect(ttft.count).toBe(9);
    expect(ttft.p50!).toBeGreaterThanOrEqual(TTFT - 2);
    expect(itl.count).toBe(45);
    expect(itl.mean!).toBeGreaterThanOrEqual(ITL - 2);
    expect(itl.mean!).toBeLessThan(ITL + SLACK_MS);
    expect(tpot.p90!).toBeGreaterThanOrEqual(ITL - 2);
    expect(e2e.p99!).toBeGreaterThanOrEqual(e2e.p50!);
    expect(report.throughput.outputTokensPerSec).toBeCloseTo(54 / report.durationSec, 6);
    expect(report.throughput.inputTokensPerSec).toBeCloseTo((9 * 72) / report.durationSec, 6);
  });

  it('computes goodput and prefix cache hit rate', () => {
    // TPOT ≥ 8 ms everywhere, so the 1 ms TPOT SLO is met by nobody.
    expect(report.goodput).toEqual({ sloTtftMs: 500, sloTpotMs: 1, met: 0, requestsPerSec: 0, fraction: 0 });
    expect(report.prefixCache.reporting).toBe(9);
    expect(report.prefixCache.hitRate!).toBeGreaterThan(0.3);
    expect(report.prefixCache.hitRate!).toBeLessThan(72 / 72);
  });

  it('is plain JSON with every field, including options and per-request records', () => {
    const round = JSON.parse(JSON.stringify(report)) as BenchReport;
    expect(round).toEqual(report);
    expect(Object.keys(report).sort()).toEqual(
      [
        'aborted',
        'counts',
        'durationSec',
        'goodput',
        'latencyMs',
        'options',
        'prefixCache',
        'requests',
        'startedAt',
        'throughput',
        'tokens',
        'version',
      ].sort(),
    );
    expect(report.options).toMatchObject({
      workload: 'shared-prefix',
      concurrency: 5,
      requests: 10,
      seed: 3,
      endpoint: 'completions',
      tokenIds: true,
    });
    expect(report.options.shape).toMatchObject({ numPrefixes: 2, prefixLen: 64, inputLen: 8, maxTokens: 6 });
    expect(report.requests.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('reports progress and formats tables', () => {
    expect(progress[0]).toMatchObject({ done: 0, total: 10 });
    expect(progress.at(-1)).toMatchObject({ done: 10, failed: 1, inFlight: 0, total: 10 });
    const table = formatReport(report);
    expect(table).toContain('TTFT (n=9)');
    expect(table).toContain('failed with 503');
    expect(table).toContain('Prefix cache hit rate');
    const cmp = compareReports(report, report);
    expect(cmp).toContain('1.00×');
    expect(cmp.split('\n').length).toBeGreaterThan(20);
  });
});

describe('runBench scheduling', () => {
  it('runs multi-turn chat sessions turn after turn, each turn appending to the conversation', async () => {
    const fake = await startFakeServer({ ttftMs: 5, itlMs: 2 });
    try {
      const r = await runBench({
        url: `${fake.url}/v1`,
        model: 'm',
        workload: 'multi-turn',
        endpoint: 'chat',
        sessions: 2,
        turns: 3,
        requests: 6,
        maxTokens: 3,
        inputLen: 4,
        prefixLen: 4,
        rate: 200,
        seed: 1,
      });
      expect(r.counts.completed).toBe(6);
      const messages = fake.bodies.map((b) => (b['messages'] as { role: string }[]).map((m) => m.role).join(','));
      expect(messages.filter((m) => m === 'system,user,assistant,user,assistant,user').length).toBe(2);
      const byIndex = new Map(r.requests.map((x) => [x.index, x]));
      for (const x of r.requests) {
        if (x.index < 2) continue;
        const prev = byIndex.get(x.index - 2)!;
        expect(x.session).toBe(prev.session);
        expect(x.startMs).toBeGreaterThanOrEqual(prev.startMs + prev.e2eMs! - 1);
      }
    } finally {
      await fake.close();
    }
  });

  it('replays a trace on its (scaled) timestamps', async () => {
    const fake = await startFakeServer({ ttftMs: 1, itlMs: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'pdserve-bench-'));
    const file = join(dir, 't.jsonl');
    const rows = [0, 200, 400, 1000].map((timestamp, i) => ({
      timestamp,
      input_length: 1024 + i,
      output_length: 4,
      hash_ids: [1, 2, 3 + i],
    }));
    writeFileSync(file, rows.map((x) => JSON.stringify(x)).join('\n'));
    try {
      const r = await runBench({ url: fake.url, model: 'm', workload: { trace: file }, timeScale: 0.1, blockScale: 16, lengthScale: 0.5 });
      expect(r.counts.completed).toBe(4);
      expect(r.requests.map((x) => x.scheduledMs)).toEqual([0, 20, 40, 100]);
      for (const x of r.requests) expect(x.startMs).toBeGreaterThanOrEqual(x.scheduledMs - 1);
      expect(r.requests.map((x) => x.promptTokens)).toEqual([32, 32, 32, 32]);
      expect(r.requests.map((x) => x.outputTokens)).toEqual([2, 2, 2, 2]);
      // All four share hash ids 1 and 2 (2 × 16 tokens): later requests hit the first's blocks.
      expect(r.requests.slice(1).map((x) => x.cachedTokens)).toEqual([32, 32, 32]);
    } finally {
      await fake.close();
    }
  });

  it('stops on duration (closed loop) and on abort, and records connection failures', async () => {
    const fake = await startFakeServer({ ttftMs: 20, itlMs: 20 });
    try {
      const timed = await runBench({
        url: fake.url,
        model: 'm',
        workload: 'random',
        durationSec: 0.3,
        concurrency: 2,
        maxTokens: 3,
        inputLen: 8,
      });
      expect(timed.options.requests).toBeNull();
      expect(timed.counts.sent).toBeGreaterThanOrEqual(2);
      expect(timed.counts.sent).toBeLessThanOrEqual(12);
      expect(timed.durationSec).toBeLessThan(1.5);

      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const aborted = await runBench({
        url: fake.url,
        model: 'm',
        workload: 'random',
        requests: 50,
        rate: 20,
        maxTokens: 20,
        signal: ac.signal,
      });
      expect(aborted.aborted).toBe(true);
      expect(aborted.counts.sent).toBeLessThan(50);
      expect(aborted.requests.every((x) => !x.success && x.error === 'aborted')).toBe(true);
    } finally {
      await fake.close();
    }
    const refused = await runBench({ url: fake.url, model: 'm', workload: 'random', requests: 2, maxTokens: 2 });
    expect(refused.counts.failedByStatus).toEqual({ network: 2 });
    expect(refused.requests[0]!.error).toMatch(/fetch failed/);
  });

  it('rejects bad options with a clear message', async () => {
    await expect(runBench({ url: 'nope', model: 'm', workload: 'random' })).rejects.toThrow('url must be');
    await expect(runBench({ url: 'http://127.0.0.1:1', model: 'm', workload: 'random', rate: -1 })).rejects.toThrow('rate must be');
    await expect(runBench({ url: 'http://127.0.0.1:1', model: 'm', workload: 'random', durationSec: 1 })).rejects.toThrow(
      'durationSec without requests',
    );
    await expect(runBench({ url: 'http://127.0.0.1:1', model: 'm', workload: 'chat-ish' as 'random' })).rejects.toThrow('workload must be');
  });
});
