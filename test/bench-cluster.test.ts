// `pdserve bench` against a local pdserve cluster (gateway + 2 mixed workers in this process, embedded
// control plane, gRPC over loopback): a synthetic workload produces the full JSON report, the shared
// Mooncake trace replays end to end (scaled down hard), and --compare prints two runs side by side.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { MOONCAKE_TRACE, type BenchReport } from '@pdserve/bench';
import { runCli } from '@pdserve/cli';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel } from '@pdserve/model';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

let cp: ControlPlane;
let gateway: Gateway;
let workers: WorkerService[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'pdserve-bench-'));

/** Runs the CLI, capturing what it prints on stdout. */
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

const readReport = (path: string): BenchReport => JSON.parse(readFileSync(path, 'utf8')) as BenchReport;

beforeAll(async () => {
  const dir = await ensureTinyModel();
  cp = await connectControlPlane({ cluster: 'bench', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: 32 * 1024 * 1024 };
  workers = await Promise.all(
    [0, 1].map((i) =>
      startWorkerService({ role: 'mixed', instanceId: `m${i}`, engine, controlPlane: cp, logger: cpSilent, transports: ['tcp'] }),
    ),
  );
  gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, policy: 'kv-aware' });
  for (let i = 0; i < 200 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all(workers.map((w) => w.close()));
  await cp?.close();
});

describe('pdserve bench against a local cluster', () => {
  it('runs a shared-prefix workload and writes the JSON report with every field', async () => {
    const output = join(tmp, 'shared.json');
    const { code, out } = await cli([
      'bench',
      '--url',
      gateway.url,
      '--workload',
      'shared-prefix',
      '--requests',
      '8',
      '--concurrency',
      '4',
      '--prefix-len',
      '64',
      '--input-len',
      '16',
      '--num-prefixes',
      '2',
      '--max-tokens',
      '6',
      '--ignore-eos',
      '--slo-ttft',
      '60000',
      '--slo-tpot',
      '60000',
      '--seed',
      '1',
      '--output',
      output,
    ]);
    expect(code).toBe(0);
    expect(out).toContain('pdserve bench: shared-prefix');
    expect(out).toContain('TTFT (n=8)');
    const r = readReport(output);
    expect(r.version).toBe(1);
    // The model came from /v1/models.
    expect(r.options).toMatchObject({
      model: 'tiny',
      workload: 'shared-prefix',
      concurrency: 4,
      requests: 8,
      sloTtftMs: 60000,
      sloTpotMs: 60000,
      ignoreEos: true,
    });
    expect(r.counts).toEqual({ sent: 8, completed: 8, failed: 0, failedByStatus: {} });
    expect(r.tokens).toMatchObject({ input: 8 * 80, output: 8 * 6 });
    expect(r.tokens.cached).toBeGreaterThan(0);
    for (const key of ['ttft', 'tpot', 'itl', 'e2e'] as const) {
      const s = r.latencyMs[key];
      // Each token is one chunk unless the detokenizer holds back an incomplete character.
      if (key === 'itl') expect(s.count).toBeGreaterThan(0);
      else expect(s.count).toBe(8);
      for (const f of ['mean', 'min', 'p50', 'p90', 'p99', 'max'] as const) expect(s[f]).toBeGreaterThan(0);
      expect(s.min!).toBeLessThanOrEqual(s.p50!);
      expect(s.p50!).toBeLessThanOrEqual(s.p90!);
      expect(s.p99!).toBeLessThanOrEqual(s.max!);
    }
    for (const k of ['requestsPerSec', 'inputTokensPerSec', 'outputTokensPerSec', 'totalTokensPerSec'] as const)
      expect(r.throughput[k]).toBeGreaterThan(0);
    expect(r.goodput).toMatchObject({ met: 8, fraction: 1 });
    expect(r.prefixCache.reporting).toBe(8);
    expect(r.prefixCache.hitRate!).toBeGreaterThan(0);
    expect(r.requests).toHaveLength(8);
    for (const q of r.requests) {
      expect(q).toMatchObject({ success: true, status: 200, error: null, promptTokens: 80, outputTokens: 6, maxTokens: 6 });
      expect(q.itlMs.length).toBeLessThanOrEqual(5);
      expect(q.e2eMs!).toBeGreaterThanOrEqual(q.ttftMs!);
    }
  });

  it('replays the shared Mooncake trace, scaled down, end to end', async () => {
    const output = join(tmp, 'trace.json');
    const { code, out } = await cli([
      'bench',
      '--url',
      gateway.url,
      '--model',
      'tiny',
      '--workload',
      `trace:${MOONCAKE_TRACE}`,
      '--requests',
      '12',
      '--block-scale',
      '16',
      '--max-input-len',
      '1024',
      '--length-scale',
      '0.05',
      '--max-tokens',
      '8',
      '--time-scale',
      '0.05',
      '--ignore-eos',
      '--output',
      output,
    ]);
    expect(code).toBe(0);
    expect(out).toContain('trace');
    const r = readReport(output);
    expect(r.counts).toMatchObject({ sent: 12, completed: 12, failed: 0 });
    expect(r.options.trace).toMatchObject({
      blockScale: 16,
      maxInputLen: 1024,
      timeScale: 0.05,
      lengthScale: 0.05,
      maxTokens: 8,
      traceBlockSize: 512,
    });
    // The first record: 40,160 tokens in 79 blocks of 512 → 1,255 tokens at 16 per block, cut to 1,024.
    expect(r.requests[0]).toMatchObject({ promptTokens: 1024, outputTokens: 1 });
    // Arrivals keep the trace's spacing × 0.05: its fourth request came 277 ms after the first.
    expect(r.requests[3]!.scheduledMs).toBeCloseTo(277 * 0.05, 6);
    expect(r.requests.every((q) => q.promptTokens <= 1024 && q.outputTokens >= 1 && q.outputTokens <= 8)).toBe(true);
    expect(r.latencyMs.ttft.count).toBe(12);
  });

  it('compares two saved runs side by side', async () => {
    const { code, out } = await cli(['bench', '--compare', join(tmp, 'shared.json'), join(tmp, 'trace.json')]);
    expect(code).toBe(0);
    expect(out).toMatch(/TTFT mean \(ms\)\s+\d/);
    expect(out).toContain('B/A');
    const bad = await cli(['bench', '--compare', join(tmp, 'shared.json')]);
    expect(bad.code).toBe(2);
  });
});
