// `pdserve calibrate`: measures the simulator's cost model on the real engine (and, optionally, the serving
// path through an in-process gateway and the transfer engine over loopback TCP), then fits it.
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '@pdserve/api';
import {
  fitCostModel,
  runBench,
  type CalibrationFile,
  type CalibrationSamples,
  type DecodeSample,
  type OverheadSample,
  type PrefillSample,
} from '@pdserve/bench';
import { connectControlPlane, InProcessHub, silentLogger as cpSilent } from '@pdserve/control-plane';
import { ENGINE_DEFAULTS, LLMEngine, type EngineOptions } from '@pdserve/engine';
import { startGateway } from '@pdserve/gateway';
import { kvBytesPerToken, loadModelSpec, samplingParams } from '@pdserve/model';
import { TransferReceiver, TransferSender, type KvBlock } from '@pdserve/transfer';
import { startWorkerService } from '@pdserve/worker';

export interface CalibrateOptions {
  /** The engine to measure, configured as the workers it stands for (block size, chunking, threads). */
  readonly engine: EngineOptions;
  /** Longest prompt measured, tokens; capped below the model's context. Default 2048. */
  readonly maxPromptTokens?: number;
  /** Repetitions of each prefill point. Default 3. */
  readonly reps?: number;
  /** Fewer points and smaller transfers (about 3× faster; for tests). Default false. */
  readonly quick?: boolean;
  /**
   * Measure the serving path (HTTP → gateway → gRPC → worker): its overhead over the engine alone, and the
   * decode step as clients see it. Default true; false measures decode steps at the engine.
   */
  readonly overhead?: boolean;
  /** Measure how many engines in one process prefill at full speed at once (a local cluster's shared cores). Default true. */
  readonly hostParallelism?: boolean;
  /** Time the transfer engine (TCP data plane over loopback). Default true. */
  readonly transfer?: boolean;
  /** Told as each stage advances. */
  readonly onProgress?: (stage: string, done: number, total: number) => void;
}

/** Decode output tokens per sequence while measuring decode steps. */
const DECODE_TOKENS = 16;

export async function calibrate(o: CalibrateOptions): Promise<CalibrationFile> {
  const spec = loadModelSpec(o.engine.modelDir, o.engine.modelId);
  const progress = o.onProgress ?? (() => undefined);
  const quick = o.quick ?? false;
  const reps = o.reps ?? (quick ? 2 : 3);
  const maxLen = Math.min(o.maxPromptTokens ?? 2048, spec.maxPositionEmbeddings - DECODE_TOKENS - 1);
  const limits = {
    maxRunning: o.engine.maxNumSeqs ?? ENGINE_DEFAULTS.maxNumSeqs,
    maxBatchTokens: o.engine.maxNumBatchedTokens ?? ENGINE_DEFAULTS.maxNumBatchedTokens,
    prefillChunkTokens: o.engine.prefillChunkTokens ?? ENGINE_DEFAULTS.prefillChunkTokens,
  };
  const blockSize = o.engine.blockSize ?? ENGINE_DEFAULTS.blockSize;
  const tokens = promptMaker(Math.min(30_000, spec.vocabSize));

  const servingPath = o.overhead !== false;
  const engine = await LLMEngine.create(o.engine);
  let prefill: PrefillSample[];
  let decode: DecodeSample[] = [];
  let hostParallelism: CalibrationFile['hostParallelism'] = null;
  try {
    prefill = await measurePrefill(engine, maxLen, reps, quick, tokens, progress);
    if (!servingPath) decode = await measureDecode(engine, maxLen, quick, tokens, progress);
    if (o.hostParallelism !== false)
      hostParallelism = await measureParallelism(engine, o.engine, Math.min(1024, maxLen), quick ? 3 : 5, tokens, progress);
  } finally {
    await engine.close();
  }
  let overhead: OverheadSample[] = [];
  if (servingPath) ({ overhead, decode } = await measureServingPath(o.engine, maxLen, quick, tokens, progress));
  const kvPerToken = kvBytesPerToken(spec);
  const transferBytesPerSecond = o.transfer === false ? null : await measureTransfer(kvPerToken * blockSize, quick ? 16 : 64, progress);
  const samples: CalibrationSamples = { limits, kvBytesPerToken: kvPerToken, prefill, decode, overhead, transferBytesPerSecond };
  const fit = fitCostModel(samples);
  return {
    version: 1,
    kind: 'pdserve-cost-model',
    model: o.engine.modelId ?? o.engine.modelDir,
    measuredAt: new Date().toISOString(),
    machine: `${process.platform} ${process.arch}, ${cpus().length} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}`,
    engine: {
      ...limits,
      blockSize,
      threads: o.engine.runner?.intraOpThreads ?? 0,
      executionProvider: o.engine.runner?.executionProvider ?? 'cpu',
    },
    hostParallelism,
    cost: fit.cost,
    quality: fit.quality,
    samples,
  };
}

/** Fresh pseudo-random prompts (xorshift32), so that no two share a prefix unless built to. */
function promptMaker(maxId: number): (n: number) => number[] {
  let s = 0x2545f491;
  return (n) => {
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      out[i] = 100 + ((s >>> 0) % (maxId - 100));
    }
    return out;
  };
}

let nextId = 0;

/** Runs one request to its end; times of each output token (ms, performance.now()) and the cached prompt tokens. */
async function run(
  engine: LLMEngine,
  prompt: readonly number[],
  maxTokens: number,
): Promise<{ t0: number; times: number[]; cached: number }> {
  const times: number[] = [];
  let cached = 0;
  const t0 = performance.now();
  const stream = engine.generate({
    requestId: `calibrate-${nextId++}`,
    promptTokenIds: prompt,
    sampling: samplingParams({ temperature: 0, maxTokens, ignoreEos: true }),
  });
  for await (const out of stream) {
    const now = performance.now();
    for (let i = 0; i < out.tokenIds.length; i++) times.push(now);
    cached = out.cachedTokens ?? cached;
  }
  return { t0, times, cached };
}

/**
 * TTFT of single requests on the idle engine: cold prompts of growing length, and prompts whose prefix the
 * engine has cached (a long shared prefix with a short new suffix, and half and half). Points are
 * interleaved across repetitions so that noise from elsewhere on the machine spreads over all of them.
 */
async function measurePrefill(
  engine: LLMEngine,
  maxLen: number,
  reps: number,
  quick: boolean,
  tokens: (n: number) => number[],
  progress: (stage: string, done: number, total: number) => void,
): Promise<PrefillSample[]> {
  const lengths = (quick ? [16, 128, 256, 512, 1024, 2048] : [16, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072]).filter(
    (n) => n <= maxLen,
  );
  const cachedLengths = [256, 512, 1024, 2048].filter((n) => n <= maxLen);
  for (const n of lengths) await run(engine, tokens(n), 1); // warm-up: first runs of a shape allocate
  const samples: PrefillSample[] = [];
  const total = reps * (lengths.length + cachedLengths.length * 2);
  let done = 0;
  for (let r = 0; r < reps; r++) {
    for (const n of lengths) {
      const res = await run(engine, tokens(n), 1);
      samples.push({ promptTokens: n, cachedTokens: res.cached, seconds: (res.times[0]! - res.t0) / 1000 });
      progress('prefill', ++done, total);
    }
    for (const n of cachedLengths) {
      for (const suffix of [16, n / 2]) {
        const prompt = tokens(n);
        await run(engine, prompt, 1);
        const res = await run(engine, [...prompt.slice(0, n - suffix), ...tokens(suffix)], 1);
        samples.push({ promptTokens: n, cachedTokens: res.cached, seconds: (res.times[0]! - res.t0) / 1000 });
        progress('prefill', ++done, total);
      }
    }
  }
  return samples;
}

/**
 * Host parallelism: the same cold prefill alone on one engine, then on two engines at once (each on its own
 * model thread, as the workers of an in-process cluster); 2 × alone / together, from the medians.
 */
async function measureParallelism(
  engine: LLMEngine,
  options: EngineOptions,
  promptTokens: number,
  reps: number,
  tokens: (n: number) => number[],
  progress: (stage: string, done: number, total: number) => void,
): Promise<{ engines: number; parallelism: number }> {
  const other = await LLMEngine.create(options);
  try {
    const ttft = async (e: LLMEngine): Promise<number> => {
      const r = await run(e, tokens(promptTokens), 1);
      return r.times[0]! - r.t0;
    };
    await ttft(other); // warm-up
    const alone: number[] = [];
    const together: number[] = [];
    for (let r = 0; r < reps; r++) {
      alone.push(await ttft(engine));
      const t0 = performance.now();
      await Promise.all([ttft(engine), ttft(other)]);
      together.push(performance.now() - t0);
      progress('host parallelism', r + 1, reps);
    }
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[xs.length >> 1]!;
    return { engines: 2, parallelism: Math.min(2, Math.max(0.5, (2 * median(alone)) / median(together))) };
  } finally {
    await other.close();
  }
}

/**
 * Decode step time: `batch` requests of `context` prompt tokens start together; once every one has its
 * first token, each step decodes all of them, so the gaps between their tokens are whole decode steps.
 */
async function measureDecode(
  engine: LLMEngine,
  maxLen: number,
  quick: boolean,
  tokens: (n: number) => number[],
  progress: (stage: string, done: number, total: number) => void,
): Promise<DecodeSample[]> {
  const batches = (quick ? [1, 8, 24] : [1, 4, 16, 32]).filter((b) => b <= engine.maxNumSeqs);
  const contexts = [...new Set([64, Math.min(512, Math.floor(maxLen / 2))])];
  const samples: DecodeSample[] = [];
  let done = 0;
  for (const context of contexts) {
    for (const batch of batches) {
      const runs = await Promise.all(Array.from({ length: batch }, () => run(engine, tokens(context), DECODE_TOKENS)));
      const start = Math.max(...runs.map((r) => r.times[0]!));
      const gaps: number[] = [];
      for (const r of runs) for (let i = 1; i < r.times.length; i++) if (r.times[i - 1]! >= start) gaps.push(r.times[i]! - r.times[i - 1]!);
      if (gaps.length > 0) {
        gaps.sort((a, b) => a - b);
        samples.push({ batch, contextTokens: batch * (context + DECODE_TOKENS / 2), seconds: gaps[gaps.length >> 1]! / 1000 });
      }
      progress('decode', ++done, batches.length * contexts.length);
    }
  }
  return samples;
}

/**
 * The serving path, through an in-process gateway and one mixed worker (HTTP, routing, gRPC, streaming back):
 * its extra TTFT over the same engine called directly, for prompts of a few lengths; and the decode step as
 * clients see it (the median gap between streamed tokens of `batch` concurrent requests), which includes the
 * per-token work of streaming through the worker, the gateway and the HTTP response.
 */
async function measureServingPath(
  engineOptions: EngineOptions,
  maxLen: number,
  quick: boolean,
  tokens: (n: number) => number[],
  progress: (stage: string, done: number, total: number) => void,
): Promise<{ overhead: OverheadSample[]; decode: DecodeSample[] }> {
  const cp = await connectControlPlane({ cluster: 'calibrate', hub: new InProcessHub(), logger: cpSilent });
  const worker = await startWorkerService({
    role: 'mixed',
    instanceId: 'calibrate-0',
    engine: engineOptions,
    controlPlane: cp,
    logger: cpSilent,
    transports: ['tcp'],
  });
  const modelId = engineOptions.modelId ?? engineOptions.modelDir;
  const gateway = await startGateway({
    modelDir: engineOptions.modelDir,
    modelId,
    controlPlane: cp,
    logger: silentLogger,
    port: 0,
    blockSize: engineOptions.blockSize,
    policy: 'round-robin',
  });
  const overhead: OverheadSample[] = [];
  const decode: DecodeSample[] = [];
  try {
    for (let i = 0; i < 200 && gateway.view.workers().length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    let seed = 1;
    const bench = (inputLen: number, maxTokens: number, requests: number) =>
      runBench({
        url: gateway.url,
        model: modelId,
        workload: 'random',
        inputLen,
        rangeRatio: 0,
        maxTokens,
        ignoreEos: true,
        requests,
        concurrency: requests,
        seed: seed++,
      });
    const lengths = [16, 256, 1024].filter((n) => n <= maxLen);
    const reps = quick ? 3 : 5;
    const batches = (quick ? [1, 8] : [1, 4, 16]).filter((b) => b <= worker.engine.maxNumSeqs);
    const contexts = [...new Set([64, Math.min(512, Math.floor(maxLen / 2))])];
    const total = reps * lengths.length + batches.length * contexts.length;
    let done = 0;
    await bench(16, 2, 1); // warm-up: connections, JIT
    for (let r = 0; r < reps; r++) {
      for (const n of lengths) {
        const direct = await run(worker.engine, tokens(n), 1);
        const served = (await bench(n, 1, 1)).latencyMs.ttft.p50;
        if (served === null) throw new Error('calibrate: a request through the gateway failed');
        overhead.push({ promptTokens: n, seconds: served / 1000 - (direct.times[0]! - direct.t0) / 1000 });
        progress('serving path', ++done, total);
      }
    }
    for (const context of contexts) {
      for (const batch of batches) {
        const itl = (await bench(context, DECODE_TOKENS, batch)).latencyMs.itl.p50;
        if (itl === null) throw new Error('calibrate: no token gaps measured through the gateway');
        decode.push({ batch, contextTokens: batch * (context + DECODE_TOKENS / 2), seconds: itl / 1000 });
        progress('serving path', ++done, total);
      }
    }
  } finally {
    await gateway.close();
    await worker.close();
    await cp.close();
  }
  return { overhead, decode };
}

/** KV bytes per second through the transfer engine's TCP data plane (sender and receiver in this process). */
async function measureTransfer(
  blockBytes: number,
  mib: number,
  progress: (stage: string, done: number, total: number) => void,
): Promise<number> {
  const rx = await TransferReceiver.start({ transports: ['tcp'], onTransfer: () => undefined });
  const tx = new TransferSender();
  try {
    const grpcAddress = await rx.serveGrpc('127.0.0.1', 0);
    const peer = { grpcAddress, advertisement: rx.advertisement() };
    const count = Math.max(1, Math.round((mib * 2 ** 20) / blockBytes));
    const blocks: KvBlock[] = Array.from({ length: count }, (_, i) => ({
      hash: i.toString(16).padStart(16, '0'),
      data: new Uint8Array(randomBytes(blockBytes)),
    }));
    await tx.send({ peer, transport: 'tcp', blocks, deadlineMs: 60_000 }); // warm-up
    const rates: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      await tx.send({ peer, transport: 'tcp', blocks, deadlineMs: 60_000 });
      rates.push((count * blockBytes) / ((performance.now() - t0) / 1000));
      progress('transfer', r + 1, 3);
    }
    rates.sort((a, b) => a - b);
    return rates[1]!;
  } finally {
    tx.close();
    await rx.close();
  }
}
