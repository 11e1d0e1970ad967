import { performance } from 'node:perf_hooks';
import { poissonArrivals } from './arrivals';
import { sendRequest, type RequestRecord, type RequestTarget } from './client';
import { resolveOptions, type BenchOptions, type ResolvedOptions } from './options';
import { buildReport, type BenchReport } from './report';
import { endpointUrl, requestBody } from './request-body';
import { Slots, sleepUntil } from './slots';
import { readTrace } from './trace';
import { traceSource } from './trace-replay';
import { promptLength, syntheticSource, type BenchRequest, type RequestSource } from './workloads';

export interface BenchProgress {
  readonly done: number;
  readonly failed: number;
  readonly inFlight: number;
  /** Requests the run will send, when known in advance (not with durationSec alone). */
  readonly total: number | undefined;
  readonly elapsedSec: number;
  readonly durationSec: number | undefined;
}

/**
 * Runs a benchmark against an OpenAI-compatible server: dispatches requests on the arrival schedule (one
 * loop, in index order), each waiting for a concurrency slot and, in multi-turn sessions, for its previous
 * turn; streams and measures each one; returns the report. Never throws for request failures (they are
 * counted); throws RangeError for bad options and TraceError for a bad trace.
 */
export async function runBench(opts: BenchOptions, onProgress?: (p: BenchProgress) => void): Promise<BenchReport> {
  const o = resolveOptions(opts);
  const source = await sourceOf(o);
  const limit = Math.min(o.requests ?? Number.POSITIVE_INFINITY, source.total ?? Number.POSITIVE_INFINITY);
  const total = Number.isFinite(limit) ? limit : undefined;
  const arrival = arrivalsOf(o);

  const user = opts.signal ?? new AbortController().signal;
  const stopDispatch = new AbortController();
  const stop = AbortSignal.any([user, stopDispatch.signal]);
  const durationMs = o.durationSec === null ? Number.POSITIVE_INFINITY : o.durationSec * 1000;
  const timer = Number.isFinite(durationMs) ? setTimeout(() => stopDispatch.abort(), durationMs) : undefined;

  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const target: RequestTarget = {
    url: endpointUrl(o.url, o.endpoint),
    endpoint: o.endpoint,
    headers: opts.apiKey === undefined ? {} : { authorization: `Bearer ${opts.apiKey}` },
    timeoutMs: o.requestTimeoutSec * 1000,
    t0,
  };
  const slots = new Slots(o.concurrency ?? Number.POSITIVE_INFINITY);
  const records: RequestRecord[] = [];
  const finished = new Map<number, Promise<void>>();
  let inFlight = 0;
  let failed = 0;
  const progress = (): void =>
    onProgress?.({
      done: records.length,
      failed,
      inFlight,
      total,
      elapsedSec: (performance.now() - t0) / 1000,
      durationSec: o.durationSec ?? undefined,
    });
  progress();

  const run = async (req: BenchRequest, scheduledMs: number): Promise<void> => {
    try {
      if (req.after !== undefined) await finished.get(req.after);
      if (stop.aborted) return;
      inFlight++;
      const meta = {
        index: req.index,
        session: req.session ?? null,
        scheduledMs,
        expectedPromptTokens: promptLength(req),
        maxTokens: req.maxTokens,
      };
      const rec = await sendRequest(meta, requestBody(req, o), target, user);
      inFlight--;
      records.push(rec);
      if (!rec.success) failed++;
      progress();
    } finally {
      slots.release();
    }
  };

  try {
    for (let i = 0; i < limit && !stop.aborted; i++) {
      const req = source.get(i);
      if (req === undefined) break;
      const at = arrival(req);
      if (at >= durationMs) break;
      await sleepUntil(t0 + at, performance.now(), stop);
      if (!(await slots.acquire(stop))) break;
      finished.set(i, run(req, at));
    }
    await Promise.all(finished.values());
  } finally {
    clearTimeout(timer);
  }
  const durationSec = (performance.now() - t0) / 1000;
  return buildReport(o, records, startedAt, durationSec, user.aborted);
}

async function sourceOf(o: ResolvedOptions): Promise<RequestSource> {
  if (typeof o.workload === 'object') {
    const t = o.trace!;
    return traceSource(await readTrace(o.workload.trace), {
      timeScale: t.timeScale,
      blockScale: t.blockScale ?? undefined,
      lengthScale: t.lengthScale,
      traceBlockSize: t.traceBlockSize,
      maxInputLen: t.maxInputLen ?? undefined,
      maxTokens: t.maxTokens ?? undefined,
      seed: o.seed,
      tokenRange: o.tokenRange,
    });
  }
  return syntheticSource(o.workload, o.shape!, o.seed);
}

/** Arrival offset (ms) of each request, called once per request in index order. */
function arrivalsOf(o: ResolvedOptions): (req: BenchRequest) => number {
  if (o.rate !== null) {
    const next = poissonArrivals(o.rate === 'inf' ? Number.POSITIVE_INFINITY : o.rate, o.seed);
    return () => next();
  }
  return (req) => req.arrivalMs ?? 0;
}
