// One instance's entry in the registry: written under a lease and renewed by heartbeat until deregistered.
import { encodeServiceRecord } from './codec';
import type { LeaseStore } from './lease-store';
import { errorMessage, OutageLog, type Logger } from './log';
import type { ResolvedRegistryOptions } from './registry-options';
import type { ServiceRecord } from './types';

export interface Registration {
  readonly record: ServiceRecord;
  /** Replaces the advertised record (same id), effective immediately. */
  update(record: ServiceRecord): Promise<void>;
  /** Graceful drain: stops heartbeats and removes the entry now rather than at lease expiry. */
  deregister(): Promise<void>;
}

export class LeaseRegistration implements Registration {
  private value: string;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  private readonly outage: OutageLog;
  private readonly unsubscribe: () => void;

  constructor(
    private current: ServiceRecord,
    private readonly key: string,
    private readonly store: LeaseStore,
    private readonly options: ResolvedRegistryOptions,
    private readonly logger: Logger,
    private readonly onStop: (registration: LeaseRegistration) => void,
  ) {
    this.value = encodeServiceRecord(current);
    this.outage = new OutageLog(logger, 'registry heartbeat', { instance: current.id });
    // After a reconnect the store may have lost everything: renew now instead of at the next tick.
    this.unsubscribe = store.onReconnect(() => void this.heartbeat());
  }

  get record(): ServiceRecord {
    return this.current;
  }

  /** The first write; failures reach the caller of register(). */
  async start(): Promise<void> {
    await this.store.put(this.key, this.value, this.options.leaseTtlMs, 'always');
    this.timer = setInterval(() => void this.heartbeat(), this.options.heartbeatIntervalMs);
    this.timer.unref();
  }

  async update(record: ServiceRecord): Promise<void> {
    if (record.id !== this.current.id) throw new Error(`update cannot change the id (${this.current.id} → ${record.id})`);
    if (this.stopped) throw new Error(`instance ${record.id} is no longer registered`);
    await this.inFlight;
    this.current = record;
    this.value = encodeServiceRecord(record);
    await this.store.put(this.key, this.value, this.options.leaseTtlMs, 'always');
  }

  async deregister(): Promise<void> {
    if (this.stopped) return;
    this.stop();
    await this.inFlight;
    try {
      await this.store.deleteIfValue(this.key, this.value);
    } catch (error) {
      this.logger.warn(
        { instance: this.current.id, err: errorMessage(error), expiresInMs: this.options.leaseTtlMs },
        'deregister failed; the lease will expire instead',
      );
    }
  }

  /** Stops heartbeating and leaves the entry to expire (what a crash looks like to watchers). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe();
    this.onStop(this);
  }

  private heartbeat(): Promise<void> {
    if (this.stopped || this.inFlight !== undefined) return this.inFlight ?? Promise.resolve();
    this.inFlight = this.renew().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async renew(): Promise<void> {
    try {
      const { key, value } = this;
      const { leaseTtlMs } = this.options;
      if (!(await this.store.put(key, value, leaseTtlMs, 'if-present'))) {
        if (this.stopped) return;
        await this.store.put(key, value, leaseTtlMs, 'always');
        this.logger.info({ instance: this.current.id }, 're-registered after the registry entry was lost');
      }
      this.outage.succeeded();
    } catch (error) {
      this.outage.failed(error);
    }
  }
}
