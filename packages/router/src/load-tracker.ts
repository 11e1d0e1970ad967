import type { LoadReport } from './types';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A worker's load as the router should see it: the last report plus work routed since then. */
export interface WorkerLoad {
  readonly running: number;
  readonly waiting: number;
  readonly freeBlocks: number;
  readonly totalBlocks: number;
  readonly queuedPrefillTokens: number;
  /** Gateway clock time the last report was received, ms; undefined when none has arrived yet. */
  readonly receivedAt: number | undefined;
  /** Requests routed here since the last report (already included in `running` and `queuedPrefillTokens`). */
  readonly inFlight: number;
}

/** Optimistic accounting for one routed request that no report reflects yet. */
export interface InFlightWork {
  /** Prompt tokens this worker will have to prefill for the request. */
  readonly prefillTokens: number;
  /** Sequences the request adds to the running batch (1 on the decode worker, 0 on a remote prefill worker). */
  readonly running: number;
}

export interface LoadTrackerOptions {
  /** Time source in ms; injectable for tests. Default `Date.now`. */
  readonly clock?: () => number;
}

interface Entry {
  report: LoadReport | undefined;
  receivedAt: number | undefined;
  inFlight: number;
  inFlightTokens: number;
  inFlightRunning: number;
  /** The merged view, updated in place so that routing can hold it across calls and allocate nothing. */
  readonly view: Mutable<WorkerLoad>;
}

/** A worker nobody has heard from: no load, no capacity known (so it is never judged out of blocks). */
export const UNKNOWN_LOAD: WorkerLoad = {
  running: 0,
  waiting: 0,
  freeBlocks: 0,
  totalBlocks: 0,
  queuedPrefillTokens: 0,
  receivedAt: undefined,
  inFlight: 0,
};

/**
 * Latest load report per worker, plus in-flight work the gateway routed after that report. The next report
 * from a worker clears its in-flight work: reports are frequent (every few hundred ms), so a report that
 * arrives just before a request is admitted under-counts one request for one period, which is harmless.
 * Views are live: a `WorkerLoad` returned here changes when the worker reports (copy it to keep a value).
 */
export class LoadTracker {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: () => number;
  /** Bumped when an entry (and so its live view) is dropped. */
  private version = 0;
  private readonly viewsMemo = new WeakMap<readonly { readonly id: string }[], { version: number; views: readonly WorkerLoad[] }>();

  constructor(opts: LoadTrackerOptions = {}) {
    this.clock = opts.clock ?? Date.now;
  }

  report(r: LoadReport): void {
    const e = this.entry(r.worker);
    e.report = r;
    e.receivedAt = this.clock();
    e.inFlight = 0;
    e.inFlightTokens = 0;
    e.inFlightRunning = 0;
    merge(e);
  }

  addInFlight(worker: string, work: InFlightWork): void {
    const e = this.entry(worker);
    e.inFlight += 1;
    e.inFlightTokens += work.prefillTokens;
    e.inFlightRunning += work.running;
    merge(e);
  }

  /** Takes back work added for a request that never went (refused at admission); never below nothing. */
  removeInFlight(worker: string, work: InFlightWork): void {
    const e = this.entries.get(worker);
    if (e === undefined) return;
    e.inFlight = Math.max(0, e.inFlight - 1);
    e.inFlightTokens = Math.max(0, e.inFlightTokens - work.prefillTokens);
    e.inFlightRunning = Math.max(0, e.inFlightRunning - work.running);
    merge(e);
  }

  get(worker: string): WorkerLoad {
    return this.entries.get(worker)?.view ?? UNKNOWN_LOAD;
  }

  /** Ms since the last report arrived; `Infinity` if none has. */
  ageMs(worker: string): number {
    const at = this.entries.get(worker)?.receivedAt;
    return at === undefined ? Infinity : this.clock() - at;
  }

  /**
   * Live views of `workers`' loads, aligned with the array. Memoised on the array's identity, so pass the
   * same array while membership is unchanged (the Router does) and the routing path does no lookups.
   */
  viewsFor(workers: readonly { readonly id: string }[]): readonly WorkerLoad[] {
    const memo = this.viewsMemo.get(workers);
    if (memo !== undefined && memo.version === this.version) return memo.views;
    const views = workers.map((w) => this.entry(w.id).view);
    this.viewsMemo.set(workers, { version: this.version, views });
    return views;
  }

  removeWorker(worker: string): void {
    if (this.entries.delete(worker)) this.version++;
  }

  private entry(worker: string): Entry {
    let e = this.entries.get(worker);
    if (!e) {
      const view = { ...UNKNOWN_LOAD };
      e = { report: undefined, receivedAt: undefined, inFlight: 0, inFlightTokens: 0, inFlightRunning: 0, view };
      this.entries.set(worker, e);
    }
    return e;
  }
}

function merge(e: Entry): void {
  const r = e.report;
  const v = e.view;
  v.running = (r?.running ?? 0) + e.inFlightRunning;
  v.waiting = r?.waiting ?? 0;
  v.freeBlocks = r?.freeBlocks ?? 0;
  v.totalBlocks = r?.totalBlocks ?? 0;
  v.queuedPrefillTokens = (r?.queuedPrefillTokens ?? 0) + e.inFlightTokens;
  v.receivedAt = e.receivedAt;
  v.inFlight = e.inFlight;
}
