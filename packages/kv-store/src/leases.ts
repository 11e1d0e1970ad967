// Read leases: while a block has one, eviction and remove() leave it where it is.
import { randomUUID } from 'node:crypto';
import type { BlockKey } from './keys';

interface Lease {
  readonly keys: BlockKey[];
  readonly expiresAt: number;
}

export class LeaseTable {
  /** @param onLapse told of each lease that lapsed (rather than being released). */
  constructor(private readonly onLapse: (id: string) => void = () => undefined) {}

  private readonly leases = new Map<string, Lease>();
  /** Live leases per block (a block read twice, or by two readers, counts twice). */
  private readonly counts = new Map<BlockKey, number>();
  /** Earliest expiry among live leases, so sweep() is free until something can lapse. */
  private nextExpiry = Number.POSITIVE_INFINITY;

  get size(): number {
    return this.leases.size;
  }

  acquire(keys: readonly BlockKey[], expiresAt: number): string {
    const id = randomUUID();
    this.leases.set(id, { keys: [...keys], expiresAt });
    for (const key of keys) this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.nextExpiry = Math.min(this.nextExpiry, expiresAt);
    return id;
  }

  /** Takes one key out of a lease (a block the lease was taken for turned out unreadable). */
  drop(id: string, key: BlockKey): void {
    const lease = this.leases.get(id);
    const at = lease?.keys.indexOf(key) ?? -1;
    if (lease === undefined || at < 0) return;
    lease.keys.splice(at, 1);
    this.decrement(key);
  }

  /** True when the lease existed (an expired or unknown lease is not an error: the outcome is the same). */
  release(id: string): boolean {
    const lease = this.leases.get(id);
    if (lease === undefined) return false;
    this.leases.delete(id);
    for (const key of lease.keys) this.decrement(key);
    return true;
  }

  isLeased(key: BlockKey): boolean {
    return this.counts.has(key);
  }

  /** Releases every lease that lapsed by `now`; returns how many. */
  sweep(now: number): number {
    if (now < this.nextExpiry) return 0;
    let expired = 0;
    let next = Number.POSITIVE_INFINITY;
    for (const [id, lease] of this.leases) {
      if (lease.expiresAt <= now) {
        this.release(id);
        this.onLapse(id);
        expired += 1;
      } else {
        next = Math.min(next, lease.expiresAt);
      }
    }
    this.nextExpiry = next;
    return expired;
  }

  private decrement(key: BlockKey): void {
    const n = (this.counts.get(key) ?? 0) - 1;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }
}
