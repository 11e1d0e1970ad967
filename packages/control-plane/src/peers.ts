// Who a service may dial and whom it may serve: the members registered in the registry (for its model),
// never an address a request names. A request carries an address only to pick among registered members;
// one that names anything else (SSRF, a listener waiting for stolen KV) is refused before any dial.
import type { Membership } from './membership';
import type { ServiceRecord, ServiceRole } from './types';

/** A miss re-reads the registry (a member that just joined), at most this often. */
const REFRESH_EVERY_MS = 250;

export class RegisteredPeers {
  private lastRefresh = 0;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly membership: Membership) {}

  /** The member at gRPC address `address` with one of `roles`, serving `model` (or any model: '*'). */
  async member(address: string, roles: readonly ServiceRole[], model: string): Promise<ServiceRecord | undefined> {
    return this.find((r) => r.grpcAddress === address && roles.includes(r.role) && servesModel(r, model));
  }

  /** Whether `address` is a registered member's tcp data port (what a receiver may pull KV from). */
  async isDataPort(address: string): Promise<boolean> {
    return (await this.find((r) => r.dataAddress === address)) !== undefined;
  }

  /** Whether `host` is where a registered member runs (its gRPC or data address's host). */
  async isMemberHost(host: string): Promise<boolean> {
    return (await this.find((r) => hostsOf(r).includes(host))) !== undefined;
  }

  private async find(match: (r: ServiceRecord) => boolean): Promise<ServiceRecord | undefined> {
    const now = [...this.membership.snapshot().values()].find(match);
    if (now !== undefined) return now;
    await this.refresh();
    return [...this.membership.snapshot().values()].find(match);
  }

  /** One re-read of the registry for every miss meanwhile; at most one per REFRESH_EVERY_MS (a miss waits for it). */
  private refresh(): Promise<void> {
    if (this.refreshing !== undefined) return this.refreshing;
    const wait = this.lastRefresh + REFRESH_EVERY_MS - Date.now();
    this.refreshing = (wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : Promise.resolve())
      .then(() => {
        this.lastRefresh = Date.now();
        return this.membership.refresh();
      })
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }
}

function servesModel(r: ServiceRecord, model: string): boolean {
  return r.model === model || r.model === '*' || model === '*';
}

/** The hosts a registered service runs on: its gRPC address's, and its data address's when it has one. */
export function hostsOf(r: Pick<ServiceRecord, 'grpcAddress' | 'dataAddress'>): string[] {
  return r.dataAddress === undefined ? [hostOf(r.grpcAddress)] : [hostOf(r.grpcAddress), hostOf(r.dataAddress)];
}

/** The host of host:port ([v6]:port too). */
export function hostOf(address: string): string {
  const at = address.lastIndexOf(':');
  const host = at > 0 ? address.slice(0, at) : address;
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
