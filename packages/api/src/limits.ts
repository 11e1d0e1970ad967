// Per-client limits at the edge: a token bucket of requests per second (with a burst), and a cap on
// requests in flight. The client is its API key's id, or its address when the server has no keys.
import { ApiError } from './errors';

export interface ClientLimits {
  /** Requests per second each client may sustain; undefined = no rate limit. */
  readonly ratePerSecond?: number;
  /** Requests a client may send at once after being idle (the bucket's size); default max(1, ceil(rate)). */
  readonly burst?: number;
  /** Requests one client may have in flight; undefined = no cap. */
  readonly maxConcurrent?: number;
}

interface ClientState {
  /** Requests the bucket holds (fractional while it refills). */
  tokens: number;
  /** When `tokens` was last brought up to date, in ms (performance.now()). */
  at: number;
  inFlight: number;
}

/** Above this many tracked clients, those with a full bucket and nothing in flight are forgotten. */
const PRUNE_ABOVE = 4096;

/**
 * Admits or refuses each request of a client. A refused request costs nothing: the concurrency cap is
 * checked before a token is taken. Clients whose state is the initial one are dropped when the table
 * grows, so addresses that came once do not pile up.
 */
export class ClientLimiter {
  private readonly clients = new Map<string, ClientState>();
  private readonly rate: number | undefined;
  private readonly burst: number;
  private readonly maxConcurrent: number | undefined;
  private pruneAt = PRUNE_ABOVE;

  constructor(
    limits: ClientLimits,
    private readonly now: () => number = () => performance.now(),
  ) {
    const { ratePerSecond: rate, burst, maxConcurrent } = limits;
    if (rate !== undefined && !(rate > 0 && Number.isFinite(rate))) throw new Error(`rate limit must be a positive number, got ${rate}`);
    if (burst !== undefined && !(Number.isInteger(burst) && burst >= 1))
      throw new Error(`rate limit burst must be an integer ≥ 1, got ${burst}`);
    if (maxConcurrent !== undefined && !(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) {
      throw new Error(`concurrency limit must be an integer ≥ 1, got ${maxConcurrent}`);
    }
    this.rate = rate;
    this.burst = burst ?? Math.max(1, Math.ceil(rate ?? 1));
    this.maxConcurrent = maxConcurrent;
  }

  /** Whether any limit is set (else admit() always admits). */
  get active(): boolean {
    return this.rate !== undefined || this.maxConcurrent !== undefined;
  }

  /** Admits one request of `client` (returning its release, to call once when it ends) or throws a 429 ApiError. */
  admit(client: string): () => void {
    if (!this.active) return () => undefined;
    const now = this.now();
    const s = this.clients.get(client) ?? { tokens: this.burst, at: now, inFlight: 0 };
    if (this.maxConcurrent !== undefined && s.inFlight >= this.maxConcurrent) throw ApiError.tooManyConcurrent(this.maxConcurrent);
    if (this.rate !== undefined) {
      s.tokens = Math.min(this.burst, s.tokens + ((now - s.at) / 1000) * this.rate);
      s.at = now;
      if (s.tokens < 1) {
        this.clients.set(client, s);
        // Whole seconds (Retry-After's unit) until the bucket holds one request again.
        throw ApiError.rateLimited(this.rate, Math.max(1, Math.ceil((1 - s.tokens) / this.rate)));
      }
      s.tokens -= 1;
    }
    s.inFlight += 1;
    this.clients.set(client, s);
    if (this.clients.size > this.pruneAt) this.prune(now);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      s.inFlight -= 1;
    };
  }

  /** Clients tracked right now (tests). */
  get tracked(): number {
    return this.clients.size;
  }

  private prune(now: number): void {
    for (const [client, s] of this.clients) {
      const full = this.rate === undefined || s.tokens + ((now - s.at) / 1000) * this.rate >= this.burst;
      if (s.inFlight === 0 && full) this.clients.delete(client);
    }
    this.pruneAt = Math.max(PRUNE_ABOVE, 2 * this.clients.size);
  }
}
