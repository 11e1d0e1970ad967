// The cluster as an operator sees it: every worker and kv-store node of this gateway's model with its
// health, load, KV usage and prefix hit rate. Three stages, each testable alone: a StatusSource says what
// the gateway knows (registry, router), probes ask each node over gRPC, assembleStatus joins them into one
// plain value that /status.json serves and /status draws.
import type { ControlPlane, ServiceRecord } from '@pdserve/control-plane';
import { KvStoreClient, type StoreStatsResponseMsg, type TierStatsMsg } from '@pdserve/kv-store/client';
import type { Router, RouterStats } from '@pdserve/router';
import type { TlsMaterial } from '@pdserve/rpc';
import { WorkerClient, type StatsResponseMsg } from '@pdserve/worker/client';
import type { ClusterView } from './cluster-view';

/** Longest wait for one node's answers, ms: past it the node shows as unreachable on this refresh. */
export const STATUS_PROBE_TIMEOUT_MS = 1_500;

export type NodeHealth = 'serving' | 'draining' | 'unreachable';

export interface WorkerStatus {
  readonly id: string;
  readonly role: 'prefill' | 'decode' | 'mixed';
  /** gRPC address (as registered). */
  readonly address: string;
  readonly adminAddress: string;
  readonly incarnation: string;
  /** ISO time the process started. */
  readonly startedAt: string;
  /** The router routes to this incarnation now (false: registered, but not, or not yet, a candidate). */
  readonly routed: boolean;
  /** The worker's own answer to Health; 'unreachable' when it did not answer in time. */
  readonly health: NodeHealth;
  /** Why it is unreachable. */
  readonly error: string | null;
  /** From the worker's Stats (null when unreachable). */
  readonly running: number | null;
  readonly waiting: number | null;
  readonly kv: {
    /** Blocks held by running sequences. */
    readonly usedBlocks: number;
    /** Free blocks still holding a cached prefix. */
    readonly cachedBlocks: number;
    readonly totalBlocks: number;
    /** usedBlocks / totalBlocks; null with no blocks. */
    readonly usage: number | null;
  } | null;
  /** Prompt tokens served from the worker's prefix cache, of those looked up. */
  readonly prefixCache: { readonly hitTokens: number; readonly queryTokens: number; readonly hitRate: number | null } | null;
  /** Age of the newest load report the router has from it, ms; null when none arrived. */
  readonly loadReportAgeMs: number | null;
  /** Times the router chose it since the gateway started. */
  readonly picks: { readonly decode: number; readonly prefill: number };
}

export interface StoreTierStatus {
  readonly tier: 'memory' | 'disk';
  readonly blocks: number;
  readonly usedBytes: number;
  readonly capacityBytes: number;
  /** usedBytes / capacityBytes; null with no capacity. */
  readonly usage: number | null;
  readonly hits: number;
  readonly misses: number;
  /** hits / (hits + misses); null before any lookup. */
  readonly hitRate: number | null;
  readonly evictions: number;
}

export interface StoreNodeStatus {
  readonly id: string;
  readonly address: string;
  readonly incarnation: string;
  readonly startedAt: string;
  readonly health: NodeHealth;
  readonly error: string | null;
  /** Its tiers (memory, then disk if it has one); empty when unreachable. */
  readonly tiers: readonly StoreTierStatus[];
  readonly activeLeases: number | null;
  readonly activePins: number | null;
}

/** What /status.json answers. */
export interface ClusterStatus {
  readonly object: 'pdserve.status';
  /** ISO time this status was assembled. */
  readonly generatedAt: string;
  readonly model: string;
  readonly gateway: {
    /** The gateway serves completions now (its /ready). */
    readonly ready: boolean;
    readonly routing: {
      readonly decisions: number;
      /** Requests refused for want of a decode worker. */
      readonly noCandidate: number;
      /** Prompt blocks reusable where they were prefilled, of those routed (the router's estimate). */
      readonly prefixHitRate: number | null;
      readonly byPolicy: Readonly<Record<string, number>>;
    };
  };
  readonly workers: readonly WorkerStatus[];
  readonly kvStores: readonly StoreNodeStatus[];
}

/**
 * What the status page reads from the gateway. The one place that knows where each fact lives: when the
 * cluster view or router change shape, clusterStatusSource changes and nothing else here does.
 */
export interface StatusSource {
  readonly model: string;
  /** Every instance in the service registry now. */
  members(): Promise<readonly ServiceRecord[]>;
  /** Whether the router has this incarnation of the worker among its candidates. */
  isRouted(record: ServiceRecord): boolean;
  /** Ms since the router's last load report from the worker; undefined when none arrived. */
  loadReportAgeMs(id: string): number | undefined;
  routerStats(): RouterStats;
  ready(): boolean;
}

export function clusterStatusSource(opts: {
  readonly model: string;
  readonly controlPlane: ControlPlane;
  readonly view: () => ClusterView | undefined;
  readonly router: Router;
  readonly ready: () => boolean;
}): StatusSource {
  return {
    model: opts.model,
    members: () => opts.controlPlane.registry.list(),
    isRouted: (r) => opts.view()?.record(r.id)?.incarnation === r.incarnation,
    loadReportAgeMs: (id) => {
      const age = opts.router.loadAgeMs(id);
      return Number.isFinite(age) ? age : undefined;
    },
    routerStats: () => opts.router.stats(),
    ready: opts.ready,
  };
}

/** One node's answers; `error` when it gave none in time. */
export type Probe<T> =
  | { readonly health: 'serving' | 'draining'; readonly stats: T }
  | { readonly health: 'unreachable'; readonly error: string };

export interface StatusProbes {
  worker(record: ServiceRecord): Promise<Probe<StatsResponseMsg>>;
  store(record: ServiceRecord): Promise<Probe<StoreStatsResponseMsg>>;
  /** Closes clients of nodes not in `live` (addresses). */
  retain(live: ReadonlySet<string>): void;
  close(): void;
}

/** Probes over gRPC: Health and Stats of each node, on clients kept per address across refreshes. */
export class GrpcStatusProbes implements StatusProbes {
  private readonly workers = new Map<string, WorkerClient>();
  private readonly stores = new Map<string, KvStoreClient>();
  private closed = false;

  constructor(
    private readonly timeoutMs = STATUS_PROBE_TIMEOUT_MS,
    private readonly tls?: TlsMaterial,
  ) {}

  worker(record: ServiceRecord): Promise<Probe<StatsResponseMsg>> {
    return this.probe(() => {
      const c = clientFor(this.workers, record.grpcAddress, (a) => new WorkerClient(a, this.tls));
      return [c.health(this.timeoutMs), c.stats()];
    });
  }

  store(record: ServiceRecord): Promise<Probe<StoreStatsResponseMsg>> {
    return this.probe(() => {
      const c = clientFor(this.stores, record.grpcAddress, (a) => new KvStoreClient(a, this.tls));
      return [c.health(this.timeoutMs), c.stats()];
    });
  }

  retain(live: ReadonlySet<string>): void {
    for (const pool of [this.workers, this.stores] as Map<string, { close(): void }>[]) {
      for (const [address, c] of pool) {
        if (live.has(address)) continue;
        c.close();
        pool.delete(address);
      }
    }
  }

  close(): void {
    this.closed = true;
    this.retain(new Set());
  }

  /** Health and Stats together; a node that fails either, or is slow, is unreachable for this refresh. */
  private async probe<T>(call: () => [Promise<{ readonly status: string }>, Promise<T>]): Promise<Probe<T>> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    let calls: [Promise<{ readonly status: string }>, Promise<T>] | undefined;
    try {
      // A collection still running when the gateway closes must not open new channels.
      if (this.closed) throw new Error('the gateway is closing');
      // A registered address the client cannot even parse is the node's problem, not the page's.
      calls = call();
      const [h, s] = await Promise.race([Promise.all(calls), late]);
      return { health: h.status === 'draining' ? 'draining' : 'serving', stats: s };
    } catch (err) {
      for (const c of calls ?? []) c.catch(() => undefined);
      return { health: 'unreachable', error: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}

function clientFor<C>(pool: Map<string, C>, address: string, make: (address: string) => C): C {
  let c = pool.get(address);
  if (c === undefined) {
    c = make(address);
    pool.set(address, c);
  }
  return c;
}

const WORKER_ROLES: readonly string[] = ['prefill', 'decode', 'mixed'];

/** The registry's records this gateway cares about: workers of its model, kv-stores serving it (or any). */
export function relevantMembers(model: string, members: readonly ServiceRecord[]): { workers: ServiceRecord[]; stores: ServiceRecord[] } {
  const byId = (a: ServiceRecord, b: ServiceRecord): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return {
    workers: members.filter((r) => WORKER_ROLES.includes(r.role) && r.model === model).sort(byId),
    stores: members.filter((r) => r.role === 'kv-store' && (r.model === '*' || r.model === model)).sort(byId),
  };
}

/** Asks the source and every node, then assembles. Nodes are probed in parallel; none can fail the whole. */
export async function collectStatus(source: StatusSource, probes: StatusProbes, now: () => number = Date.now): Promise<ClusterStatus> {
  const { workers, stores } = relevantMembers(source.model, await source.members());
  probes.retain(new Set([...workers, ...stores].map((r) => r.grpcAddress)));
  const [workerProbes, storeProbes] = await Promise.all([
    Promise.all(workers.map((r) => probes.worker(r))),
    Promise.all(stores.map((r) => probes.store(r))),
  ]);
  return assembleStatus({
    model: source.model,
    now: now(),
    ready: source.ready(),
    routerStats: source.routerStats(),
    workers: workers.map((record, i) => ({
      record,
      probe: workerProbes[i]!,
      routed: source.isRouted(record),
      loadReportAgeMs: source.loadReportAgeMs(record.id),
    })),
    stores: stores.map((record, i) => ({ record, probe: storeProbes[i]! })),
  });
}

export interface StatusInputs {
  readonly model: string;
  /** Epoch ms. */
  readonly now: number;
  readonly ready: boolean;
  readonly routerStats: RouterStats;
  readonly workers: readonly {
    readonly record: ServiceRecord;
    readonly probe: Probe<StatsResponseMsg>;
    readonly routed: boolean;
    readonly loadReportAgeMs: number | undefined;
  }[];
  readonly stores: readonly { readonly record: ServiceRecord; readonly probe: Probe<StoreStatsResponseMsg> }[];
}

/** Joins what the gateway knows with what each node said: a plain value, the same for JSON and the page. */
export function assembleStatus(inputs: StatusInputs): ClusterStatus {
  const rs = inputs.routerStats;
  return {
    object: 'pdserve.status',
    generatedAt: new Date(inputs.now).toISOString(),
    model: inputs.model,
    gateway: {
      ready: inputs.ready,
      routing: {
        decisions: rs.decisions,
        noCandidate: rs.noCandidate,
        prefixHitRate: ratio(rs.prefixMatchedBlocks, rs.prefixRequestedBlocks),
        byPolicy: { ...rs.byPolicy },
      },
    },
    workers: inputs.workers.map(({ record: r, probe: p, routed, loadReportAgeMs }): WorkerStatus => {
      const s = p.health === 'unreachable' ? undefined : p.stats;
      // byWorker is keyed by worker id; Object.hasOwn keeps ids like "constructor" from reading the prototype.
      const picks = Object.hasOwn(rs.byWorker, r.id) ? rs.byWorker[r.id]! : { decode: 0, prefill: 0 };
      return {
        id: r.id,
        role: r.role as WorkerStatus['role'],
        address: r.grpcAddress,
        adminAddress: r.adminAddress,
        incarnation: r.incarnation,
        startedAt: isoTime(r.startedAt),
        routed,
        health: p.health,
        error: p.health === 'unreachable' ? p.error : null,
        running: s?.running ?? null,
        waiting: s?.waiting ?? null,
        kv:
          s === undefined
            ? null
            : {
                usedBlocks: s.used_blocks,
                cachedBlocks: s.cached_blocks,
                totalBlocks: s.total_blocks,
                usage: ratio(s.used_blocks, s.total_blocks),
              },
        prefixCache:
          s === undefined
            ? null
            : {
                hitTokens: s.prefix_cache_hit_tokens,
                queryTokens: s.prefix_cache_query_tokens,
                hitRate: ratio(s.prefix_cache_hit_tokens, s.prefix_cache_query_tokens),
              },
        loadReportAgeMs: loadReportAgeMs === undefined ? null : Math.round(loadReportAgeMs),
        picks: { decode: picks.decode, prefill: picks.prefill },
      };
    }),
    kvStores: inputs.stores.map(({ record: r, probe: p }): StoreNodeStatus => {
      const s = p.health === 'unreachable' ? undefined : p.stats;
      return {
        id: r.id,
        address: r.grpcAddress,
        incarnation: r.incarnation,
        startedAt: isoTime(r.startedAt),
        health: p.health,
        error: p.health === 'unreachable' ? p.error : null,
        tiers:
          s === undefined
            ? []
            : [tierStatus('memory', s.memory), tierStatus('disk', s.disk)].filter((t): t is StoreTierStatus => t !== undefined),
        activeLeases: s?.active_leases ?? null,
        activePins: s?.active_pins ?? null,
      };
    }),
  };
}

function tierStatus(tier: StoreTierStatus['tier'], t: TierStatsMsg | null): StoreTierStatus | undefined {
  if (t === null || t.capacity_bytes === 0) return undefined;
  return {
    tier,
    blocks: t.blocks,
    usedBytes: t.used_bytes,
    capacityBytes: t.capacity_bytes,
    usage: ratio(t.used_bytes, t.capacity_bytes),
    hits: t.hits,
    misses: t.misses,
    hitRate: ratio(t.hits, t.hits + t.misses),
    evictions: t.evictions,
  };
}

function ratio(a: number, b: number): number | null {
  return b > 0 ? a / b : null;
}

function isoTime(ms: number): string {
  // Dates past ±8.64e15 ms do not exist; a record claiming one shows no start time.
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : '';
}
