import type { RequestRecord } from './client';
import type { ResolvedOptions } from './options';
import { summarize, type Summary } from './stats';

/** The result of a run; plain JSON (the CLI's --output writes it whole). */
export interface BenchReport {
  readonly version: 1;
  readonly options: ResolvedOptions;
  /** ISO time the run started. */
  readonly startedAt: string;
  /** From the start to the last response, seconds; the denominator of every rate below. */
  readonly durationSec: number;
  /** The run was cancelled by its signal. */
  readonly aborted: boolean;
  readonly counts: {
    readonly sent: number;
    readonly completed: number;
    readonly failed: number;
    /** Failures by HTTP status; 'stream' (error mid-stream), 'timeout', 'aborted' or 'network' (no response). */
    readonly failedByStatus: Readonly<Record<string, number>>;
  };
  readonly throughput: {
    readonly requestsPerSec: number;
    readonly inputTokensPerSec: number;
    readonly outputTokensPerSec: number;
    readonly totalTokensPerSec: number;
  };
  /** Over completed requests. */
  readonly tokens: { readonly input: number; readonly output: number; readonly cached: number };
  readonly latencyMs: { readonly ttft: Summary; readonly tpot: Summary; readonly itl: Summary; readonly e2e: Summary };
  /** Completed requests meeting every SLO given; null when no SLO was given. */
  readonly goodput: {
    readonly sloTtftMs: number | null;
    readonly sloTpotMs: number | null;
    readonly met: number;
    readonly requestsPerSec: number;
    /** met / sent. */
    readonly fraction: number;
  } | null;
  /** cached / prompt tokens over completed requests that reported cached_tokens; null when none did. */
  readonly prefixCache: {
    readonly hitRate: number | null;
    readonly cachedTokens: number;
    readonly promptTokens: number;
    readonly reporting: number;
  };
  readonly requests: readonly RequestRecord[];
}

export function buildReport(
  options: ResolvedOptions,
  records: readonly RequestRecord[],
  startedAt: string,
  durationSec: number,
  aborted: boolean,
): BenchReport {
  const sorted = [...records].sort((a, b) => a.index - b.index);
  const ok = sorted.filter((r) => r.success);
  const failedByStatus: Record<string, number> = {};
  for (const r of sorted) {
    if (r.success) continue;
    const key = failureKind(r);
    failedByStatus[key] = (failedByStatus[key] ?? 0) + 1;
  }
  let input = 0;
  let output = 0;
  let cached = 0;
  let promptOfReporting = 0;
  let reporting = 0;
  const itl: number[] = [];
  for (const r of ok) {
    input += r.promptTokens;
    output += r.outputTokens;
    for (const x of r.itlMs) itl.push(x);
    if (r.cachedTokens !== null) {
      cached += r.cachedTokens;
      promptOfReporting += r.promptTokens;
      reporting++;
    }
  }
  const per = (x: number): number => (durationSec > 0 ? x / durationSec : 0);
  const values = (f: (r: RequestRecord) => number | null): number[] => ok.map(f).filter((x): x is number => x !== null);
  return {
    version: 1,
    options,
    startedAt,
    durationSec,
    aborted,
    counts: { sent: sorted.length, completed: ok.length, failed: sorted.length - ok.length, failedByStatus },
    throughput: {
      requestsPerSec: per(ok.length),
      inputTokensPerSec: per(input),
      outputTokensPerSec: per(output),
      totalTokensPerSec: per(input + output),
    },
    tokens: { input, output, cached },
    latencyMs: {
      ttft: summarize(values((r) => r.ttftMs)),
      tpot: summarize(values((r) => r.tpotMs)),
      itl: summarize(itl),
      e2e: summarize(values((r) => r.e2eMs)),
    },
    goodput: goodputOf(options, ok, sorted.length, per),
    prefixCache: {
      hitRate: promptOfReporting > 0 ? cached / promptOfReporting : null,
      cachedTokens: cached,
      promptTokens: promptOfReporting,
      reporting,
    },
    requests: sorted,
  };
}

function goodputOf(o: ResolvedOptions, ok: readonly RequestRecord[], sent: number, per: (x: number) => number): BenchReport['goodput'] {
  if (o.sloTtftMs === null && o.sloTpotMs === null) return null;
  // A request with one output token has no TPOT and meets any TPOT SLO.
  const meets = (r: RequestRecord): boolean =>
    (o.sloTtftMs === null || (r.ttftMs !== null && r.ttftMs <= o.sloTtftMs)) &&
    (o.sloTpotMs === null || r.tpotMs === null || r.tpotMs <= o.sloTpotMs);
  const met = ok.filter(meets).length;
  return { sloTtftMs: o.sloTtftMs, sloTpotMs: o.sloTpotMs, met, requestsPerSec: per(met), fraction: sent > 0 ? met / sent : 0 };
}

function failureKind(r: RequestRecord): string {
  if (r.status !== null && r.status !== 200) return String(r.status);
  if (r.status === 200) return 'stream';
  if (r.error === 'aborted') return 'aborted';
  return r.error?.startsWith('timed out') === true ? 'timeout' : 'network';
}
