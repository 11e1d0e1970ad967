// Replica placement by rendezvous (highest-random-weight) hashing: every client that knows the same node
// set picks the same replicas with no coordination, and a node joining or leaving moves only its own share.
import { createHash } from 'node:crypto';
import { invalidArgument } from './errors';
import type { BlockHash } from './keys';

/**
 * The `n` distinct nodes with the highest weight for this block (all of them when there are fewer), best
 * first. Independent of the order and of duplicates in `nodes`.
 */
export function placeReplicas(hash: BlockHash, nodes: readonly string[], n: number): string[] {
  if (!Number.isInteger(n) || n < 0) throw invalidArgument(`replica count must be a whole number >= 0, got ${n}`);
  return [...new Set(nodes)]
    .map((node) => ({ node, weight: rendezvousWeight(hash, node) }))
    .sort((a, b) => (a.weight === b.weight ? (a.node < b.node ? -1 : 1) : a.weight > b.weight ? -1 : 1))
    .slice(0, n)
    .map((s) => s.node);
}

/** First 64 bits of SHA-256(hash ‖ 0 ‖ node): uniform, stable across processes and versions. */
export function rendezvousWeight(hash: BlockHash, node: string): bigint {
  return createHash('sha256').update(`${hash}\0${node}`).digest().readBigUInt64BE(0);
}
