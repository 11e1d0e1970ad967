// Does the simulator tell the truth? A slice of the shared Mooncake trace, scaled down, runs on a real
// 2-worker pdserve cluster (gateway + 2 mixed workers in this process, kv-aware routing) and through the
// simulator with the same workers, block size, cache capacity and engine limits, and a cost model that
// `pdserve calibrate` measured on the real engine just before (never fitted to this run). The prefix hit
// rate must agree within 15% and the mean TTFT within 30%.
//
// Timing is measured on shared cores: heavy load from other processes during the run but not during the
// calibration (or the reverse) moves the real TTFT, and the test then fails with the numbers it saw.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@pdserve/api';
import { MOONCAKE_TRACE, parseCostModel, parseTrace, readTrace, runBench, simulate, type BenchReport, type SimReport } from '@pdserve/bench';
import { runCli } from '@pdserve/cli';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent, type ControlPlane } from '@pdserve/control-plane';
import { startGateway, type Gateway } from '@pdserve/gateway';
import { ensureTinyModel } from '@pdserve/model';
import { startWorkerService, type WorkerService } from '@pdserve/worker';

/** Records 3900–3959: 60 requests over 13.3 s, many of them later turns of conversations in the slice. */
const SLICE = { from: 3900, count: 60 } as const;
/** The replay, identical on both sides: 16-token blocks (= the engine's), prompts ≤ 1024 tokens, short answers. */
const SHAPE = { blockScale: 16, maxInputLen: 1024, lengthScale: 0.1, maxTokens: 32, timeScale: 1 } as const;
const KV_CACHE_BYTES = 64 * 1024 * 1024;
/** One onnxruntime thread per engine: two workers on two cores, as the calibration measures them. */
const ENGINE_THREADS = 1;

const tmp = mkdtempSync(join(tmpdir(), 'pdserve-fidelity-'));
const sliceFile = join(tmp, 'slice.jsonl');
const costFile = join(tmp, 'cost.json');
let cp: ControlPlane;
let gateway: Gateway;
let workers: WorkerService[] = [];

beforeAll(async () => {
  const full = await readTrace(MOONCAKE_TRACE);
  const records = full.records.slice(SLICE.from, SLICE.from + SLICE.count);
  writeFileSync(sliceFile, records.map((r) => JSON.stringify({ timestamp: r.timestamp, input_length: r.inputLength, output_length: r.outputLength, hash_ids: r.hashIds })).join('\n') + '\n');
  const dir = await ensureTinyModel();
  // Calibrate first, on the real engine configured as the workers will be (quiet on stdout).
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const code = await runCli([
      'calibrate', '--quick', '--skip-transfer', '--output', costFile, '--threads', String(ENGINE_THREADS),
      '--max-prompt-tokens', String(SHAPE.maxInputLen), '--kv-cache-bytes', String(KV_CACHE_BYTES),
    ]);
    expect(code).toBe(0);
  } finally {
    spy.mockRestore();
  }
  cp = await connectControlPlane({ cluster: 'fidelity', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: KV_CACHE_BYTES, runner: { intraOpThreads: ENGINE_THREADS } };
  workers = await Promise.all([0, 1].map((i) => startWorkerService({ role: 'mixed', instanceId: `m${i}`, engine, controlPlane: cp, logger: cpSilent, transports: ['tcp'] })));
  gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, policy: 'kv-aware' });
  for (let i = 0; i < 200 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all(workers.map((w) => w.close()));
  await cp?.close();
});

describe('simulator vs a real 2-worker cluster on the same scaled trace', () => {
  it('agrees within 15% on prefix hit rate and 30% on mean TTFT', async () => {
    const real: BenchReport = await runBench({ url: gateway.url, model: 'tiny', workload: { trace: sliceFile }, ignoreEos: true, ...SHAPE });
    expect(real.counts).toMatchObject({ sent: SLICE.count, completed: SLICE.count, failed: 0 });

    const calibration = parseCostModel(readFileSync(costFile, 'utf8'), costFile);
    const cacheTokens = workers[0]!.engine.pool.numBlocks * workers[0]!.engine.blockSize;
    const sim: SimReport = simulate({
      trace: parseTrace(readFileSync(sliceFile, 'utf8'), sliceFile),
      decodeWorkers: 2,
      policy: 'kv-aware',
      cacheTokens,
      cost: calibration.cost,
      engine: calibration.engine ?? {},
      sharedHost: calibration.hostParallelism === null ? null : { parallelism: calibration.hostParallelism },
      ...SHAPE,
    });
    expect(sim.completed).toBe(SLICE.count);

    const realHit = real.prefixCache.hitRate!;
    const realTtft = real.latencyMs.ttft.mean!;
    const simHit = sim.prefix.hitRate;
    const simTtft = sim.latencyMs.ttft.mean!;
    const hitError = Math.abs(simHit - realHit) / realHit;
    const ttftError = Math.abs(simTtft - realTtft) / realTtft;
    process.stderr.write(
      `fidelity: prefix hit rate real ${(realHit * 100).toFixed(1)}% sim ${(simHit * 100).toFixed(1)}% (${(hitError * 100).toFixed(1)}% off); ` +
        `mean TTFT real ${realTtft.toFixed(1)} ms sim ${simTtft.toFixed(1)} ms (${(ttftError * 100).toFixed(1)}% off); ` +
        `p50 TTFT real ${real.latencyMs.ttft.p50!.toFixed(1)} sim ${sim.latencyMs.ttft.p50!.toFixed(1)} ms; host parallelism ${calibration.hostParallelism?.toFixed(2) ?? '—'}\n`,
    );
    // Real reuse happened at all (the slice holds later turns of its own conversations).
    expect(realHit).toBeGreaterThan(0.2);
    expect(hitError).toBeLessThanOrEqual(0.15);
    expect(ttftError).toBeLessThanOrEqual(0.3);
  }, 90_000);
});
