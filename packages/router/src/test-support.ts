// Helpers shared by this package's tests and benchmark (not exported from the package).
import type { KvEventBatch, LoadReport, Tier } from './types';

/** A 16-hex-digit block hash from a small integer, so tests can name blocks by number. */
export function hx(n: number): string {
  return n.toString(16).padStart(16, '0');
}

/** Chain of `length` hashes starting at `start`. */
export function chainOf(start: number, length: number): string[] {
  return Array.from({ length }, (_, i) => hx(start + i));
}

export function stored(worker: string, seq: number, hashes: readonly string[], tier: Tier = 'device', incarnation = 'i1'): KvEventBatch {
  return { worker, incarnation, seq, events: [{ kind: 'stored', hashes, tier }] };
}

export function removed(worker: string, seq: number, hashes: readonly string[], tier: Tier = 'device', incarnation = 'i1'): KvEventBatch {
  return { worker, incarnation, seq, events: [{ kind: 'removed', hashes, tier }] };
}

export function loadReport(worker: string, fields: Partial<Omit<LoadReport, 'worker'>> = {}): LoadReport {
  return { worker, running: 0, waiting: 0, freeBlocks: 1000, totalBlocks: 1000, queuedPrefillTokens: 0, ts: 0, ...fields };
}

/** A settable clock for index and tracker tests. */
export function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}
