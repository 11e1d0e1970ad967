// The storage under the registry: string values under keys with a TTL lease. Redis in a cluster; a Map with
// expiry times in process (shared through the InProcessHub).

export type PutMode = 'always' | 'if-present';

export interface LeaseStore {
  /** Writes `value` under `key` with a lease of `ttlMs`. With 'if-present', writes only over a live key and
   * returns false when there is none. */
  put(key: string, value: string, ttlMs: number, mode: PutMode): Promise<boolean>;
  /** Deletes `key` if it still holds `value` (so a stale owner cannot delete its successor's entry). */
  deleteIfValue(key: string, value: string): Promise<void>;
  /** Every live entry whose key starts with `prefix`. */
  scan(prefix: string): Promise<Map<string, string>>;
  /** Called each time the store comes back after a connection loss; its content may have been lost. */
  onReconnect(listener: () => void): () => void;
  /** Called after writes that change membership, so watchers need not wait for a poll; the promise it
   * returns with the unsubscribe function resolves once notifications are being received. */
  onWrite(listener: () => void): { readonly unsubscribe: () => void; readonly listening: Promise<void> };
  close(): Promise<void>;
}

interface Entry {
  readonly value: string;
  readonly expiresAt: number;
}

/** Same semantics as the Redis store; expired entries are dropped lazily, as Redis does for readers. */
export class MemoryLeaseStore implements LeaseStore {
  private readonly entries = new Map<string, Entry>();
  private readonly reconnectListeners = new Set<() => void>();
  private readonly writeListeners = new Set<() => void>();

  async put(key: string, value: string, ttlMs: number, mode: PutMode): Promise<boolean> {
    const previous = this.live(key);
    if (mode === 'if-present' && previous === undefined) return false;
    this.entries.set(key, { value, expiresAt: Date.now() + ttlMs });
    if (previous?.value !== value) this.notify(this.writeListeners);
    return true;
  }

  async deleteIfValue(key: string, value: string): Promise<void> {
    if (this.live(key)?.value !== value) return;
    this.entries.delete(key);
    this.notify(this.writeListeners);
  }

  async scan(prefix: string): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const key of [...this.entries.keys()]) {
      const entry = this.live(key);
      if (entry !== undefined && key.startsWith(prefix)) found.set(key, entry.value);
    }
    return found;
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  onWrite(listener: () => void): { readonly unsubscribe: () => void; readonly listening: Promise<void> } {
    this.writeListeners.add(listener);
    return { unsubscribe: () => this.writeListeners.delete(listener), listening: Promise.resolve() };
  }

  /** Shared by every participant of a hub; closing one participant must not close it. */
  async close(): Promise<void> {}

  /** Test hook with the effect of a Redis restart without persistence: all data gone, clients reconnect. */
  simulateRestart(): void {
    this.entries.clear();
    this.notify(this.reconnectListeners);
  }

  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private notify(listeners: ReadonlySet<() => void>): void {
    for (const listener of [...listeners]) queueMicrotask(listener);
  }
}
