// A live view of the registry: polls the store (SCAN), diffs against what it knew, and reports changes.
// Does not depend on keyspace notifications; an instance whose lease lapsed is gone by the next poll.
import { decodeServiceRecord } from './codec';
import type { LeaseStore } from './lease-store';
import { errorMessage, OutageLog, type Logger } from './log';
import type { ResolvedRegistryOptions } from './registry-options';
import type { ServiceRecord } from './types';

/** A new incarnation under a known id is reported as `removed` then `added`: its old cache is gone. */
export type MembershipChange =
  | { readonly kind: 'added'; readonly record: ServiceRecord }
  | { readonly kind: 'removed'; readonly record: ServiceRecord }
  | { readonly kind: 'updated'; readonly record: ServiceRecord; readonly previous: ServiceRecord };

export interface Membership {
  /** The instances known now, by id (a copy). */
  snapshot(): ReadonlyMap<string, ServiceRecord>;
  /** False while the store cannot be read; the snapshot then keeps the last known members. */
  readonly synced: boolean;
  /** Listens for changes; returns the unsubscribe function. */
  onChange(listener: (change: MembershipChange) => void): () => void;
  /** Polls now (resolves when done). */
  refresh(): Promise<void>;
  close(): void;
}

export class PollingMembership implements Membership {
  private readonly instances = new Map<string, ServiceRecord>();
  private readonly listeners = new Set<(change: MembershipChange) => void>();
  private readonly unsubscribers: (() => void)[] = [];
  private readonly outage: OutageLog;
  /** Resolves once the store's write notifications reach this watcher. */
  private readonly listening: Promise<void>;
  /** Raw values already reported as undecodable, so a bad entry is logged once. */
  private readonly rejected = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private pollAgain = false;
  private holdRemovalsUntil = 0;
  private closed = false;
  synced = false;

  constructor(
    private readonly store: LeaseStore,
    private readonly prefix: string,
    private readonly options: ResolvedRegistryOptions,
    private readonly logger: Logger,
    private readonly onClose: (membership: PollingMembership) => void,
  ) {
    this.outage = new OutageLog(logger, 'registry watch');
    const writes = store.onWrite(() => void this.refresh());
    this.listening = writes.listening;
    this.unsubscribers.push(
      store.onReconnect(() => {
        this.holdRemovalsUntil = Date.now() + options.reconnectGraceMs;
        void this.refresh();
      }),
      writes.unsubscribe,
    );
  }

  /** Polls once (after write notifications are heard, so no write falls between), then every pollIntervalMs. */
  async start(): Promise<void> {
    await this.listening;
    await this.refresh();
    this.schedule();
  }

  snapshot(): ReadonlyMap<string, ServiceRecord> {
    return new Map(this.instances);
  }

  onChange(listener: (change: MembershipChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.polling !== undefined) {
      // A write landed during this poll; poll once more after it so the caller sees the latest state.
      this.pollAgain = true;
      return this.polling;
    }
    this.polling = this.pollLoop().finally(() => (this.polling = undefined));
    return this.polling;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    for (const unsubscribe of this.unsubscribers) unsubscribe();
    this.listeners.clear();
    this.onClose(this);
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.refresh().finally(() => this.schedule());
    }, this.options.pollIntervalMs);
    this.timer.unref();
  }

  private async pollLoop(): Promise<void> {
    do {
      this.pollAgain = false;
      await this.poll();
    } while (this.pollAgain && !this.closed);
  }

  private async poll(): Promise<void> {
    let entries: Map<string, string>;
    try {
      entries = await this.store.scan(this.prefix);
      this.outage.succeeded();
      this.synced = true;
    } catch (error) {
      this.outage.failed(error);
      this.synced = false;
      return;
    }
    if (this.closed) return;
    this.apply(this.decode(entries));
  }

  private decode(entries: ReadonlyMap<string, string>): Map<string, ServiceRecord> {
    const seen = new Map<string, ServiceRecord>();
    for (const [key, value] of entries) {
      try {
        const record = decodeServiceRecord(value);
        if (`${this.prefix}${record.id}` !== key) throw new Error(`record id ${record.id} does not match its key`);
        seen.set(record.id, record);
      } catch (error) {
        if (!this.rejected.has(value)) {
          if (this.rejected.size > 1_000) this.rejected.clear();
          this.rejected.add(value);
          this.logger.warn({ key, err: errorMessage(error) }, 'ignoring an invalid registry entry');
        }
      }
    }
    return seen;
  }

  private apply(seen: ReadonlyMap<string, ServiceRecord>): void {
    const changes: MembershipChange[] = [];
    if (Date.now() >= this.holdRemovalsUntil) {
      for (const [id, record] of this.instances) {
        if (!seen.has(id)) {
          this.instances.delete(id);
          changes.push({ kind: 'removed', record });
        }
      }
    }
    for (const [id, record] of seen) {
      const previous = this.instances.get(id);
      this.instances.set(id, record);
      if (previous === undefined) {
        changes.push({ kind: 'added', record });
      } else if (previous.incarnation !== record.incarnation) {
        changes.push({ kind: 'removed', record: previous }, { kind: 'added', record });
      } else if (JSON.stringify(previous) !== JSON.stringify(record)) {
        changes.push({ kind: 'updated', record, previous });
      }
    }
    for (const change of changes) this.emit(change);
  }

  private emit(change: MembershipChange): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        this.logger.error({ change: change.kind, id: change.record.id, err: errorMessage(error) }, 'membership listener threw');
      }
    }
  }
}
