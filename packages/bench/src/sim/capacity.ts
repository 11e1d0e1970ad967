import type { SimOptions } from './options';
import { simulate } from './simulate';

export interface CapacityOptions {
  /** The TTFT objective, ms. */
  readonly sloTtftMs: number;
  /** Which TTFT percentile must stay under the objective. Default p90. */
  readonly percentile?: 'p50' | 'p90' | 'p99';
  /** Most simulations to run. Default 10. */
  readonly iterations?: number;
  /** Stop when the passing and failing time scales are within this factor. Default 1.05. */
  readonly resolution?: number;
  /** Search bounds on the time scale (arrival times × scale). Default [1/1024, 1024]. */
  readonly minTimeScale?: number;
  readonly maxTimeScale?: number;
}

export interface CapacityProbe {
  readonly timeScale: number;
  readonly requestsPerSec: number;
  readonly ttftMs: number | null;
  readonly meets: boolean;
}

export interface CapacityResult {
  readonly sloTtftMs: number;
  readonly percentile: 'p50' | 'p90' | 'p99';
  /** Highest offered request rate found meeting the objective; null if even the slowest probe failed. */
  readonly requestsPerSec: number | null;
  readonly timeScale: number | null;
  /** `found`: bracketed; `meets-at-fastest`: met even at minTimeScale (a lower bound); `fails-at-slowest`: never met. */
  readonly bound: 'found' | 'meets-at-fastest' | 'fails-at-slowest';
  readonly probes: readonly CapacityProbe[];
}

/**
 * Capacity under SLO: the highest request rate at which the cluster keeps the TTFT percentile under the
 * objective, found by compressing or stretching the trace's arrival times (the workload mix stays the same).
 * Steps by ×4 from the options' time scale to bracket the answer, then bisects geometrically.
 */
export function findCapacity(opts: SimOptions, c: CapacityOptions): CapacityResult {
  const pct = c.percentile ?? 'p90';
  const iterations = c.iterations ?? 10;
  const resolution = c.resolution ?? 1.05;
  const minScale = c.minTimeScale ?? 1 / 1024;
  const maxScale = c.maxTimeScale ?? 1024;
  if (!(c.sloTtftMs > 0)) throw new RangeError(`sloTtftMs must be positive, got ${c.sloTtftMs}`);
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError(`iterations must be a positive integer, got ${iterations}`);
  const probes: CapacityProbe[] = [];
  const probe = (timeScale: number): CapacityProbe => {
    const r = simulate({ ...opts, timeScale });
    const ttft = r.latencyMs.ttft[pct];
    const p = { timeScale, requestsPerSec: r.offeredRequestsPerSec, ttftMs: ttft, meets: ttft !== null && ttft <= c.sloTtftMs };
    probes.push(p);
    return p;
  };

  // pass: the fastest passing scale seen; fail: the slowest failing scale seen (fail < pass).
  let pass: CapacityProbe | undefined;
  let fail: CapacityProbe | undefined;
  const first = probe(Math.min(maxScale, Math.max(minScale, opts.timeScale ?? 1)));
  if (first.meets) pass = first;
  else fail = first;
  while (probes.length < iterations && (pass === undefined || fail === undefined)) {
    if (pass === undefined) {
      if (fail!.timeScale >= maxScale) break;
      const p = probe(Math.min(maxScale, fail!.timeScale * 4));
      if (p.meets) pass = p;
      else fail = p;
    } else {
      if (pass.timeScale <= minScale) break;
      const p = probe(Math.max(minScale, pass.timeScale / 4));
      if (p.meets) pass = p;
      else fail = p;
    }
  }
  while (probes.length < iterations && pass !== undefined && fail !== undefined && pass.timeScale / fail.timeScale > resolution) {
    const p = probe(Math.sqrt(pass.timeScale * fail.timeScale));
    if (p.meets) pass = p;
    else fail = p;
  }
  const bound = pass === undefined ? 'fails-at-slowest' : fail === undefined ? 'meets-at-fastest' : 'found';
  return {
    sloTtftMs: c.sloTtftMs,
    percentile: pct,
    requestsPerSec: pass?.requestsPerSec ?? null,
    timeScale: pass?.timeScale ?? null,
    bound,
    probes,
  };
}
