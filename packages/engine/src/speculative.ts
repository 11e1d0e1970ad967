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
  } else if (o.method !== 'draft') return `unknown speculative method ${String((o as { method: unknown }).method)}`;
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

/** Acceptance below this turns a sequence's speculation off; a probe at or above ON_RATE turns it on again. */
const OFF_RATE = 0.25;
const ON_RATE = 0.4;
/** Below this (but above OFF_RATE) the sequence speculates half as far. */
const HALF_RATE = 0.5;
/** Weight of the latest step in the moving acceptance rate. */
const EMA_WEIGHT = 0.3;
/**
 * Where a new sequence starts: below HALF_RATE (its first step proposes K/2, cheap to lose) and close
 * enough to OFF_RATE that one step with nothing accepted turns it off, while one fully accepted step
 * lifts it to K. Speculation that never pays then costs a sequence one half-length step and its probes.
 */
const START_RATE = 0.35;
/** Steps without speculation before the first probe, doubled after each failed probe up to the max. */
const BACKOFF_FIRST = 32;
const BACKOFF_MAX = 512;

/**
 * Per-sequence speculation length with hysteresis. Each verify step updates a moving acceptance rate
 * (accepted ÷ proposed): at HALF_RATE or more the sequence proposes K tokens, below it K/2; under
 * OFF_RATE it stops speculating (a batch of such sequences decodes as if speculation were off) and, after
 * a back-off that doubles while acceptance stays poor, speculates once (K/2) as a probe; only a probe at
 * ON_RATE or better turns it back on.
 */
export class SpecController {
  private rate = START_RATE;
  private off = false;
  private wait = 0;
  private backoff = BACKOFF_FIRST;

  constructor(private readonly maxTokens: number) {}

  /** Tokens to speculate this step (0 = decode normally). */
  next(): number {
    if (this.off) {
      if (this.wait > 0) {
        this.wait--;
        return 0;
      }
      return Math.max(1, Math.ceil(this.maxTokens / 2)); // a probe
    }
    return this.rate >= HALF_RATE ? this.maxTokens : Math.max(1, Math.ceil(this.maxTokens / 2));
  }

  /** A verify step proposed `proposed` tokens and the target accepted `accepted` of them. */
  record(proposed: number, accepted: number): void {
    if (proposed === 0) return;
    const r = accepted / proposed;
    if (this.off) {
      if (r >= ON_RATE) {
        this.off = false;
        this.rate = r;
        this.backoff = BACKOFF_FIRST;
      } else {
        this.wait = this.backoff;
        this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
      }
      return;
    }
    this.rate = (1 - EMA_WEIGHT) * this.rate + EMA_WEIGHT * r;
    if (this.rate < OFF_RATE) {
      this.off = true;
      this.wait = this.backoff;
      this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
    }
  }
}

/** Spec steps between two plain steps that re-measure a batch size's cost without speculation (more often until a few are in). */
const REMEASURE_EVERY = 32;
const REMEASURE_EARLY = 8;
/**
 * Steps a batch size decodes plainly once speculation has cost more per token than it saves, doubled each
 * time a retry confirms it up to the max (a retry costs its speculating steps and the draft's catch-up).
 */
const PLAIN_STEPS = 64;
const PLAIN_STEPS_MAX = 1024;
/** Recent per-token costs kept per mode; each mode is judged by its lower quartile, which a burst of load on the machine does not move. */
const WINDOW = 8;
/** Speculating steps measured before speculation can be judged too costly. */
const MIN_SPEC_STEPS = 3;

interface BucketState {
  /** Recent seconds per produced token of steps with and without speculation, newest last. */
  spec: number[];
  plain: number[];
  /** Steps left before the next plain measurement (spec mode) or before speculating again (plain mode). */
  left: number;
  mode: 'spec' | 'plain';
  /** The next plain period's length. */
  backoff: number;
}

/** The lower quartile of a window (its typical cost when nothing else took the cores). */
function typical(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 4)]!;
}

/**
 * Whether a decode batch should speculate at all: what speculation buys depends on the batch as much as
 * on acceptance (a verify forward of K+1 tokens per row costs little more than one token at batch 1 on an
 * accelerator, nearly K+1 times as much on a busy CPU). Per batch-size bucket (powers of two) it keeps the
 * wall seconds per produced token of recent steps with and without speculation, re-measures the plain cost
 * every REMEASURE_EVERY steps, and decodes plainly for PLAIN_STEPS steps (doubling while it stays so)
 * whenever speculating typically cost more per token.
 */
export class SpecGovernor {
  private readonly buckets = new Map<number, BucketState>();

  private state(batch: number): BucketState {
    const key = Math.ceil(Math.log2(Math.max(1, batch)));
    let s = this.buckets.get(key);
    if (!s) this.buckets.set(key, (s = { spec: [], plain: [], left: 1, mode: 'spec', backoff: PLAIN_STEPS }));
    return s;
  }

  /** Whether a decode batch of `batch` rows may speculate this step. */
  allow(batch: number): boolean {
    const s = this.state(batch);
    if (s.mode === 'plain') return false;
    // Speculate, but measure the plain cost first and then every so many steps.
    return s.plain.length > 0 && s.left > 0;
  }

  /** A decode step of `batch` rows ran, speculating or not, taking `seconds` for `tokens` produced tokens. */
  record(batch: number, speculated: boolean, seconds: number, tokens: number): void {
    if (tokens <= 0 || !(seconds >= 0)) return;
    const s = this.state(batch);
    const window = speculated ? s.spec : s.plain;
    window.push(seconds / tokens);
    if (window.length > WINDOW) window.shift();
    if (speculated) s.left--;
    else if (s.mode === 'plain') {
      if (--s.left <= 0) {
        s.mode = 'spec'; // try again, judged on fresh measurements
        s.spec = [];
        s.left = REMEASURE_EVERY;
      }
    } else if (s.left <= 0) s.left = s.plain.length < WINDOW / 2 ? REMEASURE_EARLY : REMEASURE_EVERY;
    if (s.mode !== 'spec' || s.spec.length < MIN_SPEC_STEPS || s.plain.length === 0) return;
    if (typical(s.spec) > typical(s.plain)) {
      s.mode = 'plain';
      s.left = s.backoff;
      s.backoff = Math.min(PLAIN_STEPS_MAX, s.backoff * 2);
    } else s.backoff = PLAIN_STEPS;
  }
}
