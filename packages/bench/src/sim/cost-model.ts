/**
 * Engine time, as the simulator charges it. Plain JSON so that `pdserve calibrate` can measure it from the
 * real engine and write it to a file.
 *
 *   prefill step part  = prefillStepSeconds (once per step that runs any prefill chunk)
 *                        + computed tokens × prefillSecondsPerToken
 *                        + Σ chunks c × (p + c/2) × prefillSecondsPerTokenPair   (attention: a chunk of c tokens
 *                          after p tokens already in the KV cache attends to p + c/2 tokens on average)
 *                        + reused tokens × prefillSecondsPerCachedToken          (once, when the prefill starts)
 *   decode step part   = decodeStep.baseSeconds + decodeStep.perSequenceSeconds × batch
 *                        + decodeStep.perContextTokenSeconds × Σ context tokens of the batch
 *   KV transfer / fetch = tokens × kvBytesPerToken / transferBytesPerSecond
 *   request overhead    = requestOverheadSeconds + requestOverheadSecondsPerToken × prompt tokens, added to
 *                        TTFT and end-to-end latency (API, routing and RPC hops outside the engine)
 * A step that does both pays both parts (chunked prefill rides along with the decode batch).
 */
export interface CostModel {
  /** Seconds per prompt token computed in prefill. */
  readonly prefillSecondsPerToken: number;
  /** Seconds per prompt token reused from a prefix cache (block table setup, attention over it). */
  readonly prefillSecondsPerCachedToken: number;
  /** Fixed seconds per step that runs a prefill forward (launch, gathering the cached KV). Default 0. */
  readonly prefillStepSeconds: number;
  /** Seconds per (computed token × context token it attends to): attention's quadratic part. Default 0. */
  readonly prefillSecondsPerTokenPair: number;
  readonly decodeStep: {
    /** Fixed seconds per decode step (launch and framework overhead). */
    readonly baseSeconds: number;
    /** Seconds per sequence in the batch. */
    readonly perSequenceSeconds: number;
    /** Seconds per context token attended over, summed over the batch. */
    readonly perContextTokenSeconds: number;
  };
  /** KV bytes moved per second between workers, and between a worker and the kv-store. */
  readonly transferBytesPerSecond: number;
  /** KV bytes per token (all layers, keys and values). */
  readonly kvBytesPerToken: number;
  /** Fixed seconds per request outside the engine's steps (HTTP, routing, RPC, admission). Default 0. */
  readonly requestOverheadSeconds: number;
  /** Seconds per prompt token outside the engine's steps (request encoding and shipping). Default 0. */
  readonly requestOverheadSecondsPerToken: number;
}

/**
 * PLACEHOLDERS for the built-in tiny model on two CPU cores, until `pdserve calibrate` measures them:
 * prefill ~0.25 ms/token, decode step ~3 ms + 0.2 ms per sequence, transfer 2 GB/s (raw TCP between hosts,
 * DESIGN.md). kvBytesPerToken is exact for the tiny model: 4 layers × (K, V) × 2 KV heads × 32 × 4 bytes.
 */
export const DEFAULT_COST_MODEL: CostModel = {
  prefillSecondsPerToken: 0.25e-3,
  prefillSecondsPerCachedToken: 0.005e-3,
  prefillStepSeconds: 0,
  prefillSecondsPerTokenPair: 0,
  decodeStep: { baseSeconds: 3e-3, perSequenceSeconds: 0.2e-3, perContextTokenSeconds: 0 },
  transferBytesPerSecond: 2e9,
  kvBytesPerToken: 2048,
  requestOverheadSeconds: 0,
  requestOverheadSecondsPerToken: 0,
};

export function decodeStepSeconds(c: CostModel, batch: number, contextTokens: number): number {
  if (batch === 0) return 0;
  const d = c.decodeStep;
  return d.baseSeconds + d.perSequenceSeconds * batch + d.perContextTokenSeconds * contextTokens;
}

/** Token pairs a prefill chunk of `tokens` attends over, after `past` tokens already in the KV cache. */
export function chunkTokenPairs(past: number, tokens: number): number {
  return tokens * (past + tokens / 2);
}

export function transferSeconds(c: CostModel, tokens: number): number {
  return tokens <= 0 ? 0 : (tokens * c.kvBytesPerToken) / c.transferBytesPerSecond;
}

export function requestOverheadSeconds(c: CostModel, promptTokens: number): number {
  return c.requestOverheadSeconds + c.requestOverheadSecondsPerToken * promptTokens;
}

/** A full cost model from a partial one (e.g. a calibration file that sets some fields); unknown keys are dropped. */
export function costModelOf(partial: Partial<CostModel> = {}): CostModel {
  const d = DEFAULT_COST_MODEL;
  const p = partial;
  const c: CostModel = {
    prefillSecondsPerToken: p.prefillSecondsPerToken ?? d.prefillSecondsPerToken,
    prefillSecondsPerCachedToken: p.prefillSecondsPerCachedToken ?? d.prefillSecondsPerCachedToken,
    prefillStepSeconds: p.prefillStepSeconds ?? d.prefillStepSeconds,
    prefillSecondsPerTokenPair: p.prefillSecondsPerTokenPair ?? d.prefillSecondsPerTokenPair,
    decodeStep: { ...d.decodeStep, ...p.decodeStep },
    transferBytesPerSecond: p.transferBytesPerSecond ?? d.transferBytesPerSecond,
    kvBytesPerToken: p.kvBytesPerToken ?? d.kvBytesPerToken,
    requestOverheadSeconds: p.requestOverheadSeconds ?? d.requestOverheadSeconds,
    requestOverheadSecondsPerToken: p.requestOverheadSecondsPerToken ?? d.requestOverheadSecondsPerToken,
  };
  const check = (name: string, x: number, positive: boolean): void => {
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0 || (positive && x === 0)) {
      throw new RangeError(`cost model: ${name} must be a ${positive ? 'positive' : 'non-negative'} number, got ${x}`);
    }
  };
  check('prefillSecondsPerToken', c.prefillSecondsPerToken, false);
  check('prefillSecondsPerCachedToken', c.prefillSecondsPerCachedToken, false);
  check('prefillStepSeconds', c.prefillStepSeconds, false);
  check('prefillSecondsPerTokenPair', c.prefillSecondsPerTokenPair, false);
  check('decodeStep.baseSeconds', c.decodeStep.baseSeconds, false);
  check('decodeStep.perSequenceSeconds', c.decodeStep.perSequenceSeconds, false);
  check('decodeStep.perContextTokenSeconds', c.decodeStep.perContextTokenSeconds, false);
  check('transferBytesPerSecond', c.transferBytesPerSecond, true);
  check('kvBytesPerToken', c.kvBytesPerToken, false);
  check('requestOverheadSeconds', c.requestOverheadSeconds, false);
  check('requestOverheadSecondsPerToken', c.requestOverheadSecondsPerToken, false);
  if (c.decodeStep.baseSeconds + c.decodeStep.perSequenceSeconds === 0) throw new RangeError('cost model: a decode step must take time');
  return c;
}
