// Fitting the simulator's cost model to measurements of the real engine (`pdserve calibrate` measures;
// this file only fits, so it can be tested with hand-made samples).
import { chunkTokenPairs, costModelOf, decodeStepSeconds, requestOverheadSeconds, type CostModel } from './cost-model';
import type { EngineLimits } from './engine';

/** TTFT of one request alone on an idle engine, measured at the engine (admission to first token). */
export interface PrefillSample {
  readonly promptTokens: number;
  /** Prompt tokens the engine took from its prefix cache. */
  readonly cachedTokens: number;
  readonly seconds: number;
}

/** One decode-only step: `batch` sequences attending over `contextTokens` tokens in all. */
export interface DecodeSample {
  readonly batch: number;
  readonly contextTokens: number;
  readonly seconds: number;
}

/** Extra TTFT of a request through the serving path (HTTP, router, RPC) over the engine alone. */
export interface OverheadSample {
  readonly promptTokens: number;
  readonly seconds: number;
}

export interface CalibrationSamples {
  /** The scheduler limits the samples were taken under (prefill chunking decides the prefill steps). */
  readonly limits: Pick<EngineLimits, 'prefillChunkTokens' | 'maxBatchTokens'>;
  readonly kvBytesPerToken: number;
  readonly prefill: readonly PrefillSample[];
  readonly decode: readonly DecodeSample[];
  /** Empty: the serving path was not measured (overhead stays the engine's own). */
  readonly overhead: readonly OverheadSample[];
  /** Timed KV transfer rate; null keeps the default. */
  readonly transferBytesPerSecond: number | null;
}

/** How well a fitted part of the model predicts its own samples. */
export interface FitQuality {
  readonly samples: number;
  /** Mean of |predicted − measured| / measured. */
  readonly meanRelativeError: number;
  readonly maxRelativeError: number;
}

export interface Calibration {
  readonly cost: CostModel;
  readonly quality: { readonly prefill: FitQuality; readonly decode: FitQuality; readonly overhead: FitQuality | null };
}

/** What the simulator charges for one request's prefill alone on an idle engine. */
export interface PrefillWork {
  /** Steps that run a prefill chunk. */
  readonly steps: number;
  readonly computedTokens: number;
  /** Σ chunk × (past + chunk / 2): attention's token pairs. */
  readonly tokenPairs: number;
}

/** The prefill steps of one request alone, chunked exactly as the simulator (and the engine) chunk it. */
export function prefillWork(promptTokens: number, cachedTokens: number, limits: CalibrationSamples['limits']): PrefillWork {
  let past = Math.min(cachedTokens, promptTokens - 1);
  let remaining = promptTokens - past;
  let steps = 0;
  let tokenPairs = 0;
  const computedTokens = remaining;
  while (remaining > 0) {
    let chunk = Math.min(remaining, limits.maxBatchTokens);
    if (limits.prefillChunkTokens > 0) chunk = Math.min(chunk, limits.prefillChunkTokens);
    tokenPairs += chunkTokenPairs(past, chunk);
    past += chunk;
    remaining -= chunk;
    steps++;
  }
  return { steps, computedTokens, tokenPairs };
}

/**
 * Fits the cost model by non-negative least squares on absolute seconds (so that the large, slow cases that
 * dominate mean latencies weigh most):
 *   prefill TTFT  = overhead + prefillStepSeconds × steps + prefillSecondsPerToken × computed
 *                   + prefillSecondsPerTokenPair × pairs + prefillSecondsPerCachedToken × cached
 *   decode step   = base + perSequence × batch + perContextToken × context tokens
 *   path overhead = a + b × prompt tokens
 * The prefill fit's overhead (admission, first-token sampling) plus `a` is requestOverheadSeconds.
 */
export function fitCostModel(samples: CalibrationSamples): Calibration {
  // Repetitions of a point are reduced to their median first: one stall on a shared machine must not tilt the fit.
  const s: CalibrationSamples = {
    ...samples,
    prefill: medians(samples.prefill, (p) => `${p.promptTokens}/${p.cachedTokens}`),
    decode: medians(samples.decode, (d) => `${d.batch}/${d.contextTokens}`),
    overhead: medians(samples.overhead, (o) => `${o.promptTokens}`),
  };
  if (s.prefill.length < 2) throw new RangeError('calibration needs prefill samples at two or more points');
  if (s.decode.length < 2) throw new RangeError('calibration needs decode samples at two or more points');
  const work = s.prefill.map((p) => prefillWork(p.promptTokens, p.cachedTokens, s.limits));
  const [engineOverhead, step, perToken, perPair, perCached] = nnls(
    s.prefill.map((p, i) => [
      1,
      work[i]!.steps,
      work[i]!.computedTokens,
      work[i]!.tokenPairs,
      Math.min(p.cachedTokens, p.promptTokens - 1),
    ]),
    s.prefill.map((p) => p.seconds),
  ) as [number, number, number, number, number];
  const [base, perSeq, perCtx] = nnls(
    s.decode.map((d) => [1, d.batch, d.contextTokens]),
    s.decode.map((d) => d.seconds),
  ) as [number, number, number];
  const [pathFixed, pathPerToken] =
    s.overhead.length >= 2
      ? (nnls(
          s.overhead.map((o) => [1, o.promptTokens]),
          s.overhead.map((o) => o.seconds),
        ) as [number, number])
      : [0, 0];
  const cost = costModelOf({
    prefillSecondsPerToken: perToken,
    prefillSecondsPerCachedToken: perCached,
    prefillStepSeconds: step,
    prefillSecondsPerTokenPair: perPair,
    decodeStep: { baseSeconds: base, perSequenceSeconds: perSeq, perContextTokenSeconds: perCtx },
    transferBytesPerSecond: s.transferBytesPerSecond ?? undefined,
    kvBytesPerToken: s.kvBytesPerToken,
    requestOverheadSeconds: engineOverhead + pathFixed,
    requestOverheadSecondsPerToken: pathPerToken,
  });
  const prefillPredicted = (i: number): number => {
    const w = work[i]!;
    const p = s.prefill[i]!;
    return (
      engineOverhead +
      step * w.steps +
      perToken * w.computedTokens +
      perPair * w.tokenPairs +
      perCached * Math.min(p.cachedTokens, p.promptTokens - 1)
    );
  };
  return {
    cost,
    quality: {
      prefill: quality(s.prefill.map((p, i) => [prefillPredicted(i), p.seconds])),
      decode: quality(s.decode.map((d) => [decodeStepSeconds(cost, d.batch, d.contextTokens), d.seconds])),
      overhead:
        s.overhead.length >= 2
          ? quality(s.overhead.map((o) => [requestOverheadSeconds(cost, o.promptTokens) - engineOverhead, o.seconds]))
          : null,
    },
  };
}

/** TTFT the fitted model predicts for one request alone on an idle engine, seconds (overhead included). */
export function predictAloneTtft(
  cost: CostModel,
  promptTokens: number,
  cachedTokens: number,
  limits: CalibrationSamples['limits'],
): number {
  const w = prefillWork(promptTokens, cachedTokens, limits);
  return (
    requestOverheadSeconds(cost, promptTokens) +
    cost.prefillStepSeconds * w.steps +
    cost.prefillSecondsPerToken * w.computedTokens +
    cost.prefillSecondsPerTokenPair * w.tokenPairs +
    cost.prefillSecondsPerCachedToken * Math.min(cachedTokens, promptTokens - 1)
  );
}

/** One sample per key (first-seen order), with the median of the key's seconds. */
function medians<T extends { readonly seconds: number }>(xs: readonly T[], key: (x: T) => string): T[] {
  const groups = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [x]);
    else g.push(x);
  }
  return [...groups.values()].map((g) => {
    const sorted = g.map((x) => x.seconds).sort((a, b) => a - b);
    const m = sorted.length >> 1;
    const seconds = sorted.length % 2 === 1 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
    return { ...g[0]!, seconds };
  });
}

function quality(pairs: readonly (readonly [predicted: number, measured: number])[]): FitQuality {
  const rel = pairs.map(([p, m]) => Math.abs(p - m) / Math.max(Math.abs(m), 1e-9));
  return {
    samples: pairs.length,
    meanRelativeError: rel.reduce((a, b) => a + b, 0) / Math.max(1, rel.length),
    maxRelativeError: rel.length > 0 ? Math.max(...rel) : 0,
  };
}

/**
 * Non-negative least squares for a handful of features: the best unconstrained least-squares fit over every
 * subset of the features whose coefficients are all ≥ 0 (exact, and cheap for up to ~6 features).
 */
export function nnls(rows: readonly (readonly number[])[], y: readonly number[]): number[] {
  const k = rows[0]?.length ?? 0;
  if (k === 0 || k > 10) throw new RangeError(`nnls takes 1 to 10 features, got ${k}`);
  let best: number[] = new Array<number>(k).fill(0);
  let bestSse = y.reduce((a, v) => a + v * v, 0);
  for (let mask = 1; mask < 1 << k; mask++) {
    const cols: number[] = [];
    for (let j = 0; j < k; j++) if (mask & (1 << j)) cols.push(j);
    const coef = leastSquares(
      rows.map((r) => cols.map((j) => r[j]!)),
      y,
    );
    if (coef === undefined || coef.some((c) => c < 0)) continue;
    const full = new Array<number>(k).fill(0);
    cols.forEach((j, i) => (full[j] = coef[i]!));
    let sse = 0;
    rows.forEach((r, i) => {
      let p = 0;
      for (let j = 0; j < k; j++) p += r[j]! * full[j]!;
      sse += (p - y[i]!) ** 2;
    });
    if (sse < bestSse - 1e-18) {
      bestSse = sse;
      best = full;
    }
  }
  return best;
}

/** Ordinary least squares via the normal equations on max-scaled columns; undefined when singular. */
function leastSquares(x: readonly (readonly number[])[], y: readonly number[]): number[] | undefined {
  const k = x[0]!.length;
  const scale = Array.from({ length: k }, (_, j) => Math.max(...x.map((r) => Math.abs(r[j]!))) || 1);
  const a = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
  x.forEach((r, i) => {
    for (let p = 0; p < k; p++) {
      const rp = r[p]! / scale[p]!;
      for (let q = 0; q < k; q++) a[p]![q]! += rp * (r[q]! / scale[q]!);
      a[p]![k]! += rp * y[i]!;
    }
  });
  for (let c = 0; c < k; c++) {
    let piv = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[piv]![c]!)) piv = r;
    if (Math.abs(a[piv]![c]!) < 1e-12) return undefined;
    [a[c], a[piv]] = [a[piv]!, a[c]!];
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = a[r]![c]! / a[c]![c]!;
      for (let q = c; q <= k; q++) a[r]![q]! -= f * a[c]![q]!;
    }
  }
  return Array.from({ length: k }, (_, j) => a[j]![k]! / a[j]![j]! / scale[j]!);
}

/** What `pdserve calibrate` writes: the fitted model, how it was measured, and the samples themselves. */
export interface CalibrationFile {
  readonly version: 1;
  readonly kind: 'pdserve-cost-model';
  readonly model: string;
  /** ISO time of the measurement. */
  readonly measuredAt: string;
  readonly machine: string;
  /** The engine configuration measured; the simulator uses these limits unless told otherwise. */
  readonly engine: EngineLimits & { readonly blockSize: number; readonly threads: number; readonly executionProvider: string };
  /**
   * Engine steps this host runs at once at full speed: n × (one engine's time) / (n engines' time together)
   * for the same prefill on n engines in one process; null when not measured. The simulator's `sharedHost`.
   */
  readonly hostParallelism: { readonly engines: number; readonly parallelism: number } | null;
  readonly cost: CostModel;
  readonly quality: Calibration['quality'];
  readonly samples: CalibrationSamples;
}

/**
 * A cost model from a file's text: a calibration file (its `cost`, and its engine limits), or a bare, possibly
 * partial, cost model object. Throws RangeError naming the file when neither.
 */
export function parseCostModel(
  text: string,
  source = '<cost model>',
): { readonly cost: CostModel; readonly engine: Partial<EngineLimits> | null; readonly hostParallelism: number | null } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RangeError(`${source}: not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RangeError(`${source}: expected a JSON object`);
  const o = v as Record<string, unknown>;
  const isFile = o['kind'] === 'pdserve-cost-model';
  const raw = isFile ? o['cost'] : o;
  if (typeof raw !== 'object' || raw === null) throw new RangeError(`${source}: 'cost' must be an object`);
  let cost: CostModel;
  try {
    cost = costModelOf(raw as Partial<CostModel>);
  } catch (err) {
    throw new RangeError(`${source}: ${(err as Error).message}`);
  }
  const hp = isFile ? (o['hostParallelism'] as { parallelism?: unknown } | null | undefined) : undefined;
  const hostParallelism = typeof hp?.parallelism === 'number' && hp.parallelism > 0 ? hp.parallelism : null;
  const e = isFile && typeof o['engine'] === 'object' && o['engine'] !== null ? (o['engine'] as Record<string, unknown>) : undefined;
  if (e === undefined) return { cost, engine: null, hostParallelism };
  const engine: { -readonly [K in keyof EngineLimits]?: number } = {};
  for (const k of ['maxRunning', 'maxBatchTokens', 'prefillChunkTokens'] as const) {
    const x = e[k];
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0) engine[k] = x;
  }
  return { cost, engine, hostParallelism };
}
