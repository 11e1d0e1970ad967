// LeaseStore over Redis (ioredis): SET … PX for leases, SCAN for listing. Commands fail fast while Redis is
// down (no offline queue), and ioredis reconnects in the background with capped backoff.
import { Redis } from 'ioredis';
import type { LeaseStore, PutMode } from './lease-store';
import { errorMessage, redactUrl, type Logger } from './log';

export interface RedisLeaseStoreOptions {
  /** How long connect() waits for Redis to be ready before failing, in ms. */
  readonly connectTimeoutMs?: number;
  /** A command not answered within this many ms fails (and is retried by its background loop), in ms. */
  readonly commandTimeoutMs?: number;
  /** Cap of the exponential reconnect backoff, in ms. */
  readonly reconnectMaxDelayMs?: number;
  /** Keys per SCAN round trip (a hint to Redis). */
  readonly scanCount?: number;
}

export const REDIS_DEFAULTS = {
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 2_000,
  reconnectMaxDelayMs: 2_000,
  scanCount: 500,
} as const;

/** First reconnect delay; doubles per attempt up to reconnectMaxDelayMs. */
const RECONNECT_BASE_DELAY_MS = 50;

// Deletes KEYS[1] only while it still holds ARGV[1].
const DELETE_IF_VALUE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Writes that change membership (a new or replaced entry, a deletion) are announced on this channel, so
 * watchers in other processes learn of a joining instance within a round trip instead of at their next
 * poll. Pub/sub is lossy (a watcher whose connection is down misses it): polling stays the fallback.
 */
const WRITES_CHANNEL = 'pdserve:lease-writes';

export class RedisLeaseStore implements LeaseStore {
  private readonly reconnectListeners = new Set<() => void>();
  private readonly writeListeners = new Set<() => void>();
  /** A second connection in subscriber mode, opened by the first onWrite listener; settles once subscribed. */
  private subscriber: { readonly client: Redis; readonly subscribed: Promise<void> } | undefined;
  private readyCount = 0;
  private closed = false;

  private constructor(
    private readonly client: Redis,
    private readonly scanCount: number,
    private readonly logger: Logger,
    /** How long a watcher waits for the subscription before it starts (polling covers the rest), in ms. */
    private readonly subscribeWaitMs: number,
  ) {
    client.on('ready', () => {
      this.readyCount += 1;
      if (this.readyCount > 1) for (const listener of [...this.reconnectListeners]) listener();
    });
  }

  static async connect(url: string, logger: Logger, options: RedisLeaseStoreOptions = {}): Promise<RedisLeaseStore> {
    const o = { ...REDIS_DEFAULTS, ...options };
    const where = redactUrl(url);
    const client = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: o.connectTimeoutMs,
      retryStrategy: (attempt: number) => Math.min(RECONNECT_BASE_DELAY_MS * 2 ** Math.min(attempt, 16), o.reconnectMaxDelayMs),
    });
    let down = false;
    // Without an 'error' listener ioredis reports connection errors as unhandled; log each outage once.
    client.on('error', (error: unknown) => {
      if (!down) logger.warn({ redis: where, err: errorMessage(error) }, 'redis connection error; reconnecting');
      down = true;
    });
    client.on('ready', () => {
      if (down) logger.info({ redis: where }, 'redis connection ready');
      down = false;
    });
    const store = new RedisLeaseStore(client, o.scanCount, logger, o.commandTimeoutMs);
    try {
      await waitReady(client, o.connectTimeoutMs);
    } catch (error) {
      client.disconnect();
      throw new Error(`cannot connect to Redis at ${where}: ${errorMessage(error)}`);
    }
    return store;
  }

  async put(key: string, value: string, ttlMs: number, mode: PutMode): Promise<boolean> {
    const ttl = Math.max(1, Math.round(ttlMs));
    if (mode === 'if-present') return (await this.client.set(key, value, 'PX', ttl, 'XX')) === 'OK';
    // An unconditional write is a registration, a re-registration after a lapse, or an update: tell watchers.
    const reply = await this.client.set(key, value, 'PX', ttl);
    if (reply === 'OK') this.announce(key);
    return reply === 'OK';
  }

  async deleteIfValue(key: string, value: string): Promise<void> {
    if (Number(await this.client.eval(DELETE_IF_VALUE, 1, key, value)) > 0) this.announce(key);
  }

  async scan(prefix: string): Promise<Map<string, string>> {
    const keys = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await this.client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', this.scanCount);
      for (const key of batch) keys.add(key);
      cursor = next;
    } while (cursor !== '0');
    const found = new Map<string, string>();
    const list = [...keys];
    for (let i = 0; i < list.length; i += this.scanCount) {
      const chunk = list.slice(i, i + this.scanCount);
      const values = await this.client.mget(...chunk);
      // A key can expire between SCAN and MGET; it is then simply absent.
      chunk.forEach((key, j) => {
        const value = values[j];
        if (typeof value === 'string') found.set(key, value);
      });
    }
    return found;
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  onWrite(listener: () => void): { readonly unsubscribe: () => void; readonly listening: Promise<void> } {
    this.writeListeners.add(listener);
    this.subscriber ??= this.subscribe();
    return { unsubscribe: () => this.writeListeners.delete(listener), listening: this.subscriber.subscribed };
  }

  private subscribe(): { readonly client: Redis; readonly subscribed: Promise<void> } {
    // ioredis re-subscribes after a reconnect; the watchers' reconnect handling re-polls meanwhile.
    const client = this.client.duplicate({ enableOfflineQueue: true, lazyConnect: false });
    client.on('error', () => undefined); // outages are logged once by the main connection
    client.on('message', () => {
      for (const listener of [...this.writeListeners]) listener();
    });
    const subscribed = client.subscribe(WRITES_CHANNEL).then(
      () => undefined,
      (error: unknown) => {
        if (!this.closed) this.logger.warn({ err: errorMessage(error) }, 'registry change notifications unavailable; watchers poll');
      },
    );
    const bounded = new Promise<void>((resolve) => setTimeout(resolve, this.subscribeWaitMs).unref());
    return { client, subscribed: Promise.race([subscribed, bounded]) };
  }

  private announce(key: string): void {
    this.client.publish(WRITES_CHANNEL, key).catch(() => undefined); // watchers poll anyway
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reconnectListeners.clear();
    this.writeListeners.clear();
    this.subscriber?.client.disconnect();
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect(); // Redis is down; just drop the socket and stop reconnecting
    }
  }
}

function waitReady(client: Redis, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError: unknown = 'no answer';
    const onError = (error: unknown): void => {
      lastError = error;
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      client.off('error', onError);
      reject(new Error(`not ready within ${timeoutMs} ms (${errorMessage(lastError)})`));
    }, timeoutMs);
    const onReady = (): void => {
      clearTimeout(timer);
      client.off('error', onError);
      resolve();
    };
    client.once('ready', onReady);
    client.on('error', onError);
    client.connect().catch(onError); // failures are retried by retryStrategy until the timer fires
  });
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
