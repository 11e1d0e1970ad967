// The simulator against a real cluster: a slice of the shared Mooncake trace, scaled down, runs on a real
// 2-worker pdserve cluster (gateway + 2 mixed workers in this process, kv-aware routing) and through the
// simulator with the same workers, block size, cache capacity and engine limits, and a cost model that
// `pdserve calibrate` measured on the real engine just before (never fitted to this run).
// test/sim-fidelity.test.ts checks the prefix hit rates agree; scripts/bench-fidelity.ts also the TTFT.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@pdserve/api';
import { MOONCAKE_TRACE, parseCostModel, parseTrace, readTrace, runBench, simulate, type BenchReport, type SimReport } from '@pdserve/bench';
import { runCli } from '@pdserve/cli';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent } from '@pdserve/control-plane';
import { startGateway } from '@pdserve/gateway';
import { ensureTinyModel } from '@pdserve/model';
import { startWorkerService } from '@pdserve/worker';

/** Records 3900–3959: 60 requests over 13.3 s, many of them later turns of conversations in the slice. */
export const SLICE = { from: 3900, count: 60 } as const;
/** The replay, identical on both sides: 16-token blocks (= the engine's), prompts ≤ 1024 tokens, short answers. */
const SHAPE = { blockScale: 16, maxInputLen: 1024, lengthScale: 0.1, maxTokens: 32, timeScale: 1 } as const;
const KV_CACHE_BYTES = 64 * 1024 * 1024;
/** One onnxruntime thread per engine: two workers on two cores, as the calibration measures them. */
const ENGINE_THREADS = 1;

export interface Fidelity {
  readonly real: BenchReport;
  readonly sim: SimReport;
  readonly hostParallelism: number | null;
}

/** Calibrates, runs the slice on the real cluster and through the simulator; both reports. */
export async function runFidelity(): Promise<Fidelity> {
  const tmp = mkdtempSync(join(tmpdir(), 'pdserve-fidelity-'));
  const sliceFile = join(tmp, 'slice.jsonl');
  const costFile = join(tmp, 'cost.json');
  const full = await readTrace(MOONCAKE_TRACE);
  const records = full.records.slice(SLICE.from, SLICE.from + SLICE.count);
  writeFileSync(sliceFile, records.map((r) => JSON.stringify({ timestamp: r.timestamp, input_length: r.inputLength, output_length: r.outputLength, hash_ids: r.hashIds })).join('\n') + '\n');
  const dir = await ensureTinyModel();
  // Calibrate first, on the real engine configured as the workers will be (quiet on stdout).
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let code: number;
  try {
    code = await runCli([
      'calibrate', '--quick', '--skip-transfer', '--output', costFile, '--threads', String(ENGINE_THREADS),
      '--max-prompt-tokens', String(SHAPE.maxInputLen), '--kv-cache-bytes', String(KV_CACHE_BYTES),
    ]);
  } finally {
    process.stdout.write = write;
  }
  if (code !== 0) throw new Error(`pdserve calibrate exited ${code}`);
  const cp = await connectControlPlane({ cluster: 'fidelity', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId: 'tiny', kvCacheBytes: KV_CACHE_BYTES, runner: { intraOpThreads: ENGINE_THREADS } };
  const workers = await Promise.all([0, 1].map((i) => startWorkerService({ role: 'mixed', instanceId: `m${i}`, engine, controlPlane: cp, logger: cpSilent, transports: ['tcp'] })));
  const gateway = await startGateway({ modelDir: dir, modelId: 'tiny', controlPlane: cp, logger: silentLogger, port: 0, policy: 'kv-aware' });
  try {
    for (let i = 0; i < 200 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const real = await runBench({ url: gateway.url, model: 'tiny', workload: { trace: sliceFile }, ignoreEos: true, ...SHAPE });
    const calibration = parseCostModel(readFileSync(costFile, 'utf8'), costFile);
    const cacheTokens = workers[0]!.engine.pool.numBlocks * workers[0]!.engine.blockSize;
    const sim = simulate({
      trace: parseTrace(readFileSync(sliceFile, 'utf8'), sliceFile),
      decodeWorkers: 2,
      policy: 'kv-aware',
      cacheTokens,
      cost: calibration.cost,
      engine: calibration.engine ?? {},
      sharedHost: calibration.hostParallelism === null ? null : { parallelism: calibration.hostParallelism },
      ...SHAPE,
    });
    return { real, sim, hostParallelism: calibration.hostParallelism };
  } finally {
    await gateway.close();
    await Promise.all(workers.map((w) => w.close()));
    await cp.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Relative errors of the simulator against the real run, and a line that says them. */
export function fidelityErrors(f: Fidelity): { readonly hitError: number; readonly ttftError: number; readonly line: string } {
  const realHit = f.real.prefixCache.hitRate!;
  const realTtft = f.real.latencyMs.ttft.mean!;
  const simHit = f.sim.prefix.hitRate;
  const simTtft = f.sim.latencyMs.ttft.mean!;
  const hitError = Math.abs(simHit - realHit) / realHit;
  const ttftError = Math.abs(simTtft - realTtft) / realTtft;
  const line =
    `fidelity: prefix hit rate real ${(realHit * 100).toFixed(1)}% sim ${(simHit * 100).toFixed(1)}% (${(hitError * 100).toFixed(1)}% off); ` +
    `mean TTFT real ${realTtft.toFixed(1)} ms sim ${simTtft.toFixed(1)} ms (${(ttftError * 100).toFixed(1)}% off); ` +
    `p50 TTFT real ${f.real.latencyMs.ttft.p50!.toFixed(1)} sim ${f.sim.latencyMs.ttft.p50!.toFixed(1)} ms; host parallelism ${f.hostParallelism?.toFixed(2) ?? '—'}`;
  return { hitError, ttftError, line };
}
