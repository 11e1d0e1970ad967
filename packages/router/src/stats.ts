import type { RoutingDecision } from './decision';
import type { LocalPrefillReason } from './disaggregation';
import type { Tier, WorkerRole } from './types';

/** Counters since the router started; plain data for the metrics layer to export. */
export interface RouterStats {
  readonly decisions: number;
  /** Requests refused because no decode-capable worker was live. */
  readonly noCandidate: number;
  readonly byPolicy: Readonly<Record<string, number>>;
  /** Decisions by the chosen decode worker's role. */
  readonly byDecodeRole: Readonly<Record<WorkerRole, number>>;
  readonly byPrefill: { readonly local: number; readonly remote: number };
  readonly localPrefillReasons: Readonly<Record<LocalPrefillReason, number>>;
  /** Per worker: times chosen to decode, and to prefill (a local prefill counts for the decode worker). */
  readonly byWorker: Readonly<Record<string, { readonly decode: number; readonly prefill: number }>>;
  /** Prompt blocks asked for, over all decisions. */
  readonly prefixRequestedBlocks: number;
  /** Of those, blocks reusable on the worker that prefills; hit rate = matched / requested. */
  readonly prefixMatchedBlocks: number;
  readonly prefixMatchedByTier: Readonly<Record<Tier, number>>;
}

export class RouterStatsCounter {
  private decisions = 0;
  private noCandidate = 0;
  private readonly byPolicy = new Map<string, number>();
  private readonly byDecodeRole: Record<WorkerRole, number> = { prefill: 0, decode: 0, mixed: 0 };
  private readonly byPrefill = { local: 0, remote: 0 };
  private readonly localReasons: Record<LocalPrefillReason, number> = {
    'mixed-worker': 0,
    'short-uncached-suffix': 0,
    'no-prefill-worker': 0,
    'prefill-pool-busy': 0,
  };
  private readonly byWorker = new Map<string, { decode: number; prefill: number }>();
  private requested = 0;
  private matched = 0;
  private readonly byTier: Record<Tier, number> = { device: 0, host: 0, disk: 0, store: 0 };

  record(d: RoutingDecision): void {
    this.decisions++;
    this.byPolicy.set(d.policy, (this.byPolicy.get(d.policy) ?? 0) + 1);
    this.byDecodeRole[d.decodeRole]++;
    this.worker(d.decodeWorker).decode++;
    if (d.prefill.prefill === 'local') {
      this.byPrefill.local++;
      this.localReasons[d.prefill.reason]++;
      this.worker(d.decodeWorker).prefill++;
    } else {
      this.byPrefill.remote++;
      this.worker(d.prefill.worker).prefill++;
    }
    const p = d.prefillPrefix;
    this.requested += d.requestedBlocks;
    this.matched += p.blocks;
    this.byTier.device += p.device;
    this.byTier.host += p.host;
    this.byTier.disk += p.disk;
    this.byTier.store += p.store;
  }

  recordNoCandidate(): void {
    this.noCandidate++;
  }

  snapshot(): RouterStats {
    // fromEntries defines own properties, so any worker id (even "__proto__") is a plain key.
    const byWorker = Object.fromEntries([...this.byWorker].map(([id, c]) => [id, { ...c }]));
    return {
      decisions: this.decisions,
      noCandidate: this.noCandidate,
      byPolicy: Object.fromEntries(this.byPolicy),
      byDecodeRole: { ...this.byDecodeRole },
      byPrefill: { ...this.byPrefill },
      localPrefillReasons: { ...this.localReasons },
      byWorker,
      prefixRequestedBlocks: this.requested,
      prefixMatchedBlocks: this.matched,
      prefixMatchedByTier: { ...this.byTier },
    };
  }

  private worker(id: string): { decode: number; prefill: number } {
    let c = this.byWorker.get(id);
    if (!c) {
      c = { decode: 0, prefill: 0 };
      this.byWorker.set(id, c);
    }
    return c;
  }
}
