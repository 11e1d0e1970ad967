// The simulator against a real cluster: a slice of the shared Mooncake trace, scaled down, runs on a real
// 2-worker pdserve cluster (gateway + 2 mixed workers in this process, kv-aware routing) and through the
// simulator with the same workers, block size, cache capacity and engine limits, and a cost model that
// `pdserve calibrate` measured on the real engine just before (never fitted to this run).
// test/sim-fidelity.test.ts checks the prefix hit rates agree; scripts/bench-fidelity.ts also the TTFT,
// and with a preset (a real model's shape) the same on a smaller slice (FIDELITY_AT_PRESET).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@pdserve/api';
import {
  MOONCAKE_TRACE,
  parseCostModel,
  parseTrace,
  readTrace,
  runBench,
  simulate,
  type BenchReport,
  type SimReport,
} from '@pdserve/bench';
import { runCli } from '@pdserve/cli';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent } from '@pdserve/control-plane';
import { startGateway } from '@pdserve/gateway';
import { ensureTinyModel, type PresetName } from '@pdserve/model';
import type { RoutingDecision } from '@pdserve/router';
import { LOAD_REPORT_INTERVAL_MS, startWorkerService } from '@pdserve/worker';

/** Records 3900–3959: 60 requests over 13.3 s, many of them later turns of conversations in the slice. */
export const SLICE = { from: 3900, count: 60 } as const;
/** The replay, identical on both sides: 16-token blocks (= the engine's), prompts ≤ 1024 tokens, short answers. */
const SHAPE = { blockScale: 16, maxInputLen: 1024, lengthScale: 0.1, maxTokens: 32, timeScale: 1 } as const;
const KV_CACHE_BYTES = 64 * 1024 * 1024;

/** One size's comparison: the trace slice, its replay shape and each worker's KV pool. */
export interface FidelityScale {
  readonly slice: { readonly from: number; readonly count: number };
  readonly shape: {
    readonly blockScale: number;
    readonly maxInputLen: number;
    readonly lengthScale: number;
    readonly maxTokens: number;
    readonly timeScale: number;
  };
  readonly kvCacheBytes: number;
  /** Longest prompt the calibration measures (≥ the replay's prompts, so the prefill fit has points to fit). */
  readonly calibrateMaxPromptTokens: number;
}

/** The tiny model's comparison (the test's). */
export const FIDELITY_TINY: FidelityScale = {
  slice: SLICE,
  shape: SHAPE,
  kvCacheBytes: KV_CACHE_BYTES,
  calibrateMaxPromptTokens: SHAPE.maxInputLen,
};

/**
 * At a preset's size a prefill token costs ~20× the tiny model's, so the slice is scaled down to finish in
 * minutes on 2 cores: records 3900–3963 (64 requests, 48% of their ≤64-token prompts' tokens a prefix
 * seen earlier in the slice), 4 output tokens, arrivals 8× slower (13.8 s → 110 s: the 2 workers keep up,
 * so a later turn finds its prefix cached rather than still in prefill); 128 MiB of KV per worker (5,461
 * tokens at qwen2.5-0.5b's 24 KiB a token: the whole slice fits, as the tiny run's does). 64 requests, not
 * 32: with 32, one routing decision that went the other way (a near tie between a cached prefix and a
 * queued prefill) moved the hit rate by 14% of itself. The calibration measures prompts up to 256 tokens
 * (16, 128, 256 with --quick).
 */
export const FIDELITY_AT_PRESET: FidelityScale = {
  slice: { from: 3900, count: 64 },
  shape: { blockScale: 16, maxInputLen: 64, lengthScale: 0.1, maxTokens: 4, timeScale: 8 },
  kvCacheBytes: 128 * 1024 * 1024,
  calibrateMaxPromptTokens: 256,
};
/** One onnxruntime thread per engine: two workers on two cores, as the calibration measures them. */
const ENGINE_THREADS = 1;

export interface Fidelity {
  readonly real: BenchReport;
  readonly sim: SimReport;
  readonly hostParallelism: number | null;
  /** The cost model the calibration measured (what the simulator ran on). */
  readonly cost: ReturnType<typeof parseCostModel>['cost'];
  /** The real gateway's routing decisions, in the order it made them (the slice's order: arrivals are ≥ 40 ms apart). */
  readonly realRoutes: readonly RoutingDecision[];
}

/** Calibrates, runs the slice on the real cluster and through the simulator; both reports. */
export async function runFidelity(preset?: PresetName): Promise<Fidelity> {
  const { slice, shape, kvCacheBytes, calibrateMaxPromptTokens } = preset === undefined ? FIDELITY_TINY : FIDELITY_AT_PRESET;
  const modelId = preset ?? 'tiny';
  const tmp = mkdtempSync(join(tmpdir(), 'pdserve-fidelity-'));
  const sliceFile = join(tmp, 'slice.jsonl');
  const costFile = join(tmp, 'cost.json');
  const full = await readTrace(MOONCAKE_TRACE);
  const records = full.records.slice(slice.from, slice.from + slice.count);
  writeFileSync(
    sliceFile,
    records
      .map((r) =>
        JSON.stringify({ timestamp: r.timestamp, input_length: r.inputLength, output_length: r.outputLength, hash_ids: r.hashIds }),
      )
      .join('\n') + '\n',
  );
  const dir = await ensureTinyModel(preset === undefined ? {} : { preset });
  // Calibrate first, on the real engine configured as the workers will be (quiet on stdout).
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let code: number;
  try {
    code = await runCli([
      'calibrate',
      '--quick',
      '--skip-transfer',
      '--output',
      costFile,
      '--threads',
      String(ENGINE_THREADS),
      '--max-prompt-tokens',
      String(calibrateMaxPromptTokens),
      '--kv-cache-bytes',
      String(kvCacheBytes),
      ...(preset === undefined ? [] : ['--model', dir, '--served-model-name', modelId]),
    ]);
  } finally {
    process.stdout.write = write;
  }
  if (code !== 0) throw new Error(`pdserve calibrate exited ${code}`);
  const cp = await connectControlPlane({ cluster: 'fidelity', hub: new InProcessHub(), logger: cpSilent });
  const engine = { modelDir: dir, modelId, kvCacheBytes, runner: { intraOpThreads: ENGINE_THREADS } };
  // Named as the simulator names its workers: kv-aware breaks ties by a hash of (prompt, worker id), so the
  // same ids make the same tie-breaks on both sides.
  const workers = await Promise.all(
    [0, 1].map((i) =>
      startWorkerService({ role: 'mixed', instanceId: `mixed-${i}`, engine, controlPlane: cp, logger: cpSilent, transports: ['tcp'] }),
    ),
  );
  const gateway = await startGateway({ modelDir: dir, modelId, controlPlane: cp, logger: silentLogger, port: 0, policy: 'kv-aware' });
  try {
    for (let i = 0; i < 200 && gateway.view.workers().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const realRoutes: RoutingDecision[] = [];
    const route = gateway.router.route.bind(gateway.router);
    gateway.router.route = (request, workers) => {
      const d = route(request, workers);
      realRoutes.push(d);
      return d;
    };
    const real = await runBench({ url: gateway.url, model: modelId, workload: { trace: sliceFile }, ignoreEos: true, ...shape });
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
      recordRequests: true,
      // The real workers report their load every LOAD_REPORT_INTERVAL_MS: the simulated router sees it as late.
      loadReportIntervalMs: LOAD_REPORT_INTERVAL_MS,
      ...shape,
    });
    return { real, sim, hostParallelism: calibration.hostParallelism, cost: calibration.cost, realRoutes };
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
