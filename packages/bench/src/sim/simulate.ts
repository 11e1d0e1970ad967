import { LoadTracker, PrefixIndex, Router, STORE_HOLDER, type KvEvent, type Tier, type WorkerInfo, type WorkerRole } from '@pdserve/router';
import { SampleBuffer, summarize } from '../stats';
import { BlockLru } from './block-lru';
import { costModelOf, requestOverheadSeconds, transferSeconds } from './cost-model';
import { DEFAULT_ENGINE_LIMITS, Sequence, SimEngine, type EngineHooks } from './engine';
import { EventQueue } from './event-queue';
import type { SimOptions } from './options';
import type { SimReport, SimRequestRecord } from './report';
import { simWorkload } from './workload';

/** Default per-worker prefix cache: the tiny model's 256 MiB KV pool at 2 KiB per token. */
export const DEFAULT_CACHE_TOKENS = 131_072;

type SimEvent =
  | { readonly kind: 'step'; readonly engine: SimEngine }
  | { readonly kind: 'transfer'; readonly seq: Sequence }
  | { readonly kind: 'report' };

/**
 * Discrete-event simulation of a cluster driven by the gateway's own router: arrivals are routed by
 * `Router.route` over a `PrefixIndex` fed with the KV events the simulated workers publish (stored on
 * prefill, removed on LRU eviction; with a store, evicted blocks move to the store under its holder id),
 * and with load reports after every change of a worker's state (or every `loadReportIntervalMs`, as real
 * workers report). Engine time comes from the cost model.
 * Deterministic: the same options give the same report.
 */
export function simulate(opts: SimOptions): SimReport {
  const { requests, blockSize, hashOf } = simWorkload(opts.trace, opts);
  const cost = costModelOf(opts.cost);
  const limits = { ...DEFAULT_ENGINE_LIMITS, ...opts.engine };
  const policy = opts.policy ?? 'kv-aware';
  const cacheTokens = opts.cacheTokens ?? DEFAULT_CACHE_TOKENS;
  const storeTokens = opts.store?.capacityTokens ?? null;
  const nPrefill = opts.prefillWorkers ?? 0;
  const nDecode = opts.decodeWorkers;
  if (!Number.isInteger(nDecode) || nDecode < 1) throw new RangeError(`decodeWorkers must be a positive integer, got ${nDecode}`);
  if (!Number.isInteger(nPrefill) || nPrefill < 0) throw new RangeError(`prefillWorkers must be an integer ≥ 0, got ${nPrefill}`);
  const cacheBlocks = Math.floor(cacheTokens / blockSize);
  const parallelism = opts.sharedHost?.parallelism ?? Number.POSITIVE_INFINITY;
  if (!(parallelism > 0)) throw new RangeError(`sharedHost.parallelism must be positive, got ${parallelism}`);
  let busyEngines = 0;
  const reportSeconds = (opts.loadReportIntervalMs ?? 0) / 1000;
  if (!(reportSeconds >= 0)) throw new RangeError(`loadReportIntervalMs must be ≥ 0, got ${opts.loadReportIntervalMs}`);

  let now = 0; // seconds
  const clock = (): number => now * 1000;
  const index = new PrefixIndex({ clock, resyncPeriodMs: Number.POSITIVE_INFINITY });
  const loads = new LoadTracker({ clock });
  const router = new Router({ blockSize, policy, index, loads, explainCandidates: 0, ...opts.router });
  const store = storeTokens === null ? undefined : new BlockLru(Math.floor(storeTokens / blockSize));
  // Global pool: block → how many worker caches hold it; the router sees the union as the store tier.
  const pool = opts.globalPool === true ? new Map<number, number>() : undefined;
  if (store && pool)
    throw new RangeError("store and globalPool are exclusive: the pool is the union of the workers' caches, the store a tier of its own");
  if (store || pool) index.applySnapshot(STORE_HOLDER, 'sim', 0, []);
  let storeSeq = 0;

  const ttft = new SampleBuffer();
  const tbt = new SampleBuffer();
  const e2e = new SampleBuffer();
  let completed = 0;
  let lastFinish = 0;
  let promptTokens = 0;
  let localHit = 0;
  let storeHit = 0;
  let computed = 0;
  let transferred = 0;
  let outputTokens = 0;
  const decodedBy = new Map<SimEngine, number>();
  const queue = new EventQueue<SimEvent>();
  const touched = new Set<SimEngine>();

  const publish = (worker: string, seq: number, tier: Tier, stored: readonly number[], removed: readonly number[]): void => {
    const events: KvEvent[] = [];
    if (stored.length > 0) events.push({ kind: 'stored', hashes: stored.map(hashOf), tier });
    if (removed.length > 0) events.push({ kind: 'removed', hashes: removed.map(hashOf), tier });
    index.applyBatch({ worker, incarnation: 'sim', seq, events });
  };
  const caches = new Map<SimEngine, BlockLru>();
  const cacheBlocksOn = (engine: SimEngine, blocks: readonly number[]): void => {
    const { stored, evicted } = caches.get(engine)!.insert(blocks);
    if (stored.length === 0 && evicted.length === 0) return;
    publish(engine.id, ++engine.eventSeq, 'device', stored, evicted);
    if (pool) {
      const added = stored.filter((id) => {
        const n = pool.get(id) ?? 0;
        pool.set(id, n + 1);
        return n === 0;
      });
      const gone = evicted.filter((id) => {
        const n = pool.get(id)! - 1;
        if (n === 0) pool.delete(id);
        else pool.set(id, n);
        return n === 0;
      });
      if (added.length > 0 || gone.length > 0) publish(STORE_HOLDER, ++storeSeq, 'store', added, gone);
    }
    if (store && evicted.length > 0) {
      const s = store.insert(evicted);
      if (s.stored.length > 0 || s.evicted.length > 0) publish(STORE_HOLDER, ++storeSeq, 'store', s.stored, s.evicted);
    }
  };
  const perRequest: SimRequestRecord[] | undefined = opts.recordRequests === true ? [] : undefined;
  const finish = (seq: Sequence): void => {
    completed++;
    lastFinish = now;
    const e2eMs = (now - seq.request.arrival + requestOverheadSeconds(cost, seq.request.promptTokens)) * 1000;
    e2e.push(e2eMs);
    perRequest?.push({
      index: seq.request.index,
      arrivalMs: seq.request.arrival * 1000,
      decodeWorker: seq.decode.id,
      prefillWorker: seq.prefill.id,
      promptTokens: seq.request.promptTokens,
      cachedTokens: seq.cachedTokens,
      outputTokens: seq.request.outputTokens,
      ttftMs: seq.ttftMs,
      e2eMs,
    });
  };
  const firstToken = (seq: Sequence): void => {
    seq.lastTokenAt = now;
    seq.context = seq.request.promptTokens + 1;
    seq.remainingOutput = seq.request.outputTokens - 1;
    seq.ttftMs = (now - seq.request.arrival + requestOverheadSeconds(cost, seq.request.promptTokens)) * 1000;
    ttft.push(seq.ttftMs);
    outputTokens += seq.request.outputTokens;
    if (seq.remainingOutput === 0) finish(seq);
    else {
      seq.decode.enqueueDecode(seq);
      touched.add(seq.decode);
    }
  };

  const hooks: EngineHooks = {
    startPrefill(seq, engine) {
      const { blocks, promptTokens: prompt } = seq.request;
      // As the engine: whole blocks only, and at least one token computed to sample the first output token from.
      const usable = Math.floor((prompt - 1) / blockSize);
      const local = Math.min(usable, caches.get(engine)!.leading(blocks));
      const fromStore = store
        ? Math.min(usable - local, store.leading(blocks, local))
        : pool
          ? Math.min(usable - local, leadingIn(pool, blocks, local))
          : 0;
      const localTokens = local * blockSize;
      const storeTokensHit = fromStore * blockSize;
      promptTokens += prompt;
      localHit += localTokens;
      storeHit += storeTokensHit;
      computed += prompt - localTokens - storeTokensHit;
      seq.cachedTokens = localTokens + storeTokensHit;
      return { cachedTokens: localTokens + storeTokensHit, fetchSeconds: transferSeconds(cost, storeTokensHit) };
    },
    prefillDone(seq, engine) {
      cacheBlocksOn(engine, seq.request.blocks);
      if (engine === seq.decode) {
        firstToken(seq);
        return;
      }
      const onDecode = caches.get(seq.decode)!.leading(seq.request.blocks, 0, false) * blockSize;
      const tokens = Math.max(0, seq.request.promptTokens - onDecode);
      transferred += tokens;
      queue.push(now + transferSeconds(cost, tokens), { kind: 'transfer', seq });
    },
    finished: finish,
    tbt: (s) => tbt.push(s * 1000),
  };

  const makeWorkers = (n: number, role: WorkerRole, prefix: string): SimEngine[] =>
    Array.from({ length: n }, (_, i) => {
      const e = new SimEngine(`${prefix}-${i}`, role, limits, cost, hooks);
      caches.set(e, new BlockLru(cacheBlocks));
      return e;
    });
  const decodeRole: 'decode' | 'mixed' = nPrefill > 0 ? 'decode' : 'mixed';
  const decoders = makeWorkers(nDecode, decodeRole, decodeRole);
  const prefillers = makeWorkers(nPrefill, 'prefill', 'prefill');
  const byId = new Map<string, SimEngine>();
  for (const e of [...decoders, ...prefillers]) {
    byId.set(e.id, e);
    index.applySnapshot(e.id, 'sim', 0, []);
  }
  const infos: WorkerInfo[] = [...decoders, ...prefillers].map((e) => ({ id: e.id, role: e.role }));
  router.setWorkers(infos);

  const report = (e: SimEngine): void => {
    // Memory pressure is not modelled (totalBlocks 0 = unknown): overload comes from the waiting count.
    loads.report({
      worker: e.id,
      running: e.runningCount,
      waiting: e.waitingCount,
      freeBlocks: 0,
      totalBlocks: 0,
      queuedPrefillTokens: e.queuedPrefillTokens,
      ts: now * 1000,
    });
  };
  const settle = (): void => {
    for (const e of touched) {
      const d = e.startStep();
      if (d !== undefined) {
        // On a shared host, a step started while others run gets its share of the cores (an approximation of
        // processor sharing: steps already running keep their end times).
        busyEngines++;
        queue.push(now + d * Math.max(1, busyEngines / parallelism), { kind: 'step', engine: e });
      }
      if (reportSeconds === 0) report(e);
    }
    touched.clear();
  };

  let events = 0;
  let next = 0;
  if (reportSeconds > 0 && requests.length > 0) queue.push(requests[0]!.arrival, { kind: 'report' });
  while (next < requests.length || queue.size > 0) {
    const arrival = next < requests.length ? requests[next]!.arrival : Number.POSITIVE_INFINITY;
    events++;
    if (queue.peekTime() <= arrival) {
      const t = queue.peekTime();
      const ev = queue.pop()!;
      now = t;
      if (ev.kind === 'report') {
        // Every worker reports; the next round only while there is work left (or the queue never empties).
        for (const e of byId.values()) report(e);
        if (next < requests.length || queue.size > 0) queue.push(now + reportSeconds, { kind: 'report' });
      } else if (ev.kind === 'step') {
        busyEngines--;
        ev.engine.finishStep(now);
        touched.add(ev.engine);
      } else {
        const seq = ev.seq;
        seq.decode.incoming--;
        cacheBlocksOn(seq.decode, seq.request.blocks);
        touched.add(seq.decode);
        firstToken(seq);
      }
    } else {
      now = arrival;
      const r = requests[next++]!;
      const d = router.route({ requestId: `r${r.index}`, chain: r.chain, promptTokens: r.promptTokens });
      const seq = new Sequence(r);
      seq.decode = byId.get(d.decodeWorker)!;
      seq.prefill = d.prefill.prefill === 'remote' ? byId.get(d.prefill.worker)! : seq.decode;
      if (seq.prefill !== seq.decode) {
        seq.decode.incoming++;
        touched.add(seq.decode);
      }
      decodedBy.set(seq.decode, (decodedBy.get(seq.decode) ?? 0) + 1);
      seq.prefill.enqueuePrefill(seq, d.uncachedTokens);
      touched.add(seq.prefill);
    }
    settle();
  }

  const stats = router.stats();
  const perWorker = decoders.map((e) => decodedBy.get(e) ?? 0);
  const first = requests.length > 0 ? requests[0]!.arrival : 0;
  const span = requests.length > 1 ? requests[requests.length - 1]!.arrival - first : 0;
  const makespan = lastFinish - first;
  const ttftValues = ttft.values();
  const rate = (x: number): number => (makespan > 0 ? x / makespan : 0);
  return {
    config: {
      prefillWorkers: nPrefill,
      decodeWorkers: nDecode,
      decodeRole,
      policy,
      cacheTokens,
      storeTokens,
      globalPool: pool !== undefined,
      hostParallelism: Number.isFinite(parallelism) ? parallelism : null,
      blockSize,
      timeScale: opts.timeScale ?? 1,
      lengthScale: opts.lengthScale ?? 1,
      maxInputLen: opts.maxInputLen ?? null,
      maxTokens: opts.maxTokens ?? null,
      cost,
      engine: limits,
    },
    requests: requests.length,
    completed,
    offeredRequestsPerSec: span > 0 ? requests.length / span : 0,
    makespanSec: makespan,
    throughput: { requestsPerSec: rate(completed), outputTokensPerSec: rate(outputTokens) },
    prefix: {
      promptTokens,
      localHitTokens: localHit,
      storeHitTokens: storeHit,
      hitRate: promptTokens > 0 ? (localHit + storeHit) / promptTokens : 0,
      localHitRate: promptTokens > 0 ? localHit / promptTokens : 0,
      storeHitRate: promptTokens > 0 ? storeHit / promptTokens : 0,
      prefillTokensComputed: computed,
    },
    transferTokens: transferred,
    latencyMs: { ttft: summarize(ttftValues), tbt: summarize(tbt.values()), e2e: summarize(e2e.values()) },
    slo: opts.sloTtftMs === undefined ? null : { ttftMs: opts.sloTtftMs, attainment: fractionAtMost(ttftValues, opts.sloTtftMs) },
    routing: {
      remotePrefill: stats.byPrefill.remote,
      localPrefill: stats.byPrefill.local,
      decodePerWorker: {
        min: Math.min(...perWorker),
        mean: perWorker.reduce((a, b) => a + b, 0) / perWorker.length,
        max: Math.max(...perWorker),
      },
    },
    events,
    steps: [...decoders, ...prefillers].reduce((s, e) => s + e.steps, 0),
    ...(perRequest === undefined ? {} : { perRequest: perRequest.sort((a, b) => a.index - b.index) }),
  };
}

/** Leading blocks of `ids` from `from` that some worker's cache holds. */
function leadingIn(pool: ReadonlyMap<number, number>, ids: readonly number[], from: number): number {
  let n = 0;
  for (let i = from; i < ids.length && pool.has(ids[i]!); i++) n++;
  return n;
}

function fractionAtMost(xs: Float64Array, limit: number): number {
  if (xs.length === 0) return 0;
  let n = 0;
  for (const x of xs) if (x <= limit) n++;
  return n / xs.length;
}
