// Batches an engine's block events into KvEventBatch messages: a batch goes out as soon as it holds
// maxBatchEvents block hashes, and nothing waits longer than flushIntervalMs; stamps worker, incarnation, seq.
import { isBlockHash } from '@pdserve/contracts';
import { assertToken } from './names';
import type { KvEvent, KvEventBatch, KvTier } from './types';

export interface KvEventPublisherOptions {
  readonly worker: string;
  readonly incarnation: string;
  /** Longest a block event waits before it is sent, in ms. Trades index freshness for message rate. */
  readonly flushIntervalMs?: number;
  /** Block hashes per batch: reaching it flushes at once, and larger bursts are split. Bounds message size
   * (about 20 bytes per hash on the wire). */
  readonly maxBatchEvents?: number;
}

export const KV_PUBLISHER_DEFAULTS = { flushIntervalMs: 50, maxBatchEvents: 512 } as const;

export interface KvBatchSink {
  publishKv(batch: KvEventBatch): void;
}

type BlockEvent = { kind: 'stored' | 'removed'; tier: KvTier; hashes: string[] };
type PendingEvent = BlockEvent | { kind: 'cleared' };

export class KvEventPublisher {
  readonly worker: string;
  readonly incarnation: string;
  private readonly flushIntervalMs: number;
  private readonly maxBatchEvents: number;
  private pending: PendingEvent[] = [];
  private pendingCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private nextSeq = 1;
  private closed = false;

  constructor(
    private readonly sink: KvBatchSink,
    options: KvEventPublisherOptions,
  ) {
    assertToken(options.worker, 'worker id');
    this.worker = options.worker;
    this.incarnation = options.incarnation;
    this.flushIntervalMs = options.flushIntervalMs ?? KV_PUBLISHER_DEFAULTS.flushIntervalMs;
    this.maxBatchEvents = options.maxBatchEvents ?? KV_PUBLISHER_DEFAULTS.maxBatchEvents;
    if (!(this.maxBatchEvents >= 1)) throw new Error(`maxBatchEvents must be >= 1, got ${this.maxBatchEvents}`);
  }

  /** The seq of the last batch sent (0 before the first). */
  get seq(): number {
    return this.nextSeq - 1;
  }

  stored(hashes: readonly string[], tier: KvTier): void {
    this.add('stored', hashes, tier);
  }

  removed(hashes: readonly string[], tier: KvTier): void {
    this.add('removed', hashes, tier);
  }

  /** Everything this worker held is gone (e.g. cache reset); sent at once, after what was pending. */
  cleared(): void {
    if (this.closed) return;
    this.pending.push({ kind: 'cleared' });
    this.pendingCount += 1;
    this.flush();
  }

  /** Sends what is pending now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.send(splitEvents(this.pending, this.maxBatchEvents));
    this.pending = [];
    this.pendingCount = 0;
  }

  /** Flushes and stops; later events are ignored. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  /** Sends every full batch now; a partial remainder waits for the timer like any other event. */
  private flushFullBatches(): void {
    const chunks = splitEvents(this.pending, this.maxBatchEvents);
    const last = chunks.at(-1);
    const lastSize = last === undefined ? 0 : countHashes(last);
    const keep = lastSize < this.maxBatchEvents ? chunks.pop() : undefined;
    this.send(chunks);
    this.pending = (keep ?? []).map((e) => (e.kind === 'cleared' ? e : { ...e, hashes: [...e.hashes] }));
    this.pendingCount = keep === undefined ? 0 : lastSize;
    if (this.pendingCount === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private send(chunks: readonly KvEvent[][]): void {
    for (const events of chunks) {
      this.sink.publishKv({ worker: this.worker, incarnation: this.incarnation, seq: this.nextSeq, events });
      this.nextSeq += 1;
    }
  }

  private add(kind: 'stored' | 'removed', hashes: readonly string[], tier: KvTier): void {
    if (this.closed || hashes.length === 0) return;
    const bad = hashes.find((h) => !isBlockHash(h));
    if (bad !== undefined) throw new Error(`block hash must be 16 lowercase hex chars, got ${JSON.stringify(bad)}`);
    const last = this.pending.at(-1);
    // Consecutive events of one kind and tier merge into one entry.
    if (last !== undefined && last.kind === kind && last.tier === tier) last.hashes.push(...hashes);
    else this.pending.push({ kind, tier, hashes: [...hashes] });
    this.pendingCount += hashes.length;
    if (this.pendingCount >= this.maxBatchEvents) {
      this.flushFullBatches();
    }
    if (this.pendingCount > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }
}

/** Block hashes in a batch (a `cleared` counts as one). */
function countHashes(events: readonly KvEvent[]): number {
  return events.reduce((n, e) => n + (e.kind === 'cleared' ? 1 : e.hashes.length), 0);
}

/** Splits events into chunks of at most `max` block hashes (a `cleared` counts as one). */
function splitEvents(events: readonly PendingEvent[], max: number): KvEvent[][] {
  const chunks: KvEvent[][] = [];
  let chunk: KvEvent[] = [];
  let size = 0;
  const push = (event: KvEvent, n: number): void => {
    chunk.push(event);
    size += n;
    if (size >= max) {
      chunks.push(chunk);
      chunk = [];
      size = 0;
    }
  };
  for (const event of events) {
    if (event.kind === 'cleared') {
      push(event, 1);
      continue;
    }
    for (let i = 0; i < event.hashes.length; ) {
      const take = Math.min(max - size, event.hashes.length - i);
      push({ kind: event.kind, tier: event.tier, hashes: event.hashes.slice(i, i + take) }, take);
      i += take;
    }
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
