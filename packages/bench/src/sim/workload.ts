import type { Trace } from '../trace';
import { TRACE_BLOCK_SIZE, replayInputLength } from '../trace-replay';

/** One trace request as the simulator replays it. */
export interface SimRequest {
  readonly index: number;
  /** Arrival, seconds from the first request. */
  readonly arrival: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** Trace hash ids of the prompt's full blocks (a partial last block is never cached, as in the engine). */
  readonly blocks: readonly number[];
  /** The same blocks as router hashes. */
  readonly chain: readonly string[];
}

export interface SimWorkloadOptions {
  /** Arrival times × this. Default 1. */
  readonly timeScale?: number;
  /** Tokens per hash-id block (the simulated block size). Default: the trace's, 512. */
  readonly blockScale?: number;
  /** Output lengths × this (rounded, ≥ 1). Default 1. */
  readonly lengthScale?: number;
  readonly traceBlockSize?: number;
  readonly maxRequests?: number;
  /** Prompts longer than this are cut to it (a prefix), as the trace replay does. Default: no limit. */
  readonly maxInputLen?: number;
  /** Cap on output lengths after scaling, as the replay's max_tokens cap. Default: no limit. */
  readonly maxTokens?: number;
}

/**
 * Trace hash ids as the router's block hashes: 16 hex digits. The trace's ids are already prefix hashes
 * (an id stands for its whole prefix, as the router's chained hashes do), so they are used unchained.
 */
export function routerHash(id: number): string {
  return id.toString(16).padStart(16, '0');
}

export function simWorkload(
  trace: Trace,
  o: SimWorkloadOptions = {},
): { readonly requests: SimRequest[]; readonly blockSize: number; readonly hashOf: (id: number) => string } {
  const traceBlock = o.traceBlockSize ?? TRACE_BLOCK_SIZE;
  const blockSize = o.blockScale ?? traceBlock;
  const timeScale = o.timeScale ?? 1;
  const lengthScale = o.lengthScale ?? 1;
  if (!(timeScale > 0) || !(lengthScale > 0)) throw new RangeError('timeScale and lengthScale must be positive');
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockScale must be a positive integer, got ${blockSize}`);
  const maxInput = o.maxInputLen ?? Number.POSITIVE_INFINITY;
  const maxTokens = o.maxTokens ?? Number.POSITIVE_INFINITY;
  if (!(maxInput >= 1) || !(maxTokens >= 1)) throw new RangeError('maxInputLen and maxTokens must be at least 1');
  const hashes = new Map<number, string>();
  const hashOf = (id: number): string => {
    let h = hashes.get(id);
    if (h === undefined) {
      h = routerHash(id);
      hashes.set(id, h);
    }
    return h;
  };
  const records = trace.records.slice(0, o.maxRequests ?? trace.records.length);
  const t0 = records.length > 0 ? records[0]!.timestamp : 0;
  const requests = records.map((r, index): SimRequest => {
    const promptTokens = Math.min(maxInput, replayInputLength(r.inputLength, blockSize, traceBlock));
    const blocks = r.hashIds.slice(0, Math.floor(promptTokens / blockSize));
    return {
      index,
      arrival: ((r.timestamp - t0) * timeScale) / 1000,
      promptTokens,
      outputTokens: Math.min(maxTokens, Math.max(1, Math.round(r.outputLength * lengthScale))),
      blocks,
      chain: blocks.map(hashOf),
    };
  });
  return { requests, blockSize, hashOf };
}
