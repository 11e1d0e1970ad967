// Speculative decoding's pieces that need no model: the n-gram proposer, verification (greedy match and
// rejection sampling), and the per-sequence controller that sets how many tokens to speculate.
import type { Sampler, SampledToken } from '@pdserve/model';

/** How the engine speculates; see README "Speculative decoding". */
export type SpeculativeOptions =
  | {
      readonly method: 'draft';
      /** Hugging Face-layout draft model directory (same tokenizer and vocabulary as the target). */
      readonly modelDir: string;
      /** Tokens proposed per step (K); the target verifies K + 1 positions in one forward. */
      readonly numTokens: number;
      /** The draft's KV pool in bytes; default: as many blocks as the target's pool. */
      readonly kvCacheBytes?: number;
      /** onnxruntime intra-op threads of the draft's session; default 0 (every core, as for the target: ModelRunner). */
      readonly draftThreads?: number;
      readonly seeded?: boolean;
    }
  | {
      readonly method: 'ngram';
      readonly numTokens: number;
      /** Shortest and longest suffix looked up in the sequence's own tokens; defaults 1 and 4. */
      readonly ngramMin?: number;
      readonly ngramMax?: number;
      /**
       * Seeded sampled requests speculate too (default false). Rejection sampling draws more random numbers
       * than one per token, so their tokens then differ from the same seed without speculation and after a
       * migration (which skips one draw per token sent): reproducible run to run, equally distributed, not
       * identical. Off, they decode one token at a time and keep the seeded-output contract; for tests and
       * benchmarks of rejection sampling that must be deterministic.
       */
      readonly seeded?: boolean;
    };

export const SPECULATIVE_DEFAULTS = { numTokens: 4, ngramMin: 1, ngramMax: 4 } as const;

/** A problem with speculative options, or undefined. */
export function speculativeProblem(o: SpeculativeOptions): string | undefined {
  if (!Number.isInteger(o.numTokens) || o.numTokens < 1 || o.numTokens > 16)
    return `num speculative tokens must be an integer in [1, 16], got ${o.numTokens}`;
  if (o.method === 'ngram') {
    const min = o.ngramMin ?? SPECULATIVE_DEFAULTS.ngramMin;
    const max = o.ngramMax ?? SPECULATIVE_DEFAULTS.ngramMax;
    if (!Number.isInteger(min) || min < 1) return `ngram min must be a positive integer, got ${min}`;
    if (!Number.isInteger(max) || max < min) return `ngram max must be an integer ≥ ngram min (${min}), got ${max}`;
  } else if (o.method === 'draft') {
    if (o.draftThreads !== undefined && (!Number.isInteger(o.draftThreads) || o.draftThreads < 0))
      return `draft threads must be a non-negative integer (0: every core), got ${o.draftThreads}`;
  } else return `unknown speculative method ${String((o as { method: unknown }).method)}`;
  return undefined;
}

/**
 * Prompt lookup: the tokens that followed the most recent earlier occurrence of the sequence's last n
 * tokens (longest n first, from max down to min), at most k of them; [] when nothing matches.
 */
export function proposeNgram(tokens: readonly number[], k: number, min: number, max: number): number[] {
  const len = tokens.length;
  for (let n = Math.min(max, len - 1); n >= min; n--) {
    // An occurrence starting at i, followed by at least one token: i + n < len.
    for (let i = len - n - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && tokens[i + j] === tokens[len - n + j]) j++;
      if (j === n) return tokens.slice(i + n, Math.min(i + n + k, len)) as number[];
    }
  }
  return [];
}

/** What the draft proposed for one sequence: tokens and, when sampling from a draft model, the distribution each was drawn from. */
export interface Proposal {
  readonly tokens: readonly number[];
  /** q_i for token i (vocab-long, normalised); undefined: each token was a deterministic guess (q = a point mass). */
  readonly dists?: readonly Float64Array[];
}

/**
 * The tokens the sequence gains from one verify forward: the accepted prefix of the proposal plus one
 * token from the target (the correction at the first rejection, or the bonus after the last). `logits`
 * holds proposal.tokens.length + 1 rows: row i is the target's next-token logits after draft token i-1.
 * Greedy: a draft token is accepted when it is the target's choice. Sampling: rejection sampling
 * (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding"): accept d_i with
 * probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection draw from norm(max(0, p_i − q_i)).
 * Every emitted token is then distributed exactly as the target's sample() would draw it.
 */
export function verifyProposal(
  sampler: Sampler,
  logits: Float32Array,
  vocabSize: number,
  prompt: readonly number[],
  output: readonly number[],
  proposal: Proposal,
  buf: Float64Array,
): SampledToken[] {
  const V = vocabSize;
  const row = (i: number): Float32Array => logits.subarray(i * V, (i + 1) * V);
  const out: SampledToken[] = [];
  const seen = [...output];
  const K = proposal.tokens.length;
  if (sampler.isGreedy) {
    for (let i = 0; i <= K; i++) {
      const t = sampler.sample(row(i), prompt, seen);
      out.push(t);
      if (i === K || t.tokenId !== proposal.tokens[i]) break;
      seen.push(t.tokenId);
    }
    return out;
  }
  for (let i = 0; i < K; i++) {
    const d = proposal.tokens[i]!;
    const p = sampler.distribution(row(i), prompt, seen, buf);
    const q = proposal.dists?.[i];
    const qd = q ? q[d]! : 1;
    if (sampler.uniform() * qd < p[d]!) {
      out.push(sampler.withLogprobs(row(i), d));
      seen.push(d);
      continue;
    }
    // Rejected: the residual max(0, p − q), in place.
    let mass = 0;
    if (q) for (let j = 0; j < V; j++) mass += buf[j] = Math.max(0, p[j]! - q[j]!);
    else {
      buf[d] = 0;
      for (let j = 0; j < V; j++) mass += buf[j]!;
    }
    // p = q to rounding leaves no residual: p itself is then the right distribution.
    if (!(mass > 0)) sampler.distribution(row(i), prompt, seen, buf);
    out.push(sampler.withLogprobs(row(i), sampler.drawFrom(buf)));
    return out;
  }
  const p = sampler.distribution(row(K), prompt, seen, buf);
  out.push(sampler.withLogprobs(row(K), sampler.drawFrom(p)));
  return out;
}

/**
 * What one speculating step costs, in plain decode steps of the same batch: `draftRound` per token the
 * draft proposes and `verify(k)` for the verify forward of k proposals per row.
 */
export interface SpecCost {
  readonly draftRound: number;
  verify(k: number): number;
}

/**
 * Assumed before anything is measured, and always for seeded sampled sequences (whose tokens must not
 * depend on timing): a draft round at 0.3 of a decode step, a verify forward at 1 + 0.1 k of one.
 */
export const PRIOR_COST: SpecCost = { draftRound: 0.3, verify: (k) => 1 + 0.1 * k };
/** The n-gram proposer costs no forward. */
export const NGRAM_PRIOR_COST: SpecCost = { draftRound: 0, verify: PRIOR_COST.verify };

/**
 * Tokens a verify step of k proposals yields when each draft token is accepted with probability a
 * (independently, up to the first rejection), plus the target's one: 1 + a + a² + ... + a^k.
 */
export function expectedTokens(a: number, k: number): number {
  let e = 1;
  let p = 1;
  for (let i = 0; i < k; i++) e += p *= a;
  return e;
}

/** Tokens per plain-step cost of speculating k tokens at acceptance a (1: break-even with plain decoding). */
export function speculationGain(a: number, k: number, cost: SpecCost): number {
  if (k <= 0) return 1;
  // A verify forward computes a superset of a decode step: never cheaper, whatever a noisy clock said.
  return expectedTokens(a, k) / (k * Math.max(0, cost.draftRound) + Math.max(1, cost.verify(k)));
}

/** The k in [1, maxK] with the best gain, and that gain. */
export function bestLength(a: number, maxK: number, cost: SpecCost): { k: number; gain: number } {
  let best = { k: 1, gain: speculationGain(a, 1, cost) };
  for (let k = 2; k <= maxK; k++) {
    const gain = speculationGain(a, k, cost);
    if (gain > best.gain) best = { k, gain };
  }
  return best;
}

/** Decay of the acceptance evidence per verify step (the latest step weighs 1, the one before DECAY, ...). */
const DECAY = 0.9;
/**
 * Prior evidence: a quarter of an accepted token out of half a one tried (keeps a single probe from reading
 * as certainty, and weak enough that a sequence whose proposals keep failing reads as a ≈ 0.02).
 */
const PRIOR_ACCEPTED = 0.25;
const PRIOR_TRIED = 0.5;
/** Hysteresis on the expected gain: speculating sequences stop below OFF_GAIN, a probe restarts them at ON_GAIN. */
export const OFF_GAIN = 1;
export const ON_GAIN = 1.1;
/** Steps without speculation before the next probe, doubled after each failed probe up to the max (≤ 0.1 % of steps then). */
export const BACKOFF_FIRST = 32;
export const BACKOFF_MAX = 1024;

/**
 * Per-sequence speculation length. Acceptance is estimated from accepted tokens per draft token tried
 * (a draft token after the first rejection is never tried): decayed sums of both, with a weak prior.
 * Each step the sequence proposes the k that maximises expected tokens per unit of cost (see SpecCost);
 * when even the best k yields less than OFF_GAIN it stops speculating and, after a back-off that doubles
 * while acceptance stays poor (BACKOFF_FIRST, ... BACKOFF_MAX steps), proposes one token as a probe; only
 * a probe whose acceptance promises ON_GAIN turns it (back) on. A new sequence starts with a probe of
 * ceil(K/2) tokens.
 */
export class SpecController {
  private accepted = 0;
  private tried = 0;
  private off = true;
  private wait = 0;
  private backoff = BACKOFF_FIRST;
  /** No verify step recorded yet. */
  private fresh = true;

  constructor(private readonly maxTokens: number) {}

  /** The estimated probability that the target accepts a draft token. */
  get acceptance(): number {
    return (this.accepted + PRIOR_ACCEPTED) / (this.tried + PRIOR_TRIED);
  }

  /** Whether the sequence speculates only to probe (it is off). */
  get isOff(): boolean {
    return this.off;
  }

  /** Tokens to speculate this step at these costs (0 = decode normally). */
  next(cost: SpecCost): number {
    if (this.off) {
      if (this.wait > 0) {
        this.wait--;
        return 0;
      }
      // A new sequence's first probe is K/2 long (a good pair is then soon at full length); later ones, of a
      // sequence known to be poor, one token: in a batch every row's forward is as wide as the widest.
      return this.fresh ? Math.ceil(this.maxTokens / 2) : 1;
    }
    return bestLength(this.acceptance, this.maxTokens, cost).k;
  }

  /** A verify step proposed `proposed` tokens and the target accepted `accepted` of them. */
  record(proposed: number, accepted: number, cost: SpecCost): void {
    if (proposed === 0) return;
    const tried = accepted + (accepted < proposed ? 1 : 0);
    if (this.off) {
      this.fresh = false;
      // Evidence from before the back-off is stale: the probe alone decides.
      this.accepted = accepted;
      this.tried = tried;
      if (bestLength(this.acceptance, this.maxTokens, cost).gain >= ON_GAIN) {
        this.off = false;
        this.backoff = BACKOFF_FIRST;
      } else this.turnOff();
      return;
    }
    this.accepted = DECAY * this.accepted + accepted;
    this.tried = DECAY * this.tried + tried;
    if (bestLength(this.acceptance, this.maxTokens, cost).gain < OFF_GAIN) this.turnOff();
  }

  private turnOff(): void {
    this.off = true;
    this.wait = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
  }
}

/** Recent samples kept per measured cost; each is judged by its median, which bursts of load on the machine do not move. */
const WINDOW = 16;
/** Samples of a cost needed before it replaces the prior. */
const MIN_SAMPLES = 4;
/** Speculating steps between two plain steps that re-measure a batch size's plain cost: while few are in, then for good. */
const REMEASURE_EARLY = 16;
const REMEASURE_EVERY = 128;
const EARLY_SAMPLES = 4;
/** Steps a batch size decodes plainly when speculating does not pay for the batch as a whole, doubled while that lasts. */
const PLAIN_STEPS = 64;
const PLAIN_STEPS_MAX = 1024;

interface BucketState {
  /** Wall seconds of recent plain decode steps, draft rounds, and verify forwards by their longest proposal. */
  readonly plain: number[];
  readonly draft: number[];
  readonly verify: Map<number, number[]>;
  /** Speculating steps since the last plain one. */
  sincePlain: number;
  /** Steps left to decode plainly because speculation did not pay for the batch. */
  plainLeft: number;
  retry: boolean;
  backoff: number;
  /** The cost model of these samples, once asked for (dropped when a sample comes in). */
  cost: SpecCost | undefined;
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function push(s: BucketState, window: number[], x: number): void {
  window.push(x);
  if (window.length > WINDOW) window.shift();
  s.cost = undefined;
}

/**
 * A bucket's measured costs (see SpecGovernor.cost), worked out when first read: most steps of a batch whose
 * sequences are off never read them, and a step's samples then cost a push each and no sort.
 */
class MeasuredCost implements SpecCost {
  private ratios: { readonly draftRound: number; readonly verify: ReadonlyMap<number, number> } | undefined;

  constructor(
    private readonly s: BucketState,
    private readonly prior: SpecCost,
  ) {}

  get draftRound(): number {
    return this.measured().draftRound;
  }

  verify(k: number): number {
    const measured = this.measured().verify;
    const v = measured.get(k);
    if (v !== undefined) return v;
    // The nearest measured length, scaled as the prior scales.
    let near: number | undefined;
    for (const m of measured.keys()) if (near === undefined || Math.abs(m - k) < Math.abs(near - k)) near = m;
    return near === undefined ? this.prior.verify(k) : (measured.get(near)! * this.prior.verify(k)) / this.prior.verify(near);
  }

  private measured(): { readonly draftRound: number; readonly verify: ReadonlyMap<number, number> } {
    if (this.ratios) return this.ratios;
    const { s, prior } = this;
    const plain = median(s.plain);
    // Ratios outside what the work could explain are the clock's noise: a draft round is clamped to a decode
    // step and a verify forward of k proposals to k + 1 of them (it computes k + 1 tokens instead of one).
    const draftRound = s.draft.length >= MIN_SAMPLES ? Math.min(1, median(s.draft) / plain) : prior.draftRound;
    const verify = new Map<number, number>();
    for (const [k, xs] of s.verify) if (xs.length >= MIN_SAMPLES) verify.set(k, Math.min(k + 1, Math.max(1, median(xs) / plain)));
    this.ratios = { draftRound, verify };
    return this.ratios;
  }
}

/** One sequence's plan for a step, as the governor weighs it. */
export interface SpecCandidate {
  /** Tokens its controller would propose (0: it decodes plainly this step). */
  k: number;
  readonly controller: SpecController;
}

/**
 * What speculation costs per batch-size bucket (powers of two), and whether a batch should speculate at
 * all. Costs are medians of the last WINDOW wall-clock samples: of plain decode steps (re-measured by a
 * plain step every REMEASURE_EVERY speculating steps when none happens on its own), of draft rounds and
 * of verify forwards per proposal length, as ratios to the plain step (priors until MIN_SAMPLES are in,
 * clamped to what the work could explain). The
 * decision to speculate rests on each sequence's acceptance (see SpecController), not on comparing the
 * timing of individual steps; a batch whose expected tokens per cost, summed over its rows, fall below
 * those of a plain step decodes plainly for PLAIN_STEPS (doubling while that lasts), then speculates one
 * step unjudged to learn afresh.
 */
export class SpecGovernor {
  private readonly buckets = new Map<number, BucketState>();

  constructor(private readonly prior: SpecCost = PRIOR_COST) {}

  private state(batch: number): BucketState {
    const key = Math.ceil(Math.log2(Math.max(1, batch)));
    let s = this.buckets.get(key);
    if (!s)
      this.buckets.set(
        key,
        (s = { plain: [], draft: [], verify: new Map(), sincePlain: 0, plainLeft: 0, retry: false, backoff: PLAIN_STEPS, cost: undefined }),
      );
    return s;
  }

  /**
   * The cost model for a batch of `batch` rows: measured ratios where there are samples, the prior elsewhere.
   * The same object until the bucket's next sample; its medians are worked out when first read.
   */
  cost(batch: number): SpecCost {
    const s = this.state(batch);
    if (s.plain.length < MIN_SAMPLES) return this.prior;
    s.cost ??= new MeasuredCost(s, this.prior);
    return s.cost;
  }

  /**
   * Settles this step's lengths for a decode batch of `batch` rows: `candidates` are the rows that would
   * speculate (k > 0 from their controllers, at this.cost(batch)); their k is set to 0 when the batch decodes
   * plainly, to re-measure the plain cost or because speculation does not pay for the batch.
   */
  plan(batch: number, candidates: readonly SpecCandidate[]): void {
    const live = candidates.filter((c) => c.k > 0);
    if (live.length === 0) return;
    const s = this.state(batch);
    // A probe put off this way is due again next step (its controller's wait is over).
    const plainNow = (): void => {
      for (const c of live) c.k = 0;
    };
    if (s.plainLeft > 0) {
      // The last of them: the step after speculates unjudged, to learn the batch's acceptance and costs afresh.
      if (--s.plainLeft === 0) s.retry = true;
      plainNow();
      return;
    }
    if (s.retry) {
      s.retry = false;
      return;
    }
    if (s.sincePlain >= (s.plain.length < EARLY_SAMPLES ? REMEASURE_EARLY : REMEASURE_EVERY)) {
      plainNow();
      return;
    }
    // Probes are not judged: they are how a sequence's acceptance is learnt.
    if (live.some((c) => c.controller.isOff)) return;
    const cost = this.cost(batch);
    const kmax = Math.max(...live.map((c) => c.k));
    let tokens = batch - live.length;
    for (const c of live) tokens += expectedTokens(c.controller.acceptance, c.k);
    const gain = tokens / (batch * (kmax * Math.max(0, cost.draftRound) + Math.max(1, cost.verify(kmax))));
    if (gain < OFF_GAIN) {
      s.plainLeft = s.backoff;
      s.backoff = Math.min(PLAIN_STEPS_MAX, s.backoff * 2);
      plainNow();
    } else s.backoff = PLAIN_STEPS;
  }

  /** A decode step of `batch` rows ran without speculation, taking `seconds` (wall, on the engine's side). */
  recordPlain(batch: number, seconds: number): void {
    if (!(seconds > 0)) return;
    const s = this.state(batch);
    push(s, s.plain, seconds);
    s.sincePlain = 0;
  }

  /**
   * A speculating decode step of `batch` rows ran: `rounds` draft forwards (0 for n-gram lookup) taking
   * `draftSeconds`, then a verify forward whose longest proposal was `k`, taking `verifySeconds`.
   */
  recordSpec(batch: number, rounds: number, draftSeconds: number, k: number, verifySeconds: number): void {
    const s = this.state(batch);
    s.sincePlain++;
    if (rounds > 0 && draftSeconds > 0) push(s, s.draft, draftSeconds / rounds);
    if (k > 0 && verifySeconds > 0) {
      let w = s.verify.get(k);
      if (!w) s.verify.set(k, (w = []));
      push(s, w, verifySeconds);
    }
  }
}
