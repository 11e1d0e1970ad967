/**
 * Engine time, as the simulator charges it. Plain JSON so that `pdserve calibrate` can measure it from the
 * real engine and write it to a file.
 *
 *   prefill step part  = computed tokens × prefillSecondsPerToken + reused tokens × prefillSecondsPerCachedToken
 *   decode step part   = decodeStep.baseSeconds + decodeStep.perSequenceSeconds × batch
 *                        + decodeStep.perContextTokenSeconds × Σ context tokens of the batch
 *   KV transfer / fetch = tokens × kvBytesPerToken / transferBytesPerSecond
 * A step that does both pays both parts (chunked prefill rides along with the decode batch).
 */
export interface CostModel {
  /** Seconds per prompt token computed in prefill. */
  readonly prefillSecondsPerToken: number;
  /** Seconds per prompt token reused from a prefix cache (block table setup, attention over it). */
  readonly prefillSecondsPerCachedToken: number;
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
}

/**
 * PLACEHOLDERS for the built-in tiny model on two CPU cores, until `pdserve calibrate` measures them:
 * prefill ~0.25 ms/token, decode step ~3 ms + 0.2 ms per sequence, transfer 2 GB/s (raw TCP between hosts,
 * DESIGN.md). kvBytesPerToken is exact for the tiny model: 4 layers × (K, V) × 2 KV heads × 32 × 4 bytes.
 */
export const DEFAULT_COST_MODEL: CostModel = {
  prefillSecondsPerToken: 0.25e-3,
  prefillSecondsPerCachedToken: 0.005e-3,
  decodeStep: { baseSeconds: 3e-3, perSequenceSeconds: 0.2e-3, perContextTokenSeconds: 0 },
  transferBytesPerSecond: 2e9,
  kvBytesPerToken: 2048,
};

export function decodeStepSeconds(c: CostModel, batch: number, contextTokens: number): number {
  if (batch === 0) return 0;
  const d = c.decodeStep;
  return d.baseSeconds + d.perSequenceSeconds * batch + d.perContextTokenSeconds * contextTokens;
}

export function transferSeconds(c: CostModel, tokens: number): number {
  return tokens <= 0 ? 0 : (tokens * c.kvBytesPerToken) / c.transferBytesPerSecond;
}

/** A full cost model from a partial one (e.g. a calibration file that sets some fields). */
export function costModelOf(partial: Partial<CostModel> = {}): CostModel {
  const c: CostModel = { ...DEFAULT_COST_MODEL, ...partial, decodeStep: { ...DEFAULT_COST_MODEL.decodeStep, ...partial.decodeStep } };
  const check = (name: string, x: number, positive: boolean): void => {
    if (!Number.isFinite(x) || x < 0 || (positive && x === 0)) throw new RangeError(`cost model: ${name} must be a ${positive ? 'positive' : 'non-negative'} number, got ${x}`);
  };
  check('prefillSecondsPerToken', c.prefillSecondsPerToken, false);
  check('prefillSecondsPerCachedToken', c.prefillSecondsPerCachedToken, false);
  check('decodeStep.baseSeconds', c.decodeStep.baseSeconds, false);
  check('decodeStep.perSequenceSeconds', c.decodeStep.perSequenceSeconds, false);
  check('decodeStep.perContextTokenSeconds', c.decodeStep.perContextTokenSeconds, false);
  check('transferBytesPerSecond', c.transferBytesPerSecond, true);
  check('kvBytesPerToken', c.kvBytesPerToken, false);
  if (c.decodeStep.baseSeconds + c.decodeStep.perSequenceSeconds === 0) throw new RangeError('cost model: a decode step must take time');
  return c;
}
