// The service registry: instances register under a lease, watchers follow membership. One implementation
// over a LeaseStore, so Redis and in-process registries behave the same by construction.
import { decodeServiceRecord } from './codec';
import type { LeaseStore } from './lease-store';
import type { Logger } from './log';
import { PollingMembership, type Membership } from './membership';
import { assertToken, instanceKey, instanceKeyPrefix } from './names';
import { LeaseRegistration, type Registration } from './registration';
import { resolveRegistryOptions, type RegistryOptions, type ResolvedRegistryOptions } from './registry-options';
import type { ServiceRecord } from './types';

export interface Registry {
  /** Writes the record under a lease and keeps it alive until deregister() or close(). Rejects if the
   * first write fails. */
  register(record: ServiceRecord): Promise<Registration>;
  /** Live instances now, one read. */
  list(): Promise<ServiceRecord[]>;
  /** A membership view, resolved after its first poll. */
  watch(): Promise<Membership>;
  /** Stops heartbeats (entries then expire, as after a crash: call deregister() first to drain) and watches. */
  close(): Promise<void>;
}

export class LeaseRegistry implements Registry {
  private readonly options: ResolvedRegistryOptions;
  private readonly registrations = new Map<string, LeaseRegistration>();
  private readonly memberships = new Set<PollingMembership>();
  private closed = false;

  constructor(
    private readonly cluster: string,
    private readonly store: LeaseStore,
    private readonly logger: Logger,
    options: RegistryOptions = {},
  ) {
    assertToken(cluster, 'cluster');
    this.options = resolveRegistryOptions(options);
  }

  async register(record: ServiceRecord): Promise<Registration> {
    this.assertOpen();
    assertToken(record.id, 'instance id');
    // Registering an id again (e.g. a restarted engine in this process) supersedes the earlier handle.
    this.registrations.get(record.id)?.stop();
    const registration = new LeaseRegistration(record, instanceKey(this.cluster, record.id), this.store, this.options, this.logger, (r) => {
      if (this.registrations.get(r.record.id) === r) this.registrations.delete(r.record.id);
    });
    this.registrations.set(record.id, registration);
    try {
      await registration.start();
    } catch (error) {
      registration.stop();
      throw error;
    }
    return registration;
  }

  async list(): Promise<ServiceRecord[]> {
    this.assertOpen();
    const prefix = instanceKeyPrefix(this.cluster);
    const records: ServiceRecord[] = [];
    for (const [key, value] of await this.store.scan(prefix)) {
      try {
        const record = decodeServiceRecord(value);
        if (key === `${prefix}${record.id}`) records.push(record);
      } catch {
        // invalid entries are reported by watchers; a one-shot read just skips them
      }
    }
    return records;
  }

  async watch(): Promise<Membership> {
    this.assertOpen();
    const membership = new PollingMembership(this.store, instanceKeyPrefix(this.cluster), this.options, this.logger, (m) =>
      this.memberships.delete(m),
    );
    this.memberships.add(membership);
    await membership.start();
    return membership;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const registration of [...this.registrations.values()]) registration.stop();
    for (const membership of [...this.memberships]) membership.close();
    await this.store.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('registry is closed');
  }
}
