// Registry tunables, with defaults and units.

export interface RegistryOptions {
  /** Lease of a registration: an instance that stops heartbeating disappears this long after its last
   * heartbeat, in ms. */
  readonly leaseTtlMs?: number;
  /** Time between lease renewals, in ms; default leaseTtlMs / 3 so two renewals may fail in a row. */
  readonly heartbeatIntervalMs?: number;
  /** Time between membership polls (SCAN), in ms; default leaseTtlMs / 3. */
  readonly pollIntervalMs?: number;
  /** After the store reconnects (e.g. Redis restarted empty), watchers hold removals this long so live
   * instances can re-register first, in ms; default one lease. */
  readonly reconnectGraceMs?: number;
}

export interface ResolvedRegistryOptions {
  readonly leaseTtlMs: number;
  readonly heartbeatIntervalMs: number;
  readonly pollIntervalMs: number;
  readonly reconnectGraceMs: number;
}

export const DEFAULT_LEASE_TTL_MS = 10_000;

export function resolveRegistryOptions(options: RegistryOptions = {}): ResolvedRegistryOptions {
  const leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  const resolved = {
    leaseTtlMs,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? Math.round(leaseTtlMs / 3),
    pollIntervalMs: options.pollIntervalMs ?? Math.round(leaseTtlMs / 3),
    reconnectGraceMs: options.reconnectGraceMs ?? leaseTtlMs,
  };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value <= 0) throw new Error(`registry option ${name} must be > 0, got ${value}`);
  }
  if (resolved.heartbeatIntervalMs >= leaseTtlMs) {
    throw new Error(`heartbeatIntervalMs (${resolved.heartbeatIntervalMs}) must be below leaseTtlMs (${leaseTtlMs})`);
  }
  return resolved;
}
