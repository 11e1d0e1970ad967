import type { JsonObject } from './json';
import { DEFAULT_TOKEN_RANGE, type TokenRange } from './prompts';
import { WORKLOAD_DEFAULTS, type SyntheticWorkload, type WorkloadShape } from './workloads';

export type WorkloadSpec = SyntheticWorkload | { readonly trace: string };
export type Endpoint = 'completions' | 'chat';

/**
 * What `runBench` does. Only `url`, `model` and `workload` are required. Arrivals: `rate` gives Poisson
 * arrivals (Infinity: all at once); without `rate`, a trace keeps its own timestamps (× `timeScale`) and a
 * synthetic workload sends everything at once. `concurrency` caps requests in flight (alone, with no rate:
 * a closed loop). The run ends after `requests` requests or `durationSec` seconds of dispatching,
 * whichever comes first; requests already sent are awaited.
 */
export interface BenchOptions {
  /** Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted). */
  readonly url: string;
  readonly model: string;
  readonly workload: WorkloadSpec;
  /** Default `completions`. */
  readonly endpoint?: Endpoint;
  /**
   * Completions only: send prompts as token-id arrays (exact lengths) rather than text. Default true for
   * completions; chat always sends text (one word per token id, so lengths are approximate).
   */
  readonly tokenIds?: boolean;
  /** Requests per second, Poisson arrivals seeded by `seed`. Infinity: all at once. */
  readonly rate?: number;
  /** Maximum requests in flight. Default unlimited. */
  readonly concurrency?: number;
  /** Requests to send. Default: the whole trace, or 100 for synthetic workloads without `durationSec`. */
  readonly requests?: number;
  /** Stop dispatching after this many seconds. */
  readonly durationSec?: number;
  /** Seeds prompts, lengths and arrivals. Default 0. */
  readonly seed?: number;
  /** Goodput counts requests with TTFT ≤ this (ms). */
  readonly sloTtftMs?: number;
  /** Goodput counts requests with TPOT ≤ this (ms). */
  readonly sloTpotMs?: number;
  // Synthetic workload shape (token counts); defaults per workload in WORKLOAD_DEFAULTS.
  /** random: mean prompt length; shared-prefix: unique suffix; multi-turn: user tokens per turn. */
  readonly inputLen?: number;
  /** max_tokens (random: the mean). For traces: a cap on the scaled output lengths. */
  readonly maxTokens?: number;
  /** shared-prefix: shared system prompt length; multi-turn: each session's system prompt length. */
  readonly prefixLen?: number;
  /** shared-prefix / multi-turn: number of distinct system prompts. */
  readonly numPrefixes?: number;
  /** multi-turn: sessions in flight together. */
  readonly sessions?: number;
  /** multi-turn: turns per session. */
  readonly turns?: number;
  /** random: lengths uniform in [len × (1 − r), len × (1 + r)]. */
  readonly rangeRatio?: number;
  /** Token ids of synthetic prompts are drawn from [min, max). Default [100, 30000). */
  readonly tokenRange?: TokenRange;
  // Trace replay; see TraceReplayOptions.
  /** Trace arrival times × this (0.1 = 10× faster). Default 1. */
  readonly timeScale?: number;
  /** Tokens per trace hash-id block in the replay (prompt lengths scale by blockScale / 512). Default 512. */
  readonly blockScale?: number;
  /** Trace output lengths × this. Default 1. */
  readonly lengthScale?: number;
  /** Trace prompts are cut to this many tokens (a prefix). Default: no limit. */
  readonly maxInputLen?: number;
  /** Tokens per hash id in the trace file. Default 512. */
  readonly traceBlockSize?: number;
  // Request details.
  /** Send `ignore_eos: true` so that every request generates max_tokens (pdserve and vLLM accept it). */
  readonly ignoreEos?: boolean;
  /** Default 0 (greedy). */
  readonly temperature?: number;
  /** Merged into every request body (e.g. `{ "top_k": 5 }`). */
  readonly extraBody?: JsonObject;
  /** Sent as `Authorization: Bearer …`; never written to the report. */
  readonly apiKey?: string;
  /** Per-request timeout in seconds. Default 600. */
  readonly requestTimeoutSec?: number;
  /** Aborts the run: in-flight requests are cancelled and the report covers what finished. */
  readonly signal?: AbortSignal;
}

/** The options as run (defaults filled in), as written to the report; no signal and no API key. */
export interface ResolvedOptions {
  readonly url: string;
  readonly model: string;
  readonly workload: WorkloadSpec;
  readonly endpoint: Endpoint;
  readonly tokenIds: boolean;
  /** null: the trace's own timestamps, or all at once for synthetic workloads; 'inf': all at once. */
  readonly rate: number | 'inf' | null;
  readonly concurrency: number | null;
  readonly requests: number | null;
  readonly durationSec: number | null;
  readonly seed: number;
  readonly sloTtftMs: number | null;
  readonly sloTpotMs: number | null;
  /** Synthetic workloads only; null for traces. */
  readonly shape: WorkloadShape | null;
  readonly trace: {
    readonly timeScale: number;
    readonly blockScale: number | null;
    readonly lengthScale: number;
    readonly maxInputLen: number | null;
    readonly maxTokens: number | null;
    readonly traceBlockSize: number;
  } | null;
  readonly tokenRange: TokenRange;
  readonly ignoreEos: boolean;
  readonly temperature: number;
  readonly extraBody: JsonObject;
  readonly requestTimeoutSec: number;
}

/** Requests sent when neither `requests` nor `durationSec` is given (synthetic workloads). */
export const DEFAULT_REQUESTS = 100;

export function resolveOptions(o: BenchOptions): ResolvedOptions {
  const endpoint = o.endpoint ?? 'completions';
  if (endpoint !== 'completions' && endpoint !== 'chat')
    throw new RangeError(`endpoint must be 'completions' or 'chat', got ${String(endpoint)}`);
  if (endpoint === 'chat' && o.tokenIds === true) throw new RangeError('tokenIds needs the completions endpoint (chat takes text)');
  let url: URL;
  try {
    url = new URL(o.url);
  } catch {
    throw new RangeError(`url must be an http(s) URL, got ${JSON.stringify(o.url)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`url must be http(s), got ${o.url}`);
  if (typeof o.model !== 'string' || o.model === '') throw new RangeError('model is required');
  optional('rate', o.rate, (x) => x > 0, 'a positive number (Infinity: all at once)');
  optional('concurrency', o.concurrency, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  optional('requests', o.requests, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  optional('durationSec', o.durationSec, (x) => x > 0 && Number.isFinite(x), 'a positive number');
  optional('sloTtftMs', o.sloTtftMs, (x) => x > 0, 'a positive number');
  optional('sloTpotMs', o.sloTpotMs, (x) => x > 0, 'a positive number');
  optional('requestTimeoutSec', o.requestTimeoutSec, (x) => x > 0, 'a positive number');
  optional('seed', o.seed, (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer');

  const r = o.tokenRange ?? DEFAULT_TOKEN_RANGE;
  if (!Number.isInteger(r.min) || !Number.isInteger(r.max) || r.min < 0 || r.max <= r.min) {
    throw new RangeError(`tokenRange must be integers with 0 ≤ min < max, got [${r.min}, ${r.max})`);
  }
  const isTrace = typeof o.workload === 'object';
  if (!isTrace && !(o.workload in WORKLOAD_DEFAULTS)) {
    throw new RangeError(`workload must be shared-prefix, multi-turn, random or { trace: path }, got ${JSON.stringify(o.workload)}`);
  }
  const requests = o.requests ?? (isTrace || o.durationSec !== undefined ? undefined : DEFAULT_REQUESTS);
  const finiteRate = o.rate !== undefined && Number.isFinite(o.rate);
  if (requests === undefined && !isTrace && !finiteRate && o.concurrency === undefined) {
    throw new RangeError('durationSec without requests needs a finite rate or a concurrency (else nothing bounds the requests in flight)');
  }
  return {
    url: o.url,
    model: o.model,
    workload: o.workload,
    endpoint,
    tokenIds: endpoint === 'completions' && (o.tokenIds ?? true),
    rate: o.rate === undefined ? null : Number.isFinite(o.rate) ? o.rate : 'inf',
    concurrency: o.concurrency ?? null,
    requests: requests ?? null,
    durationSec: o.durationSec ?? null,
    seed: o.seed ?? 0,
    sloTtftMs: o.sloTtftMs ?? null,
    sloTpotMs: o.sloTpotMs ?? null,
    shape: isTrace ? null : shapeOf(o, o.workload as SyntheticWorkload),
    trace: isTrace
      ? {
          timeScale: o.timeScale ?? 1,
          blockScale: o.blockScale ?? null,
          lengthScale: o.lengthScale ?? 1,
          maxInputLen: o.maxInputLen ?? null,
          maxTokens: o.maxTokens ?? null,
          traceBlockSize: o.traceBlockSize ?? 512,
        }
      : null,
    tokenRange: o.tokenRange ?? DEFAULT_TOKEN_RANGE,
    ignoreEos: o.ignoreEos ?? false,
    temperature: o.temperature ?? 0,
    extraBody: o.extraBody ?? {},
    requestTimeoutSec: o.requestTimeoutSec ?? 600,
  };
}

function shapeOf(o: BenchOptions, kind: SyntheticWorkload): WorkloadShape {
  const d = WORKLOAD_DEFAULTS[kind];
  const shape: WorkloadShape = {
    inputLen: o.inputLen ?? d.inputLen,
    maxTokens: o.maxTokens ?? d.maxTokens,
    prefixLen: o.prefixLen ?? d.prefixLen,
    numPrefixes: o.numPrefixes ?? d.numPrefixes,
    sessions: o.sessions ?? d.sessions,
    turns: o.turns ?? d.turns,
    rangeRatio: o.rangeRatio ?? d.rangeRatio,
    tokenRange: o.tokenRange ?? DEFAULT_TOKEN_RANGE,
  };
  for (const k of ['inputLen', 'maxTokens', 'numPrefixes', 'sessions', 'turns'] as const) {
    if (!Number.isInteger(shape[k]) || shape[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${shape[k]}`);
  }
  if (!Number.isInteger(shape.prefixLen) || shape.prefixLen < 0)
    throw new RangeError(`prefixLen must be an integer ≥ 0, got ${shape.prefixLen}`);
  if (!(shape.rangeRatio >= 0 && shape.rangeRatio < 1)) throw new RangeError(`rangeRatio must be in [0, 1), got ${shape.rangeRatio}`);
  return shape;
}

function optional(name: string, x: number | undefined, ok: (x: number) => boolean, what: string): void {
  if (x !== undefined && (typeof x !== 'number' || Number.isNaN(x) || !ok(x))) throw new RangeError(`${name} must be ${what}, got ${x}`);
}
