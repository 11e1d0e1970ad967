import { DEFAULT_TOKEN_RANGE, seededTokens, type TokenRange } from './prompts';
import { seedOf } from './rng';
import type { Trace } from './trace';
import type { BenchRequest, RequestSource } from './workloads';

/** Tokens per hash id in the Mooncake traces. */
export const TRACE_BLOCK_SIZE = 512;

export interface TraceReplayOptions {
  /** Arrival times are multiplied by this: 0.1 replays 10× faster. Default 1. */
  readonly timeScale?: number;
  /**
   * Tokens per hash-id block in the replay. Prompt lengths scale by blockScale / traceBlockSize, so a prompt
   * of n blocks keeps n blocks (the last one partial in the same proportion). Default 512 (no scaling).
   */
  readonly blockScale?: number;
  /** Output lengths are multiplied by this (rounded, at least 1). Default 1. */
  readonly lengthScale?: number;
  /** Tokens per hash id in the trace file. Default 512. */
  readonly traceBlockSize?: number;
  /** Prompts longer than this are cut to it (a prefix, so sharing is kept). Default: no limit. */
  readonly maxInputLen?: number;
  /** Cap on max_tokens after scaling. Default: no limit. */
  readonly maxTokens?: number;
  /** Replay only the first n records. Default: all. */
  readonly maxRequests?: number;
  /** Seeds the token ids of every hash id. Default 0. */
  readonly seed?: number;
  readonly tokenRange?: TokenRange;
}

/** Stream key of trace blocks (distinct from the synthetic workloads' keys). */
const TRACE_BLOCK = 0x7ace;
const FILLER = 0xf111;

/** Token ids kept per replay for hash-id blocks, beyond which the cache starts over (bounds memory). */
const BLOCK_CACHE_TOKENS = 4_000_000;

/**
 * Turns trace records into requests with token-id prompts. Block i of a prompt is the first tokens of the
 * block of its hash id, generated from (seed, hash id) alone, so equal hash ids give equal tokens and
 * requests sharing their first k hash ids share exactly their first k × blockScale tokens. The last,
 * partial block takes its tokens from its own hash id too; positions past the hash ids (a record whose
 * input_length exceeds its blocks) are filled from the request's index.
 */
export function traceToRequests(trace: Trace, opts: TraceReplayOptions = {}): BenchRequest[] {
  const source = traceSource(trace, opts);
  return Array.from({ length: source.total }, (_, i) => source.get(i)!);
}

/** The same requests as `traceToRequests`, built when asked for (a full-scale replay does not fit in memory at once). */
export function traceSource(trace: Trace, opts: TraceReplayOptions = {}): RequestSource & { readonly total: number } {
  const timeScale = positive('timeScale', opts.timeScale ?? 1);
  const traceBlock = positiveInt('traceBlockSize', opts.traceBlockSize ?? TRACE_BLOCK_SIZE);
  const block = positiveInt('blockScale', opts.blockScale ?? traceBlock);
  const lengthScale = positive('lengthScale', opts.lengthScale ?? 1);
  const maxInput = opts.maxInputLen === undefined ? Number.POSITIVE_INFINITY : positiveInt('maxInputLen', opts.maxInputLen);
  const maxTokens = opts.maxTokens === undefined ? Number.POSITIVE_INFINITY : positiveInt('maxTokens', opts.maxTokens);
  const seed = opts.seed ?? 0;
  const range = opts.tokenRange ?? DEFAULT_TOKEN_RANGE;
  const records = trace.records.slice(0, opts.maxRequests ?? trace.records.length);
  const t0 = records.length > 0 ? records[0]!.timestamp : 0;

  const blocks = new Map<number, number[]>();
  const blockOf = (hashId: number): number[] => {
    let b = blocks.get(hashId);
    if (b === undefined) {
      if (blocks.size * block >= BLOCK_CACHE_TOKENS) blocks.clear();
      b = seededTokens(seedOf(seed, TRACE_BLOCK, hashId), block, range);
      blocks.set(hashId, b);
    }
    return b;
  };

  const get = (index: number): BenchRequest | undefined => {
    const r = records[index];
    if (r === undefined) return undefined;
    const length = Math.min(maxInput, replayInputLength(r.inputLength, block, traceBlock));
    const ids = new Array<number>(length);
    let filler: number[] | undefined;
    for (let pos = 0; pos < length; pos++) {
      const b = Math.floor(pos / block);
      if (b < r.hashIds.length) ids[pos] = blockOf(r.hashIds[b]!)[pos - b * block]!;
      else {
        filler ??= seededTokens(seedOf(seed, TRACE_BLOCK, FILLER, index), length, range);
        ids[pos] = filler[pos]!;
      }
    }
    const maxTok = Math.min(maxTokens, Math.max(1, Math.round(r.outputLength * lengthScale)));
    return { index, parts: [{ role: 'user', tokenIds: ids }], maxTokens: maxTok, arrivalMs: (r.timestamp - t0) * timeScale };
  };
  return { total: records.length, get };
}

/** Prompt length in the replay: input_length × blockScale / traceBlockSize, rounded, at least 1. */
export function replayInputLength(inputLength: number, blockScale: number, traceBlockSize: number): number {
  return Math.max(1, Math.round((inputLength * blockScale) / traceBlockSize));
}

function positive(name: string, x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new RangeError(`${name} must be a positive number, got ${x}`);
  return x;
}

function positiveInt(name: string, x: number): number {
  if (!Number.isInteger(x) || x < 1) throw new RangeError(`${name} must be a positive integer, got ${x}`);
  return x;
}
