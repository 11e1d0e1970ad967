// SLO-aware admission. The gateway predicts a request's time to first token (and its inter-token latency)
// from the work queued on the workers the router chose, priced with the simulator's cost model, and refuses
// up front — 429 with a Retry-After computed from the queue — what cannot meet its class's SLO, instead of
// admitting it and missing. Classes are OpenAI's service tiers: `priority` jumps the queue (only its own
// prefill is ahead of it), `default` waits behind the queue, `flex` has no SLO unless one is set (it waits,
// and is preempted first, by its priority band on the worker).
//
//   predicted TTFT = scale × ( requestOverhead(prompt)
//                              + prefillStepSeconds + tokens ahead × prefillSecondsPerToken
//                              + one decode step at the decode worker's batch )
//   tokens ahead   = this request's uncached tokens (priority), else the prefilling worker's queued prefill
//                    tokens (its last report + what this gateway routed there since, this request included)
//   predicted ITL  = decode step at the decode worker's batch (this request included)
//   Retry-After    = seconds for the queue to drain to where the SLO holds: (TTFT − SLO), at least 1 s
//   scale          = running mean of actual / predicted TTFT (clamped), so a cost model calibrated on
//                    another machine, or a loaded one, is corrected by what this gateway observes
import { costModelOf, decodeStepSeconds, requestOverheadSeconds, type CostModel } from '@pdserve/bench';
import type { ServiceTier } from '@pdserve/contracts';

/** Per-class SLOs in ms; a class left out (or 0) has none and is always admitted. */
export type ClassSlos = Readonly<Partial<Record<ServiceTier, number>>>;

export interface AdmissionOptions {
  readonly ttftSloMs?: ClassSlos;
  readonly itlSloMs?: ClassSlos;
  /** Engine costs (a `pdserve calibrate` file's fields); default the simulator's placeholders. */
  readonly costModel?: Partial<CostModel>;
}

/** What the router's decision and the load views say about where a request would run. */
export interface AdmissionInput {
  readonly tier: ServiceTier;
  readonly promptTokens: number;
  /** Prompt tokens this request has to prefill (after prefix credit). */
  readonly uncachedTokens: number;
  /** Prefill tokens queued on the worker that prefills it, this request's included. */
  readonly queuedPrefillTokens: number;
  /** Sequences on the decode worker, this request included. */
  readonly decodeBatch: number;
}

export type AdmissionVerdict =
  | { readonly admit: true; readonly ttftSeconds: number; readonly itlSeconds: number }
  | {
      readonly admit: false;
      readonly ttftSeconds: number;
      readonly itlSeconds: number;
      readonly retryAfterSeconds: number;
      readonly reason: string;
    };

/** Bounds of the observed/predicted correction, and the weight of each new observation in it. */
const SCALE = { min: 0.25, max: 20, weight: 0.1 } as const;

export class Admission {
  private readonly cost: CostModel;
  /** Running mean of actual / predicted TTFT. */
  private scale = 1;

  constructor(private readonly opts: AdmissionOptions = {}) {
    this.cost = costModelOf(opts.costModel);
  }

  /** Whether any class has an SLO (else every request is admitted; predictions are still made and measured). */
  get enforcing(): boolean {
    return [this.opts.ttftSloMs, this.opts.itlSloMs].some((s) => Object.values(s ?? {}).some((v) => (v ?? 0) > 0));
  }

  predict(x: AdmissionInput): { readonly ttftSeconds: number; readonly itlSeconds: number } {
    const c = this.cost;
    const ahead = x.tier === 'priority' ? x.uncachedTokens : Math.max(x.uncachedTokens, x.queuedPrefillTokens);
    const itl = decodeStepSeconds(c, Math.max(1, x.decodeBatch), 0);
    const ttft = requestOverheadSeconds(c, x.promptTokens) + c.prefillStepSeconds + ahead * c.prefillSecondsPerToken + itl;
    return { ttftSeconds: this.scale * ttft, itlSeconds: itl };
  }

  decide(x: AdmissionInput): AdmissionVerdict {
    const p = this.predict(x);
    const ttftSlo = (this.opts.ttftSloMs?.[x.tier] ?? 0) / 1000;
    const itlSlo = (this.opts.itlSloMs?.[x.tier] ?? 0) / 1000;
    if (ttftSlo > 0 && p.ttftSeconds > ttftSlo) {
      return {
        admit: false,
        ...p,
        retryAfterSeconds: Math.max(1, Math.ceil(p.ttftSeconds - ttftSlo)),
        reason: `predicted time to first token ${ms(p.ttftSeconds)} exceeds the ${x.tier} SLO of ${ms(ttftSlo)}`,
      };
    }
    if (itlSlo > 0 && p.itlSeconds > itlSlo) {
      return {
        admit: false,
        ...p,
        retryAfterSeconds: 1,
        reason: `predicted inter-token latency ${ms(p.itlSeconds)} exceeds the ${x.tier} SLO of ${ms(itlSlo)}`,
      };
    }
    return { admit: true, ...p };
  }

  /** An admitted request's first token came `actualSeconds` after arrival; it was predicted at `predictedSeconds`. */
  observe(predictedSeconds: number, actualSeconds: number): void {
    if (!(predictedSeconds > 0) || !(actualSeconds > 0)) return;
    const ratio = (actualSeconds * this.scale) / predictedSeconds; // the unscaled prediction's error
    this.scale = Math.min(SCALE.max, Math.max(SCALE.min, (1 - SCALE.weight) * this.scale + SCALE.weight * ratio));
  }
}

const ms = (s: number): string => `${Math.round(s * 1000)} ms`;

/** Parses `priority=500,default=2000` (ms per class) as --ttft-slo-ms and --itl-slo-ms take it. */
export function parseClassSlos(text: string | undefined): ClassSlos {
  const out: Partial<Record<ServiceTier, number>> = {};
  for (const part of (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [k, v] = part.split('=');
    const n = Number(v);
    if (!(k === 'priority' || k === 'default' || k === 'flex') || v === undefined || !Number.isFinite(n) || n < 0) {
      throw new RangeError(`expected CLASS=MS pairs (classes priority, default, flex), got "${part}"`);
    }
    out[k] = n;
  }
  return out;
}
