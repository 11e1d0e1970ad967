// The engine's contract: what the HTTP API and the gateway ask of an engine, local or a cluster's.
import type { SampledToken, SamplingParams, TokenLogprob } from '@pdserve/model/sampling';

/** What the HTTP API (and later the cluster gateway) asks of an engine. */
export interface GenerateRequest {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly sampling: SamplingParams;
  /** Aborting frees the request's blocks at once; the stream then ends with finishReason 'abort'. */
  readonly signal?: AbortSignal;
  /** Lower runs first; default 0 (vLLM's `priority`). Orders requests within their service tier. */
  readonly priority?: number;
  /** OpenAI's service_tier: priority jumps the queue, flex waits and is preempted first; default 'default'. */
  readonly serviceTier?: ServiceTier;
  /**
   * Roots the prompt's block-hash chain together with the model id (kv-cache's chainHashes): requests
   * share cached blocks only when their salts are equal. '' or absent: the unsalted chain.
   */
  readonly cacheSalt?: string;
  /**
   * Prefill role: after the first token, export the prompt's KV blocks from block `fromBlock` on (the
   * decode worker already holds the ones before) in the final chunk's `kv`. With `onBlocks`, each prefill
   * chunk's newly filled full blocks are exported (copied) right after its forward and handed to it, so
   * they can travel while the next chunk computes; the final chunk's `kv` then holds only the blocks not
   * handed over yet (the last chunk's and the partial tail block). With `withoutToken`, nothing is sampled:
   * once the whole prompt is computed, the final chunk (no token, finish reason 'length') holds the `kv` not
   * handed over yet, so that whoever computes the prompt's next token elsewhere (a decode worker computing
   * the prompt's last block itself) has every block before it.
   */
  readonly exportKv?: {
    readonly fromBlock: number;
    readonly onBlocks?: (part: ExportedKv) => void;
    readonly withoutToken?: boolean;
  };
  /** Decode role: the prompt was prefilled elsewhere; admit it with this KV and this first token. */
  readonly prefilled?: PrefilledKv;
  /**
   * Leading blocks of the prompt fetched from elsewhere (the kv-store): they enter the prefix cache before
   * admission, each verified (checksum, shape, chained hash); the first bad one ends the import and the
   * rest is computed here.
   */
  readonly prefetched?: PrefetchedKv;
  /**
   * Tokens this request already generated elsewhere (a stream migrated off a failed worker): they count as
   * its output (max_tokens, min_tokens, penalties, stop, the grammar, the seeded sampler's position) and
   * their KV is taken from the prefix cache or recomputed; the stream goes on with the next token.
   */
  readonly resumeOutputTokenIds?: readonly number[];
}

/** Service classes (OpenAI's service_tier): each has its own SLOs at the gateway and its own band of priorities. */
export const SERVICE_TIERS = ['priority', 'default', 'flex'] as const;
export type ServiceTier = (typeof SERVICE_TIERS)[number];

/** How far apart the tiers' priority bands are: wider than any `priority` a client sends (int32 on the wire). */
const TIER_BAND = 1 << 24;

/**
 * The engine's priority (lower runs first, higher is preempted first) of a request: its tier's band, then
 * its own `priority` within it (clamped to the band).
 */
export function enginePriority(priority: number | undefined, tier: ServiceTier | undefined): number {
  const band = tier === 'priority' ? -1 : tier === 'flex' ? 1 : 0;
  const within = Math.max(-(TIER_BAND / 2 - 1), Math.min(TIER_BAND / 2 - 1, priority ?? 0));
  return band * TIER_BAND + within;
}

/** Full blocks of a prompt's prefix, encoded (kv-cache codec), for block indices fromBlock, fromBlock + 1, ... */
export interface PrefetchedKv {
  readonly fromBlock: number;
  readonly blocks: readonly Uint8Array[];
  /** Each block's CRC-32, verified against its bytes in transit: decoding then skips a pass over the payload. */
  readonly checksums?: readonly (number | undefined)[];
}

/**
 * Where evicted blocks may go instead of being dropped. `offer` is called synchronously at eviction, while
 * the block's bytes are intact; it calls `encode` (a copy) only if it takes the block, and must never block.
 */
export interface OffloadSink {
  offer(hash: string, encode: () => Uint8Array): void;
}

/** A prompt's KV computed on another node, and the token it sampled. */
export interface PrefilledKv {
  /** Leading full blocks expected in this engine's own prefix cache (not sent). */
  readonly fromBlock: number;
  /** Encoded blocks (kv-cache codec) for block indices fromBlock, fromBlock + 1, ... covering the prompt. */
  readonly blocks: readonly Uint8Array[];
  /** Each block's CRC-32, verified against its bytes in transit: decoding then skips a pass over the payload. */
  readonly checksums?: readonly (number | undefined)[];
  readonly firstToken: SampledToken;
  /** The sampler's state after the first token, so seeded sampling continues exactly. */
  readonly rngState?: readonly [number, number, number, number];
  /** Prompt tokens the prefill side took from its prefix cache. */
  readonly cachedTokens: number;
}

/** What a prefill-role request hands to its decode worker. */
export interface ExportedKv {
  readonly fromBlock: number;
  readonly blocks: readonly Uint8Array[];
  readonly rngState?: readonly [number, number, number, number];
}

export type FinishReason = 'stop' | 'length' | 'abort';

/** One chunk of a generation stream: the tokens produced since the previous chunk. */
export interface GenerateOutput {
  readonly tokenIds: readonly number[];
  /** Parallel to tokenIds when the request asked for logprobs. */
  readonly logprobs?: readonly { readonly logprob: number; readonly top: readonly TokenLogprob[] }[];
  /** Set on the last chunk. 'stop' = EOS or a stop token id. */
  readonly finishReason?: FinishReason;
  readonly promptTokens: number;
  /** Prompt tokens served from the prefix cache (any tier). */
  readonly cachedTokens: number;
  /** Set on the last chunk of an exportKv request. */
  readonly kv?: ExportedKv;
  /**
   * On the first chunk of a request with sampling.promptLogprobs: one entry per prompt token after the
   * first (position 1 on), each under the tokens before it.
   */
  readonly promptLogprobs?: readonly PromptLogprob[];
}

/** A prompt token's logprob, its rank in the distribution (1 = most likely) and the top alternatives. */
export interface PromptLogprob {
  readonly tokenId: number;
  readonly logprob: number;
  readonly rank: number;
  readonly top: readonly TokenLogprob[];
}

export interface EngineStats {
  readonly running: number;
  readonly waiting: number;
  readonly freeBlocks: number;
  readonly cachedBlocks: number;
  readonly totalBlocks: number;
  readonly usedBlocks: number;
  readonly prefixCacheHitTokens: number;
  readonly prefixCacheQueryTokens: number;
  readonly preemptions: number;
  /** Prompt (and recomputed) tokens this engine ran through the model in prefill chunks. */
  readonly prefillTokensComputed: number;
  /** Prompt tokens still to prefill across waiting and running sequences. */
  readonly queuedPrefillTokens: number;
  /** Imported KV that failed verification and was recomputed locally. */
  readonly importFallbacks: number;
  /** Prompt tokens whose KV came in prefetched (from the kv-store) and entered the prefix cache. */
  readonly prefetchedTokens: number;
  /** Prefetched blocks refused by verification (corrupt, wrong prefix): recomputed instead. */
  readonly prefetchRejects: number;
  /** Prompt tokens whose KV was streamed in during a remote prefill (cacheBlocks) and entered the prefix cache. */
  readonly streamedTokens: number;
  /**
   * Tokens of KV copied out of blocks into the decode batch's resident past (rows joining it); a row whose
   * KV streamed in copies only the blocks that were not staged before its first decode.
   */
  readonly decodeGatheredTokens: number;
  readonly steps: number;
  /** Seconds spent inside session.run and outside it (scheduling, gather/scatter, sampling). */
  readonly modelSeconds: number;
  readonly overheadSeconds: number;
  /** Speculative decoding's counters; absent when it is off. */
  readonly speculation?: SpeculationStats;
}

export interface SpeculationStats {
  readonly method: 'draft' | 'ngram';
  /** Tokens proposed to the target (pdserve_spec_draft_tokens_total)... */
  readonly draftTokens: number;
  /** ...and those it accepted (pdserve_spec_accepted_tokens_total). */
  readonly acceptedTokens: number;
  /** One per sequence per verify step: emittedTokens / verifiedSequenceSteps is the mean tokens per step. */
  readonly verifiedSequenceSteps: number;
  readonly emittedTokens: number;
  /** Tokens the draft model prefilled to catch up with a sequence (its prompt, mostly). */
  readonly draftCatchUpTokens: number;
  /** Sequences holding draft KV right now. */
  readonly draftSequences: number;
  /** Wall seconds spent proposing with the draft model, and of them inside its forwards (its thread). */
  readonly draftProposeSeconds: number;
  readonly draftForwardSeconds: number;
  /** Set when the draft model failed: speculation with it is off from then on (requests go on without it). */
  readonly draftFailure?: string;
}

/** Failure classes an engine reports; the HTTP layer maps each to one status once. */
export type EngineErrorCode = 'invalid_request' | 'context_length_exceeded' | 'queue_full' | 'not_ready' | 'internal';

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
    readonly param?: string,
    /** queue_full: when to try again (the HTTP Retry-After), if the refuser knows. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export interface EngineClient {
  readonly modelId: string;
  /** Longest prompt + output the engine accepts, in tokens. */
  readonly maxModelLen: number;
  /** Streams outputs; throws EngineError before the first chunk if the request is refused. */
  generate(req: GenerateRequest): AsyncIterable<GenerateOutput>;
  isReady(): boolean;
}
